// The server element at /XID.

import type { Readable } from "node:stream";
import { parseUrl } from "../wire/url.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import {
  type FileInfo,
  type FileStat,
  type FileWriter,
  HostApi,
  type ListeningPort,
  type ReservePortOptions,
} from "./host.js";

export interface ServerStat {
  id: string;
  url: string;
  startedAt: string;
  joinedAt: string;
  version: string;
  host: {
    hostname: string;
    platform: string;
    arch: string;
    cpus: number;
    loadavg: number[];
    memTotal: number;
    memFree: number;
    uptime: number;
  };
  process: { pid: number; rssBytes: number; cpuPercent: number };
  elements: number;
  /** Where the daemon serves /metrics and the dashboard (`circuit start --http`), if it does. */
  http?: string;
}

/** One element as `observe` reports it; which fields are there depends on the kind. */
export interface ObservedElement {
  path: string;
  kind: string;
  cap?: number;
  len?: number;
  closed?: boolean;
  /** Values sent into and received from the channel so far. */
  sent?: number;
  recvd?: number;
  /** Senders and receivers blocked on it now. */
  waiting?: number;
  pid?: number;
  phase?: string;
  cpuPercent?: number;
  rssBytes?: number;
  cmd?: string;
  outBytes?: number;
  /** Services: replicas wanted, running, and restarts so far. */
  desired?: number;
  running?: number;
  restarts?: number;
}

/** What a server says about itself to an observer (the dashboard, `circuit top`). */
export interface ServerObservation {
  server: ServerStat;
  at: string;
  /** Its elements in path order, at most `limit`. */
  elements: ObservedElement[];
  /** How many elements it hosts in all. */
  total: number;
  /** The recent stdout and stderr of its processes (with `tails`; up to 50 processes, 4 KiB each). */
  tails: { path: string; stdout: string; stderr: string }[];
  /** Its logged events (joins, leaves, process starts and exits, …) numbered above `after`. */
  feed: { seq: number; at: string; level: string; msg: string; fields: Record<string, unknown> }[];
}

export interface ObserveOptions extends OpOptions {
  /** Only events numbered above this (the last `seq` seen); default 0, every event kept. */
  after?: number;
  /** Most elements reported; default 1000. */
  limit?: number;
  /** Include the recent output of processes. */
  tails?: boolean;
}

export class ServerHandle implements AsyncDisposable {
  readonly kind = "server";
  /** File streams opened through this handle that have not finished yet. */
  private readonly streams = new Set<Readable | FileWriter>();

  /** @internal */
  constructor(
    private readonly c: Connection,
    readonly path: string,
  ) {}

  async peek(opts?: OpOptions): Promise<ServerStat> {
    return (await this.c.request({ op: "peek", path: this.path.slice(1).split("/") }, opts?.signal)) as ServerStat;
  }

  /** The server's stat, elements, process output and recent events in one answer (read-only). */
  async observe(opts?: ObserveOptions): Promise<ServerObservation> {
    const after = opts?.after ?? 0;
    const limit = opts?.limit ?? 1000;
    if (!Number.isInteger(after) || after < 0) throw new RangeError("after is a whole number");
    if (!Number.isInteger(limit) || limit < 0) throw new RangeError("limit is a whole number");
    return (await this.c.request(
      { op: "obs", path: this.path.slice(1).split("/"), after, limit, tails: opts?.tails === true },
      opts?.signal,
    )) as ServerObservation;
  }

  /** Stops the daemon gracefully. */
  async stop(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "stop", path: this.path.slice(1).split("/") }, opts?.signal);
  }

  /**
   * Merges this server into the circuit of the server at `url` (`circuit://HOST:PORT[/XID]`):
   * resolves once that server answered, with the number of members this server then sees (the
   * rest of both circuits learns of the merge by gossip within a few probe periods). Fails with
   * ServerGone if `url` is unreachable from this server, AuthFailed if it refused the key,
   * ProtocolError if it speaks another protocol version or is not a circuit daemon, Timeout if it
   * accepted the connection but never answered (it cannot connect back to this server's URL).
   */
  async join(url: string, opts?: OpOptions): Promise<{ url: string; members: number }> {
    parseUrl(url);
    return (await this.c.request({ op: "join", path: this.path.slice(1).split("/"), url }, opts?.signal)) as {
      url: string;
      members: number;
    };
  }

  private get hostApi(): HostApi {
    return new HostApi(this.c, this.path.slice(1).split("/"));
  }

  /** The host's listening TCP sockets (from /proc/net/tcp and tcp6; empty on hosts without /proc). */
  ports(opts?: OpOptions): Promise<ListeningPort[]> {
    return this.hostApi.ports(opts);
  }

  /**
   * A port that is free on the host now and that this server will not hand out again for 60 s:
   * for a process you are about to start there to bind.
   */
  reservePort(opts?: ReservePortOptions): Promise<number> {
    return this.hostApi.reservePort(opts);
  }

  /**
   * Files live under the directory the operator allowed with `circuit start --fs-root DIR`; paths
   * are relative to it. Absolute paths, "..", and symlinks that lead out fail with AccessDenied, as
   * does every file operation on a server without --fs-root.
   */
  readFile(file: string): Readable {
    return this.track(this.hostApi.readFile(file));
  }

  /**
   * Streams a file to the server. It appears (replacing an old one) only once the stream has
   * ended and `done` resolves; a stream that is destroyed or breaks off leaves no trace.
   * Missing parent directories are created.
   */
  writeFile(file: string): FileWriter {
    return this.track(this.hostApi.writeFile(file));
  }

  /** The entries of a directory ("" for the file root), by name; at most 10,000. */
  listFiles(dir = "", opts?: OpOptions): Promise<FileInfo[]> {
    return this.hostApi.listFiles(dir, opts);
  }

  statFile(file: string, opts?: OpOptions): Promise<FileStat> {
    return this.hostApi.statFile(file, opts);
  }

  /**
   * `await using srv = await anchor.getServer()`: at the end of the scope, file transfers opened
   * through this handle that have not finished are broken off (an upload then leaves no trace). The
   * server itself is untouched; stop it with `stop()`.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.streams) s.destroy();
    this.streams.clear();
  }

  private track<S extends Readable | FileWriter>(s: S): S {
    this.streams.add(s);
    s.once("close", () => this.streams.delete(s));
    return s;
  }
}
