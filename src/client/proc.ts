// A handle on a process element anywhere in the circuit (DESIGN.md §3.2).

import type { Readable, Writable } from "node:stream";
import { BadSignal } from "../errors.js";
import { checkLimits } from "../wire/proc-limits.js";
import type { ProcDo, ProcRequest } from "../wire/requests.js";
import type { ProcCommand, ProcPhase, ProcStat } from "../wire/shapes.js";
import { signalName } from "../wire/signals.js";
import { LazyReadable, LazyWritable, requestStream } from "./byte-streams.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";

export type { ProcLimits } from "../wire/proc-limits.js";
export type { ProcCommand, ProcPhase, ProcStat };

export interface MakeProcOptions extends OpOptions {
  /**
   * Attach a reader of stdout (stderr) when the process starts, so that `proc.stdout` holds every
   * byte from the first. Like any attached reader it paces the process: read it, or the process
   * blocks once about 512 KiB are unread. Without this, output written before you first read
   * `proc.stdout` is kept only as the last 64 KiB.
   */
  stdout?: boolean;
  stderr?: boolean;
  /**
   * "/XID": the process is scrubbed (killed) when that server leaves the circuit, as a service's
   * replicas go with the server that supervises them. ServerGone if it is not live now.
   */
  tiedTo?: string;
}

export interface ScrubOptions extends OpOptions {
  /** Detach without killing: the element goes, the process runs on. */
  keep?: boolean;
}

let tokens = 0;

/** Checks a command before any I/O; TypeError says what is wrong. */
export function checkCommand(cmd: ProcCommand): void {
  if (typeof cmd !== "object" || cmd === null) throw new TypeError("a command is an object { path, args?, … }");
  if (typeof cmd.path !== "string" || cmd.path === "") throw new TypeError("command path must be a non-empty string");
  if (cmd.args !== undefined && (!Array.isArray(cmd.args) || !cmd.args.every((a) => typeof a === "string"))) {
    throw new TypeError("command args must be an array of strings");
  }
  if (cmd.env !== undefined) {
    if (typeof cmd.env !== "object" || cmd.env === null || Array.isArray(cmd.env)) {
      throw new TypeError("command env must be an object of strings");
    }
    for (const [k, v] of Object.entries(cmd.env)) {
      if (typeof v !== "string" || k === "" || k.includes("=")) {
        throw new TypeError(`command env ${JSON.stringify(k)} must map a name to a string`);
      }
    }
  }
  if (cmd.dir !== undefined && (typeof cmd.dir !== "string" || cmd.dir === "")) {
    throw new TypeError("command dir must be a non-empty string");
  }
  for (const k of ["inheritEnv", "scrub"] as const) {
    if (cmd[k] !== undefined && typeof cmd[k] !== "boolean") throw new TypeError(`command ${k} must be a boolean`);
  }
  checkLimits(cmd.limits);
}

/**
 * A process running on some server of the circuit. Its outputs stream live: while you read one,
 * the process is paced by you (and by any other reader); while nobody reads, the server keeps the
 * last 64 KiB of each for whoever comes later, and the process never blocks on its output.
 */
export class Proc implements AsyncDisposable {
  readonly kind = "proc";
  private stdinStream: Writable | undefined;
  private stdoutStream: Readable | undefined;
  private stderrStream: Readable | undefined;

  /** @internal */
  constructor(
    private readonly c: Connection,
    /** The anchor path of this process. */
    readonly path: string,
    private readonly names: readonly string[],
    /** The element id: a handle keeps addressing this process, not a later one at the same anchor. */
    private readonly eid: number,
    /** The OS process id on the hosting server. */
    readonly pid: number,
    attached: { stdout?: Readable; stderr?: Readable } = {},
  ) {
    this.stdoutStream = attached.stdout;
    this.stderrStream = attached.stderr;
  }

  /**
   * The process's stdin. Bytes reach the process as it reads them (writes wait while it does not);
   * ending this stream closes its stdin. Writing after the process has exited fails with
   * StreamBroken.
   */
  get stdin(): Writable {
    this.stdinStream ??= new LazyWritable(async () => {
      const { sid, writer } = this.c.openStream();
      try {
        await this.c.request(this.req({ do: "write", sid }));
      } catch (err) {
        writer.destroy(err as Error);
        throw err;
      }
      return writer;
    });
    return this.stdinStream;
  }

  /** The process's stdout from the last 64 KiB the server kept, then live; ends when the output ends. */
  get stdout(): Readable {
    this.stdoutStream ??= this.output(1);
    return this.stdoutStream;
  }

  /** Like `stdout`, for stderr. */
  get stderr(): Readable {
    this.stderrStream ??= this.output(2);
    return this.stderrStream;
  }

  /** A new, independent reader of stdout (1) or stderr (2): the kept tail, then live output. */
  output(fd: 1 | 2): Readable {
    if (fd !== 1 && fd !== 2) throw new RangeError("output takes 1 (stdout) or 2 (stderr)");
    return new LazyReadable(() => requestStream(this.c, (rid) => this.req({ do: "read", fd, rid })));
  }

  /**
   * Resolves with the final stat once the process has exited (at once if it has). Fails with
   * ServerGone if its server dies first; aborting the signal withdraws the wait.
   */
  async wait(opts?: OpOptions): Promise<ProcStat> {
    const token = ++tokens;
    try {
      return (await this.c.request(this.req({ do: "wait", token }), opts?.signal)) as ProcStat;
    } catch (err) {
      if (opts?.signal?.aborted) void this.c.request(this.req({ do: "unwait", token })).catch(() => {});
      throw err;
    }
  }

  /** The state now, refreshed from the hosting OS while it runs. */
  async peek(opts?: OpOptions): Promise<ProcStat> {
    return (await this.c.request(this.req({ do: "peek" }), opts?.signal)) as ProcStat;
  }

  /**
   * Sends a signal to the process: a POSIX name with or without "SIG" ("TERM", "SIGKILL", "int").
   * An unknown name fails with BadSignal before anything is sent. Signalling a process that has
   * exited does nothing.
   */
  async signal(name: string, opts?: OpOptions): Promise<void> {
    const sig = signalName(name);
    if (!sig) throw new BadSignal(`unknown signal ${JSON.stringify(name)}`);
    await this.c.request(this.req({ do: "signal", signal: sig }), opts?.signal);
  }

  /**
   * Removes the element. Without `keep` it kills the process group (TERM, then KILL after 5 s) and
   * resolves once the process has exited; with `keep: true` the process runs on, unwatched.
   */
  async scrub(opts?: ScrubOptions): Promise<void> {
    await this.c.request(this.req({ do: "scrub", keep: opts?.keep === true }), opts?.signal);
  }

  /** Lets go of this handle's streams; the process runs on. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of [this.stdoutStream, this.stderrStream, this.stdinStream]) s?.destroy();
  }

  private req(more: ProcDo): ProcRequest {
    return { op: "proc", path: this.names, eid: this.eid, ...more };
  }
}
