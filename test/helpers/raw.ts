// A hand-driven connection that speaks (or mis-speaks) the wire protocol, for tests of what a
// daemon does with exactly the frames a client sends.
import assert from "node:assert/strict";
import * as net from "node:net";
import { FrameDecoder, FrameWriter } from "../../src/wire/frame.ts";
import { decode, encode, PROTOCOL_VERSION, T } from "../../src/wire/protocol.ts";

export interface Frame {
  type: number;
  body: Buffer;
}

/** A hand-driven connection that speaks (or mis-speaks) the wire protocol. */
export class Raw {
  readonly frames: Frame[] = [];
  closed = false;
  private readonly sock: net.Socket;
  private readonly waiters: (() => void)[] = [];

  constructor(port: number) {
    this.sock = net.connect({ host: "127.0.0.1", port });
    const dec = new FrameDecoder(64 * 1024 * 1024, (type, body) => {
      this.frames.push({ type, body: Buffer.from(body) });
      this.wake();
    });
    this.sock.on("data", (c) => dec.push(c));
    this.sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    this.sock.on("error", () => {});
  }

  write(bytes: Buffer | Uint8Array): void {
    this.sock.write(bytes);
  }

  frame(type: number, fields: number[], tail?: Uint8Array): void {
    const w = new FrameWriter();
    w.frame(type, fields, tail);
    this.write(w.take());
  }

  /**
   * HELLO as a client (with `cid`, a client id: its sends are de-duplicated by sequence number);
   * returns the server's HELLO map.
   */
  async hello(cid?: string): Promise<Record<string, unknown>> {
    this.frame(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "client", ...(cid ? { cid } : {}) }));
    const f = await this.next();
    assert.equal(f?.type, T.HELLO);
    return decode((f as Frame).body) as Record<string, unknown>;
  }

  request(id: number, req: unknown): void {
    this.frame(T.REQ, [id], encode(req));
  }

  /** The next frame, or undefined once the connection closed. */
  async next(timeoutMs = 5000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0 && !this.closed) {
      if (Date.now() > deadline) throw new Error("no frame within the deadline");
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.frames.shift();
  }

  /** Reads until the connection closes; returns the error frames seen. */
  async untilClosed(timeoutMs = 5000): Promise<{ code: string; message: string }[]> {
    const errs = [];
    for (;;) {
      const f = await this.next(timeoutMs);
      if (!f) return errs;
      if (f.type === T.ERR) errs.push(decode(f.body.subarray(4)) as { code: string; message: string });
    }
  }

  destroy(): void {
    this.sock.destroy();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
