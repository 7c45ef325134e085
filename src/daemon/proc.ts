// The process element (DESIGN.md §3.2): an OS process this server started, leading its own process
// group, with its stdin fed by any number of client streams and each output fanned out to readers.
// It is reaped (and its waiters answered) when it exits, whatever its stdin and outputs are doing.

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants as fsc, statSync } from "node:fs";
import { constants as osc } from "node:os";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { BadSignal, SpawnFailed, StreamBroken } from "../errors.js";
import type { ProcPhase, ProcStat } from "../wire/shapes.js";
import { signalName } from "../wire/signals.js";
import { ProcOutput } from "./proc-output.js";
import { CLK_TCK, type ProcSample, readSample } from "./procfs.js";
import type { StreamPipe } from "./stream-pipe.js";

export type { ProcPhase, ProcStat };

/** A command as the client gave it (validated). */
export interface ProcCommand {
  path: string;
  args: string[];
  env?: Record<string, string>;
  dir?: string;
  inheritEnv: boolean;
  scrub: boolean;
}

/** Bytes of stdin in flight to the child per writer before the writer must wait. */
const STDIN_WINDOW = 64 * 1024;
/** How often a running process's CPU and memory are sampled. */
const SAMPLE_MS = 1000;
/** Waits one process may have outstanding. */
const MAX_WAITERS = 10_000;
/** Readers one output may have attached. */
const MAX_READERS = 1024;

/** Checks the shape of a command from the wire; TypeError says what is wrong. */
export function parseCommand(raw: unknown): ProcCommand {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new TypeError("a command is an object");
  const c = raw as Record<string, unknown>;
  if (typeof c.path !== "string" || c.path === "" || c.path.includes("\0")) {
    throw new TypeError("command path must be a non-empty string");
  }
  const args = c.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string" && !a.includes("\0"))) {
    throw new TypeError("command args must be an array of strings");
  }
  let env: Record<string, string> | undefined;
  if (c.env !== undefined && c.env !== null) {
    if (typeof c.env !== "object" || Array.isArray(c.env)) throw new TypeError("command env must be an object");
    env = {};
    for (const [k, v] of Object.entries(c.env as object)) {
      if (typeof v !== "string" || k === "" || k.includes("=") || k.includes("\0") || v.includes("\0")) {
        throw new TypeError(`command env ${JSON.stringify(k)} must map a name to a string`);
      }
      env[k] = v;
    }
  }
  if (c.dir !== undefined && c.dir !== null && (typeof c.dir !== "string" || c.dir === "")) {
    throw new TypeError("command dir must be a non-empty string");
  }
  for (const k of ["inheritEnv", "scrub"] as const) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== "boolean") {
      throw new TypeError(`command ${k} must be a boolean`);
    }
  }
  return {
    path: c.path,
    args: args as string[],
    ...(env ? { env } : {}),
    ...(typeof c.dir === "string" ? { dir: c.dir } : {}),
    inheritEnv: c.inheritEnv === true,
    scrub: c.scrub === true,
  };
}

/** The file to execute: a name without a slash is looked up in this server's PATH. */
export function resolveProgram(path: string, dir: string | undefined, server: string): string {
  if (path.includes("/")) return isAbsolute(path) ? path : resolve(dir ?? process.cwd(), path);
  for (const d of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    if (!d) continue;
    const full = join(d, path);
    try {
      accessSync(full, fsc.X_OK);
      if (statSync(full).isFile()) return full;
    } catch {
      // not here
    }
  }
  throw new SpawnFailed(`cannot start ${path}: not found in the PATH of ${server}`);
}

/**
 * Starts the command. Throws SpawnFailed for what can be told at once; otherwise returns the child,
 * whose `pid` is undefined if the exec failed (its 'error' event then says why, on the next tick).
 */
