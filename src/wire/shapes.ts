// The shapes of what servers answer (stats, listings): shared by the daemon that builds them and
// the client that returns them, so that both sides agree by construction.

import type { ProcLimits } from "./proc-limits.js";

export type { ProcLimits };

/** Statistics of a channel, as of the moment the server answered. */
export interface ChanStat {
  cap: number;
  len: number;
  closed: boolean;
  aborted: boolean;
  numSend: number;
  numRecv: number;
  waitingSenders: number;
  waitingReceivers: number;
  /** A durable channel (DESIGN §3.6): its buffer is in the hosting server's store. */
  durable?: true;
  /** Durable channels: bytes of the values in the store (buffered, or delivered and unacknowledged). */
  bytes?: number;
}

/**
 * How long a client keeps carrying an operation on a /@ element over to the next host, from the
 * operation's start. A host remembers stored sends' ids for longer (a retried send is stored once).
 */
export const CARRY_MS = 20_000;

/** A replicated channel's stat (DESIGN §12): a channel's, with its replicas and current host. */
export interface ReplicatedChanStat extends Omit<ChanStat, "durable" | "bytes"> {
  replicas: number;
  /** The server hosting the channel when this stat was taken (the holder of its lease). */
  host: string;
}

/** What to run. */
export interface ProcCommand {
  /** The program; without a slash it is looked up in the PATH of the hosting server. */
  path: string;
  args?: string[];
  /** The whole environment of the process (default: the hosting daemon's environment). */
  env?: Record<string, string>;
  /** Working directory on the hosting server (default: the daemon's). */
  dir?: string;
  /** Lay `env` over the daemon's environment instead of replacing it. */
  inheritEnv?: boolean;
  /** Remove the element by itself when the process exits. */
  scrub?: boolean;
  /**
   * Confine the process and all its descendants with the host's cgroups. A server that cannot
   * (no cgroups, not root) fails the request with Unsupported rather than run it unlimited.
   */
  limits?: ProcLimits;
}

export type ProcPhase = "running" | "stopped" | "exited" | "signaled";

/** A process's state as of the moment the server answered. */
export interface ProcStat {
  /** The command as started (path, args, env, dir, inheritEnv, scrub). */
  cmd: Required<Pick<ProcCommand, "path" | "args" | "inheritEnv" | "scrub">> & Pick<ProcCommand, "env" | "dir">;
  pid: number;
  /** "stopped": by SIGSTOP or the like; "signaled": ended by a signal (see `signal`). */
  phase: ProcPhase;
  /** The exit status once it has exited normally; null otherwise. */
  exitCode: number | null;
  /** The signal that ended it ("SIGTERM"), or null. */
  signal: string | null;
  startedAt: string;
  exitedAt: string | null;
  /** CPU use over the last second, in percent of one core (0 once it has ended). */
  cpuPercent: number;
  /**
   * Resident memory in bytes (0 once it has ended). CPU and memory are those of the whole group:
   * the process and its descendants (its cgroup, or its process group where there is none).
   */
  rssBytes: number;
  /** The limits it runs under, or null. */
  limits: ProcLimits | null;
  /** True once the kernel has killed a process of the group for going over `limits.memoryBytes`. */
  oomKilled: boolean;
}

export interface FileStat {
  /** Relative to the server's file root. */
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  mtime: string;
}

export interface FileInfo {
  name: string;
  type: FileStat["type"];
  size: number;
  mtime: string;
}

/** One element as an observer (the dashboard, `circuit top`) sees it; which fields are there depends on the kind. */
export interface ObservedElement {
  path: string;
  kind: string;
  /** Channels and subscriptions. */
  cap?: number;
  len?: number;
  closed?: boolean;
  /** Values sent into and received from it so far (rates are differences over time). */
  sent?: number;
  recvd?: number;
  /** Blocked senders and receivers. */
  waiting?: number;
  /** Processes. */
  pid?: number;
  phase?: string;
  cpuPercent?: number;
  rssBytes?: number;
  cmd?: string;
  /** Bytes written to stdout and stderr so far. */
  outBytes?: number;
  /** Services: replicas wanted, replicas running, restarts so far (phase: running or stopped). */
  desired?: number;
  running?: number;
  restarts?: number;
}

/** The recent stdout and stderr of one process, for an observer. */
export interface ObservedTail {
  path: string;
  stdout: string;
  stderr: string;
}

/** One logged event (a join, a leave, a process start, …) as an observer's feed carries it. */
export interface FeedEvent {
  seq: number;
  at: string;
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}
