// Stream messages on the client: a writer whose bytes leave as the server grants credit, and a
// reader that grants credit back as it is consumed. They reach the connection through StreamPort.

import { Readable, Writable } from "node:stream";
import { StreamBroken } from "../errors.js";
import { encode, STREAM_WINDOW, T } from "../wire/protocol.js";

/** What a stream writer or reader needs from its connection. */
export interface StreamPort {
  /** Sends a frame unless the connection is gone. */
  frameOut(type: number, fields: number[], tail?: Uint8Array): void;
  /** Settles once the server has read everything sent so far (a request answered after it). */
  received(): Promise<void>;
  /** The writer `sid` is done: no more credit for it. */
  forgetStream(sid: number): void;
  /** The reader of pipe `pid` is done: no more data for it. */
  forgetReader(pid: number): void;
}

/**
 * Most bytes one SDATA frame carries: big enough that a stream moves in few frames and writes
 * (the daemon hands a big frame on in pieces as they arrive, so its size adds no wait there). Two
 * frames fill half the window (STREAM_WINDOW) of a stream being read.
 */
const SDATA_MAX = 2 * 1024 * 1024;

/** The writable side of a stream message: bytes leave as the server grants credit. */
export class StreamWriter extends Writable {
  private credits = 0;
  private waiting: (() => void) | undefined;
  private ended = false;

  constructor(
    private readonly c: StreamPort,
    private readonly sid: number,
  ) {
    super({ highWaterMark: 64 * 1024 });
    // The error stays observable (write callbacks, `sent`, `errored`); without a listener a broken
    // stream nobody is writing to would crash the process.
    this.on("error", () => {});
  }

  credit(n: number): void {
    this.credits += n;
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let off = 0;
    const step = (): void => {
      while (off < chunk.length) {
        if (this.destroyed) return cb(new StreamBroken("stream was destroyed"));
        if (this.credits === 0) {
          this.waiting = step;
          return;
        }
        const n = Math.min(this.credits, chunk.length - off, SDATA_MAX);
        this.c.frameOut(T.SDATA, [this.sid], chunk.subarray(off, off + n));
        this.credits -= n;
        off += n;
      }
      cb();
    };
    step();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    this.c.frameOut(T.SFIN, [this.sid]);
    // Finished (and `sent`) only once the server has the end marker: bytes that merely left this
    // process are dropped by the kernel if the process exits with unread input (a reset).
    this.c.received().then(
      () => {
        this.c.forgetStream(this.sid);
        cb();
      },
      (err) => {
        this.c.forgetStream(this.sid);
        cb(err);
      },
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.ended) {
      this.ended = true;
      const why = err?.message ?? "sender destroyed the stream";
      this.c.frameOut(T.SABORT, [this.sid], encode({ code: "StreamBroken", message: why }));
      this.c.forgetStream(this.sid);
    }
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
    cb(err);
  }
}

/** The readable side of a stream message: credit goes back to the server as the reader consumes. */
export class StreamReader extends Readable {
  private owed = 0;
  private finished = false;

  constructor(
    private readonly c: StreamPort,
    private readonly pid: number,
  ) {
    super({ highWaterMark: STREAM_WINDOW });
    // A reader that has not started reading yet still sees the error when it does.
    this.on("error", () => {});
    c.frameOut(T.SCREDIT, [pid, STREAM_WINDOW]);
  }

  data(chunk: Buffer): void {
    // Copied only when a small piece of a bigger read buffer (StreamPipe.write says why).
    const own = chunk.length * 2 >= chunk.buffer.byteLength ? chunk : Buffer.from(chunk);
    if (this.push(own)) this.c.frameOut(T.SCREDIT, [this.pid, chunk.length]);
    else this.owed += chunk.length;
  }

  override push(chunk: Buffer | null): boolean {
    if (chunk === null) this.finished = true;
    return super.push(chunk);
  }

  override _read(): void {
    if (this.owed > 0) {
      this.c.frameOut(T.SCREDIT, [this.pid, this.owed]);
      this.owed = 0;
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.finished) {
      this.finished = true;
      this.c.frameOut(T.SDROP, [this.pid]);
      this.c.forgetReader(this.pid);
    }
    cb(err);
  }
}