export function spawnChild(cmd: ProcCommand, server: string): ChildProcess {
  if (cmd.dir !== undefined) {
    let ok = false;
    try {
      ok = statSync(cmd.dir).isDirectory();
    } catch {
      // reported below
    }
    if (!ok) throw new SpawnFailed(`cannot start ${cmd.path}: no directory ${cmd.dir} on ${server}`);
  }
  const file = resolveProgram(cmd.path, cmd.dir, server);
  const env = cmd.env === undefined ? process.env : cmd.inheritEnv ? { ...process.env, ...cmd.env } : cmd.env;
  try {
    // detached: the child calls setsid(), so it leads its own process group and a scrub can kill
    // everything it started.
    return spawn(file, cmd.args, { argv0: cmd.path, cwd: cmd.dir, env, detached: true, stdio: "pipe" });
  } catch (err) {
    throw new SpawnFailed(`cannot start ${cmd.path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
}

/** Something a wait belongs to (a session): waits of a closed one are dropped. */
export interface WaitOwner {
  readonly conn: { readonly closed: boolean };
}

interface Waiter {
  owner: WaitOwner;
  token: number;
  done(stat: ProcStat): void;
}

export class HostedProc {
  readonly pid: number;
  readonly startedAt = new Date();
  readonly stdout: ProcOutput;
  readonly stderr: ProcOutput;
  /** Resolves with the final stat once the process has exited and been reaped. */
  readonly exited: Promise<ProcStat>;
  private resolveExited!: (s: ProcStat) => void;
  private end: { code: number | null; signal: string | null; at: Date } | undefined;
  private stdinOpen = true;
  private readonly writers = new Set<StreamPipe>();
  private readonly waiters = new Set<Waiter>();
  private last: { ticks: number; at: number } | undefined;
  private cpuPercent = 0;
  private rssBytes = 0;
  private phase: "running" | "stopped" = "running";
  private readonly sampler: NodeJS.Timeout;

  constructor(
    /** Tells this process from a later one at the same anchor. */
    readonly eid: number,
    readonly cmd: ProcCommand,
    private readonly child: ChildProcess,
  ) {
    this.pid = child.pid as number;
    this.exited = new Promise((r) => {
      this.resolveExited = r;
    });
    this.stdout = new ProcOutput(child.stdout as NonNullable<ChildProcess["stdout"]>);
    this.stderr = new ProcOutput(child.stderr as NonNullable<ChildProcess["stderr"]>);
    // Writes after the child has gone fail with EPIPE; the writers hear of it through their pipes.
    child.stdin?.on("error", () => {});
    child.on("error", () => {});
    child.once("exit", (code, signal) => this.onExit(code, signal));
    this.last = { ticks: 0, at: this.startedAt.getTime() };
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.sampler.unref();
  }

  get hasExited(): boolean {
    return this.end !== undefined;
  }

  /** The state now: phase, CPU over the last second, memory (fresh from /proc while it runs). */
  stat(): ProcStat {
    if (!this.end) {
      const s = readSample(this.pid);
      if (s) {
        this.phase = stoppedState(s) ? "stopped" : "running";
        this.rssBytes = s.rssBytes;
      }
    }
    const e = this.end;
    return {
      cmd: this.cmd,
      pid: this.pid,
      phase: e ? (e.signal ? "signaled" : "exited") : this.phase,
      exitCode: e ? e.code : null,
      signal: e ? e.signal : null,
      startedAt: this.startedAt.toISOString(),
      exitedAt: e ? e.at.toISOString() : null,
      cpuPercent: e ? 0 : this.cpuPercent,
      rssBytes: e ? 0 : this.rssBytes,
    };
  }

  /** For `ls -l`. */
  shortState(): string {
    const e = this.end;
    if (!e) return `pid=${this.pid} ${this.phase}`;
    return e.signal ? `pid=${this.pid} signaled ${e.signal}` : `pid=${this.pid} exited ${e.code}`;
  }

  /** Sends a signal to the process (not its group). After the exit there is nobody to signal: a no-op. */
  signal(name: unknown): void {
    const sig = signalName(name);
    if (!sig) throw new BadSignal(`unknown signal ${JSON.stringify(name)}`);
    if (!(sig in osc.signals)) throw new BadSignal(`${sig} is not a signal on this host`);
    if (this.end) return;
    try {
      process.kill(this.pid, sig as NodeJS.Signals);
    } catch {
      // exited between the check and the kill; 'exit' is on its way
    }
  }

  /** Adds a wait; `done` gets the final stat (at once if it has exited). */
  wait(owner: WaitOwner, token: number, done: (stat: ProcStat) => void): void {
    if (this.end) return done(this.stat());
    for (const w of this.waiters) if (w.owner.conn.closed) this.waiters.delete(w);
    if (this.waiters.size >= MAX_WAITERS) throw new RangeError("too many waits on one process");
    this.waiters.add({ owner, token, done });
  }

  /** Withdraws a wait that its client gave up on. */
  unwait(owner: WaitOwner, token: number): void {
    for (const w of this.waiters) if (w.owner === owner && w.token === token) this.waiters.delete(w);
  }

  /** A new reader of fd 1 or 2, as a stream message with id `pipeId`. */
  read(fd: 1 | 2, pipeId: number): StreamPipe {
    const out = fd === 1 ? this.stdout : this.stderr;
    if (out.readerCount >= MAX_READERS) throw new RangeError("too many readers of one output");
    return out.attach(pipeId);
  }

  /**
   * A client stream into stdin. Bytes go to the child as it takes them (at most STDIN_WINDOW in
   * flight per writer); the writer's end marker closes stdin; a writer that breaks off leaves stdin
   * open for the next one.
   */
  writeStdin(pipe: StreamPipe): void {
    if (!this.stdinOpen) throw new StreamBroken(this.end ? "the process has exited" : "the process's stdin is closed");
    const stdin = this.child.stdin as NonNullable<ChildProcess["stdin"]>;
    this.writers.add(pipe);
    pipe.attach({
      data: (c) => {
        stdin.write(c, () => pipe.grant(c.length));
      },
      fin: () => {
        this.writers.delete(pipe);
        this.closeStdin("another writer closed the process's stdin");
      },
      broken: () => {
        this.writers.delete(pipe);
      },
    });
    pipe.grant(STDIN_WINDOW);
  }

  private closeStdin(why: string): void {
    if (!this.stdinOpen) return;
    this.stdinOpen = false;
    this.child.stdin?.end();
    for (const w of this.writers) w.drop(why);
    this.writers.clear();
  }

  /**
   * Kills the process group: TERM (and CONT, so that a stopped group hears it), then KILL after
   * `graceMs` if any member is left. Resolves when the leader has exited.
   */
  terminate(graceMs: number): Promise<void> {
    const group = (sig: NodeJS.Signals | 0): boolean => {
      try {
        process.kill(-this.pid, sig);
        return true;
      } catch {
        return false;
      }
    };
    if (group(0)) {
      group("SIGTERM");
      group("SIGCONT");
      const t0 = Date.now();
      const poll = setInterval(() => {
        if (!group(0)) clearInterval(poll);
        else if (Date.now() - t0 >= graceMs) {
          group("SIGKILL");
          clearInterval(poll);
        }
      }, 100);
    }
    return this.exited.then(() => undefined);
  }

  /** Lets the process run on without this server watching it (`scrub({ keep: true })`). */
  detach(): void {
    clearInterval(this.sampler);
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) {
      (s as unknown as { unref?: () => void } | null)?.unref?.();
    }
  }

  private sample(): void {
    const s = readSample(this.pid);
    if (!s || this.end) return;
    const now = Date.now();
    const prev = this.last;
    if (prev && now > prev.at) {
      const pct = ((s.ticks - prev.ticks) / CLK_TCK / ((now - prev.at) / 1000)) * 100;
      this.cpuPercent = Math.max(0, Math.round(pct * 10) / 10);
    }
    this.last = { ticks: s.ticks, at: now };
    this.rssBytes = s.rssBytes;
    this.phase = stoppedState(s) ? "stopped" : "running";
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.end = { code, signal, at: new Date() };
    clearInterval(this.sampler);
    this.stdinOpen = false;
    for (const w of this.writers) w.drop("the process has exited");
    this.writers.clear();
    this.child.stdin?.destroy();
    const stat = this.stat();
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w.done(stat);
    this.resolveExited(stat);
  }
}

function stoppedState(s: ProcSample): boolean {
  return s.state === "T" || s.state === "t";
}

/** The processes of one server: element ids, the live set (killed when the server stops), and the recently gone. */
export class ProcTable {
  private nextEid = 1;
  private readonly live = new Set<HostedProc>();
  /** Final stats of processes whose element is gone, so that a handle can still wait on them. */
  private readonly graves = new Map<number, { stat: ProcStat; until: number }>();

  /** Starts a command; see spawnChild. */
  start(cmd: ProcCommand, server: string): { proc: HostedProc } | { failed: Promise<SpawnFailed> } {
    const child = spawnChild(cmd, server);
    if (child.pid === undefined) {
      return {
        failed: new Promise((r) =>
          child.once("error", (err: NodeJS.ErrnoException) =>
            r(new SpawnFailed(`cannot start ${cmd.path}: ${err.code ?? err.message}`, { cause: err })),
          ),
        ),
      };
    }
    const proc = new HostedProc(this.nextEid++, cmd, child);
    this.live.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    return { proc };
  }

  /** The element of `proc` is gone; its final stat stays reachable by element id for a minute. */
  bury(proc: HostedProc): void {
    void proc.exited.then((stat) => {
      const now = Date.now();
      for (const [k, g] of this.graves) {
        if (g.until > now && this.graves.size < 1024) break;
        this.graves.delete(k);
      }
      this.graves.set(proc.eid, { stat, until: now + 60_000 });
    });
  }

  grave(eid: number): ProcStat | undefined {
    const g = this.graves.get(eid);
    return g && g.until > Date.now() ? g.stat : undefined;
  }

  /** A detached process is no longer this server's to kill. */
  forget(proc: HostedProc): void {
    this.live.delete(proc);
  }

  /** Kills every process still hosted (the server is stopping). */
  async shutdown(graceMs: number): Promise<void> {
    await Promise.all([...this.live].map((p) => p.terminate(graceMs)));
  }
}
