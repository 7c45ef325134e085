// One output of a hosted process (stdout or stderr): a fan-out to any number of readers, and the
// last 64 KiB kept for readers that come late.
//
// Flow control is lossless while anyone reads: every reader is a StreamPipe whose credit is what
// that reader's client has room for, and the moment a chunk cannot go to some reader for lack of
// credit the child's pipe is paused, so the slowest reader paces the process (its writes block in
// the OS pipe). With no reader attached the output only feeds the tail, oldest bytes out first, and
// the process never blocks. Memory per reader is bounded by one chunk plus the pipe's window.

import type { Readable } from "node:stream";
import { StreamPipe } from "./stream-pipe.js";

/** How much of each output a late reader gets. */
export const TAIL_BYTES = 64 * 1024;

interface Reader {
  pipe: StreamPipe | undefined;
  /** Bytes the pipe will take now. */
  credit: number;
  /** Bytes this reader still has to get, oldest first. */
  pending: Buffer[];
  pendingBytes: number;
  finished: boolean;
}

export class ProcOutput {
  private readonly tail: Buffer[] = [];
  private tailBytes = 0;
  private readonly readers = new Set<Reader>();
  private ended = false;
  private paused = false;

  constructor(private readonly src: Readable) {
    src.on("data", (c: Buffer) => this.data(c));
    src.on("end", () => this.end());
    src.on("close", () => this.end());
    src.on("error", () => this.end());
  }

  /** Bytes the process has written so far. */
  written = 0;

  /** The last `max` bytes of the tail (for the dashboard), without taking anything from readers. */
  recent(max: number): Buffer {
    const all = Buffer.concat(this.tail);
    return all.length > max ? all.subarray(all.length - max) : all;
  }

  /** Readers attached now. */
  get readerCount(): number {
    return this.readers.size;
  }

  /** Whether the process's output has ended (every byte has been read from its pipe). */
  get isEnded(): boolean {
    return this.ended;
  }

  /** A new reader as a stream message `id`: it gets the tail first, then everything live, then the end. */
  attach(id: number): StreamPipe {
    const r: Reader = {
      pipe: undefined,
      credit: 0,
      pending: [...this.tail],
      pendingBytes: this.tailBytes,
      finished: false,
    };
    // The pipe grants its window from inside its constructor; flush() waits for r.pipe.
    r.pipe = new StreamPipe(id, {
      credit: (n) => {
        r.credit += n;
        this.flush(r);
        this.maybeResume();
      },
      abort: () => {
        this.readers.delete(r);
        this.maybeResume();
      },
    });
    this.readers.add(r);
    this.flush(r);
    this.maybePause();
    return r.pipe;
  }

  private data(c: Buffer): void {
    this.keep(c);
    for (const r of this.readers) {
      r.pending.push(c);
      r.pendingBytes += c.length;
      this.flush(r);
    }
    this.maybePause();
  }

  private keep(c: Buffer): void {
    this.written += c.length;
    this.tail.push(c);
    this.tailBytes += c.length;
    while (this.tail.length > 1 && this.tailBytes - (this.tail[0] as Buffer).length >= TAIL_BYTES) {
      this.tailBytes -= (this.tail.shift() as Buffer).length;
    }
    const extra = this.tailBytes - TAIL_BYTES;
    if (extra > 0) {
      this.tail[0] = (this.tail[0] as Buffer).subarray(extra);
      this.tailBytes -= extra;
    }
  }

  private flush(r: Reader): void {
    const pipe = r.pipe;
    if (!pipe || r.finished) return;
    while (r.pending.length > 0 && r.credit > 0) {
      let c = r.pending[0] as Buffer;
      if (c.length > r.credit) {
        r.pending[0] = c.subarray(r.credit);
        c = c.subarray(0, r.credit);
      } else {
        r.pending.shift();
      }
      r.credit -= c.length;
      r.pendingBytes -= c.length;
      pipe.write(c);
    }
    if (r.pending.length === 0 && this.ended) {
      r.finished = true;
      this.readers.delete(r);
      pipe.fin();
    }
  }

  private maybePause(): void {
    // Not skipped when already paused: Node resumes a child's stdio once the child has exited
    // (flushStdio), and a grandchild may still be writing to the same pipe.
    if (this.ended) return;
    for (const r of this.readers) {
      if (r.pendingBytes > 0) {
        this.paused = true;
        this.src.pause();
        return;
      }
    }
  }

  private maybeResume(): void {
    if (!this.paused) return;
    for (const r of this.readers) if (r.pendingBytes > 0) return;
    this.paused = false;
    this.src.resume();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const r of [...this.readers]) this.flush(r);
  }
}
