// Two connected in-process byte streams (DESIGN §5: "an in-memory pair for tests"): what one end
// writes, the other reads, with the same seams a socket has — asynchronous delivery, back
// pressure, end, and a close that the other end sees. A client Connection and a daemon Session run
// over it without TCP, so their tests need no port, no process and no scheduler luck.
// (node:stream's duplexPair does the same from Node 22 on; this project supports Node 20.)

import { Duplex } from "node:stream";

class MemoryEnd extends Duplex {
  peer!: MemoryEnd;
  /** Shown where a socket shows its peer's address (logs, `peek`). */
  readonly remoteAddress = "memory";
  readonly remotePort = 0;
  /** The peer's write waiting for us to read before it completes (back pressure). */
  private blocked: (() => void) | undefined;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // A copy: the writer may reuse its buffer once the write completed, as it may with a socket
    // (the kernel copied it); the reader may keep slices of what it got.
    const bytes = Buffer.from(chunk);
    // Delivered on a later tick, never inside the writer's call, as a socket would.
    process.nextTick(() => {
      const peer = this.peer;
      if (peer.destroyed) return cb();
      if (peer.push(bytes)) cb();
      else peer.blocked = cb;
    });
  }

  override _read(): void {
    const cb = this.blocked;
    this.blocked = undefined;
    cb?.();
  }

  override _final(cb: (err?: Error | null) => void): void {
    process.nextTick(() => {
      if (!this.peer.destroyed) this.peer.push(null);
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // The other end sees the connection go, as after a reset (without an error of its own).
    const peer = this.peer;
    process.nextTick(() => {
      if (!peer.destroyed) peer.destroy();
    });
    const w = this.blocked;
    this.blocked = undefined;
    w?.();
    cb(err);
  }
}

/** Two connected in-memory duplex streams. */
export function memoryPair(): [Duplex, Duplex] {
  const a = new MemoryEnd();
  const b = new MemoryEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
