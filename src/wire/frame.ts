// Framing: every frame is [u32 big-endian length][u8 type][body], where length counts the type byte
// and the body. Bodies start with zero or more u32 fields (ids, handles, counts) that the frame type
// fixes, followed by an opaque tail (MessagePack for control frames, the encoded value for data
// frames). The decoder is a pure push-bytes state machine; the writer batches frames into one
// buffer so that a whole event-loop turn's frames leave in one write.

import { ProtocolError } from "../errors.js";

export const HEADER_BYTES = 5;

export type FrameHandler = (type: number, body: Buffer) => void;

export class FrameDecoder {
  private readonly parts: Buffer[] = [];
  private partBytes = 0;
  /** Total bytes (prefix included) of the frame being collected, or 0 while the prefix is unknown. */
  private need = 0;
  private failed = false;

  constructor(
    private readonly maxFrame: number,
    private readonly onFrame: FrameHandler,
  ) {}

  /**
   * Feeds bytes; calls onFrame for every complete frame in order. Throws ProtocolError for a zero
   * or oversized length prefix; after that the decoder refuses further input.
   */
  push(chunk: Buffer): void {
    if (this.failed) throw new ProtocolError("decoder already failed");
    if (this.partBytes > 0) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.need === 0) {
        if (this.partBytes < 4) return;
        this.need = this.frameSize(this.peekLength());
      }
      if (this.partBytes < this.need) return;
      chunk = Buffer.concat(this.parts, this.partBytes);
      this.parts.length = 0;
      this.partBytes = 0;
      this.need = 0;
    }
    let off = 0;
    const end = chunk.length;
    while (end - off >= 4) {
      const size = this.frameSize(chunk.readUInt32BE(off));
      if (end - off < size) break;
      this.onFrame(chunk[off + 4] as number, chunk.subarray(off + HEADER_BYTES, off + size));
      off += size;
    }
    if (off < end) {
      const rest = chunk.subarray(off);
      this.parts.push(rest);
      this.partBytes = rest.length;
      this.need = rest.length >= 4 ? this.frameSize(rest.readUInt32BE(0)) : 0;
    }
  }

  /** Bytes held while waiting for the rest of a frame. */
  get buffered(): number {
    return this.partBytes;
  }

  private peekLength(): number {
    const head = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.partBytes);
    return head.readUInt32BE(0);
  }

  private frameSize(len: number): number {
    if (len < 1 || len > this.maxFrame) {
      this.failed = true;
      throw new ProtocolError(len < 1 ? "empty frame" : `frame of ${len} bytes exceeds the limit of ${this.maxFrame}`);
    }
    return len + 4;
  }
}

/**
 * Accumulates frames in one growing buffer. `take()` hands out the bytes written so far (a copy the
 * caller may keep) and starts over.
 */
export class FrameWriter {
  private buf: Buffer;
  private n = 0;

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.n;
  }

  /** Appends one frame: type, u32 fields, then the tail bytes. */
  frame(type: number, fields: readonly number[], tail?: Uint8Array): void {
    const tailLen = tail ? tail.length : 0;
    const len = 1 + 4 * fields.length + tailLen;
    this.reserve(4 + len);
    const b = this.buf;
    let o = this.n;
    b.writeUInt32BE(len, o);
    b[o + 4] = type;
    o += HEADER_BYTES;
    for (const f of fields) {
      b.writeUInt32BE(f >>> 0, o);
      o += 4;
    }
    if (tail) {
      b.set(tail, o);
      o += tailLen;
    }
    this.n = o;
  }

  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.n));
    this.n = 0;
    if (this.buf.length > 1024 * 1024) this.buf = Buffer.allocUnsafe(64 * 1024);
    return out;
  }

  private reserve(extra: number): void {
    if (this.n + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + extra) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
}
