// Byte streams that a request opens (process stdio, files), as Node streams the caller can hold
// before any I/O. A reader attaches only when first read from, because an attached reader paces
// the process it reads (DESIGN.md §3.2); a writer opens on its first write (or its end).

import { Readable, Writable } from "node:stream";
import { type CircuitError, ProtocolError } from "../errors.js";
import type { Request } from "../wire/requests.js";
import type { Connection } from "./connection.js";
import type { StreamWriter } from "./stream-message.js";

/** Sends the request `req(rid)` names a fresh receiver id in; resolves with the stream the server attaches to it. */
export function requestStream(c: Connection, req: (rid: number) => Request, signal?: AbortSignal): Promise<Readable> {
  return new Promise((resolve, reject) => {
    let got: Readable | undefined;
    let ended: CircuitError | undefined;
    const rid = c.expectStream({
      val: () => {},
      stream: (r) => {
        got = r;
      },
      end: (err) => {
        ended = err;
      },
    });
    c.request(req(rid), signal).then(
      () => {
        if (got) resolve(got);
        else reject(ended ?? new ProtocolError("the server answered without a stream"));
      },
      (err) => {
        c.closeRecv(rid, 0);
        got?.destroy();
        reject(err);
      },
    );
  });
}

/** A Readable that opens its source on the first read; errors of the opening are its errors. */
export class LazyReadable extends Readable {
  private inner: Readable | undefined;
  private opening = false;

  constructor(private readonly open: () => Promise<Readable>) {
    super();
  }

  override _read(): void {
    if (this.inner) {
      this.inner.resume();
      return;
    }
    if (this.opening) return;
    this.opening = true;
    this.open().then(
      (r) => {
        if (this.destroyed) {
          r.destroy();
          return;
        }
        this.inner = r;
        r.on("data", (c: Buffer) => {
          if (!this.push(c)) r.pause();
        });
        r.once("end", () => this.push(null));
        r.once("error", (err) => this.destroy(err));
      },
      (err) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}

/**
 * A Writable that opens its destination on the first write (or at its end). `done` settles as the
 * server's answer to the opening request does.
 */
export class LazyWritable extends Writable {
  private inner: Promise<StreamWriter> | undefined;
  private writer: StreamWriter | undefined;

  constructor(private readonly open: () => Promise<StreamWriter>) {
    super();
  }

  private get(): Promise<StreamWriter> {
    if (!this.inner) {
      this.inner = this.open().then((w) => {
        this.writer = w;
        if (this.destroyed) w.destroy();
        return w;
      });
    }
    return this.inner;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.get().then(
      (w) => w.write(chunk, (err) => cb(err)),
      (err) => cb(err),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.get().then(
      (w) => w.end(() => cb(w.errored)),
      (err) => cb(err),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.writer?.destroy(err ?? undefined);
    cb(err);
  }
}
