// Framing: every frame is [u32 big-endian length][u8 type][body], where length counts the type byte
// and the body. Bodies start with zero or more u32 fields (ids, handles, counts) that the frame type
// fixes, followed by an opaque tail (MessagePack for control frames, the encoded value for data
// frames). The decoder is a pure push-bytes state machine; the writer batches frames into one
// buffer so that a whole event-loop turn's frames leave in one write.

import { ProtocolError } from "../errors.js";

export const HEADER_BYTES = 5;
/** A batch frame takes further entries while it stays within this many bytes. */
export const BATCH_BYTES = 64 * 1024;

/** Bytes of a MessagePack bin header for n bytes. */
export function binHeadBytes(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Writes the MessagePack bin header for n bytes at b[o]; returns its length. */
export function writeBinHead(b: Buffer, o: number, n: number): number {
  if (n < 0x100) {
    b[o] = 0xc4;
    b[o + 1] = n;
    return 2;
  }
  if (n < 0x10000) {
    b[o] = 0xc5;
    b.writeUInt16BE(n, o + 1);
    return 3;
  }
  b[o] = 0xc6;
  b.writeUInt32BE(n, o + 1);
  return 5;
}

/**
 * Calls `each(start, end)` for every entry of a batch frame body (`fields` u32 fields, then
 * [u32 length][bytes] entries). Throws ProtocolError for an empty batch or a truncated entry.
 */
export function forEachEntry(body: Buffer, fields: number, each: (start: number, end: number) => void): void {
  let off = 4 * fields;
  const end = body.length;
  if (off >= end) throw new ProtocolError("empty batch frame");
  while (off < end) {
    if (end - off < 4) throw new ProtocolError("truncated batch entry");
    const n = body.readUInt32BE(off);
    off += 4;
    if (n > end - off) throw new ProtocolError("truncated batch entry");
    each(off, off + n);
    off += n;
  }
}

/** The body tail of a batch frame holding `values` (for tests and tools). */
export function batchTail(values: readonly Uint8Array[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const v of values) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(v.length, 0);
    parts.push(len, v);
  }
  return Buffer.concat(parts);
}

export type FrameHandler = (type: number, body: Buffer) => void;

/**
 * Frames of the decoder's pass-through type (FrameDecoder.passThrough) whose tail is at least this
 * big are handed on in pieces as their bytes arrive instead of being collected whole first.
 */
export const PASS_MIN = 128 * 1024;
/** A passed-through frame's head: length prefix, type, and the one u32 field (its id). */
const PASS_HEAD = HEADER_BYTES + 4;

/**
 * Where a pass-through frame's pieces go: `id` is its first u32 field, `piece` the next bytes of
 * its tail (never empty; the pieces of one frame, in order, are its whole tail), `last` true for
 * the frame's last piece.
 */
export type PieceHandler = (id: number, piece: Buffer, last: boolean) => void;

/**
 * Where a gathered frame goes (FrameDecoder.gather): its type and its body as the pieces it
 * arrived in, in order (the first holds at least GATHER_HEAD bytes), `size` bytes in all.
 */
export type GatherHandler = (type: number, pieces: Buffer[], size: number) => void;

/** A gathered frame's first piece holds at least this many bytes of its body (its u32 fields, say). */
export const GATHER_HEAD = 64;

export class FrameDecoder {
  private readonly parts: Buffer[] = [];
  private partBytes = 0;
  /** Total bytes (prefix included) of the frame being collected, or 0 while the prefix is unknown. */
  private need = 0;
  private failed = false;
  /** The frame type handed on in pieces, and where they go (passThrough()). */
  private passType = -1;
  private passMin = PASS_MIN;
  private onPiece: PieceHandler = () => {};
  /** Tail bytes of the frame being passed through still to come, and its id. */
  private passing = 0;
  private passId = 0;
  /** Frame types handed over in pieces once whole (gather()), from what size, and to whom. */
  private gatherTypes: readonly number[] = [];
  private gatherMin = Number.POSITIVE_INFINITY;
  private onGathered: GatherHandler = () => {};

  constructor(
    private readonly maxFrame: number,
    private readonly onFrame: FrameHandler,
  ) {}

  /**
   * Frames of `type` (whose body is one u32 field, then bytes that may be split anywhere: a stream's
   * data) with a tail of `min` (PASS_MIN) or more go to `onPiece` piece by piece as they arrive,
   * each piece a view of the bytes pushed: a big frame is never copied together.
   */
  passThrough(type: number, onPiece: PieceHandler, min = PASS_MIN): void {
    this.passType = type;
    this.onPiece = onPiece;
    this.passMin = Math.max(1, min);
  }

  /**
   * Frames of `types` of `min` bytes or more that arrive over several pushes go to `onGathered`
   * once whole, as the pieces they arrived in, instead of being copied into one buffer for
   * onFrame (a copy into fresh memory that costs more than the reads). Pieces smaller than 8 KiB on
   * average (a trickle of tiny reads) are copied together as before.
   */
  gather(types: readonly number[], onGathered: GatherHandler, min: number): void {
    this.gatherTypes = types;
    this.onGathered = onGathered;
    this.gatherMin = Math.max(GATHER_HEAD + HEADER_BYTES, min);
  }

  /**
   * Feeds bytes; calls onFrame for every complete frame in order (onPiece for the pieces of a
   * pass-through frame, in their place in that order). Throws ProtocolError for a zero or
   * oversized length prefix; after that the decoder refuses further input.
   */
  push(chunk: Buffer): void {
    if (this.failed) throw new ProtocolError("decoder already failed");
    if (this.passing > 0) {
      const n = Math.min(this.passing, chunk.length);
      this.passing -= n;
      this.onPiece(this.passId, n === chunk.length ? chunk : chunk.subarray(0, n), this.passing === 0);
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    if (this.partBytes > 0) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.need === 0) {
        if (this.partBytes < 4) return;
        this.need = this.frameSize(this.peekLength());
      }
      if (this.partBytes < this.need) {
        if (this.partBytes >= PASS_HEAD && this.passes(this.need)) {
          const start = Buffer.concat(this.parts, this.partBytes);
          this.parts.length = 0;
          this.partBytes = 0;
          this.startPassing(start, this.need);
          this.need = 0;
        }
        return;
      }
      if (this.need >= this.gatherMin && this.gathered()) {
        // What follows the gathered frame lies in this chunk, the last part.
        const over = this.partBytes - this.need;
        this.partBytes = 0;
        this.need = 0;
        if (over === 0) return;
        chunk = chunk.subarray(chunk.length - over);
      } else {
        // Only the frame's own bytes are copied together: the rest of this chunk is read in place
        // below. (Copying the whole chunk in with them made nearly every read of a stream of
        // 64 KiB batches a fresh allocation of up to twice a read, and the page faults on it cost
        // more than the copy.)
        const take = chunk.length - (this.partBytes - this.need);
        this.parts[this.parts.length - 1] = chunk.subarray(0, take);
        const frame = Buffer.concat(this.parts, this.need);
        this.parts.length = 0;
        this.partBytes = 0;
        this.need = 0;
        this.onFrame(frame[4] as number, frame.subarray(HEADER_BYTES));
        if (take === chunk.length) return;
        chunk = chunk.subarray(take);
      }
    }
    let off = 0;
    const end = chunk.length;
    while (end - off >= 4) {
      const size = this.frameSize(chunk.readUInt32BE(off));
      if (end - off < size) {
        if (end - off >= PASS_HEAD && size - PASS_HEAD >= this.passMin && chunk[off + 4] === this.passType) {
          this.startPassing(off === 0 ? chunk : chunk.subarray(off), size);
          return;
        }
        break;
      }
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

  /**
   * The collected parts hold a whole frame (`need` bytes, maybe more after it): if it is one to
   * gather, hands it over in pieces, empties the parts and returns true.
   */
  private gathered(): boolean {
    const parts = this.parts;
    if (parts.length * 8192 > this.need) return false;
    const type = this.byteAt(4);
    if (!this.gatherTypes.includes(type)) return false;
    // The pieces of this frame alone: the last part may run on into the next frame.
    const pieces = parts.splice(0);
    const over = this.partBytes - this.need;
    if (over > 0) {
      const last = pieces[pieces.length - 1] as Buffer;
      pieces[pieces.length - 1] = last.subarray(0, last.length - over);
    }
    // The body starts after the length prefix and type; its first piece holds GATHER_HEAD bytes.
    while ((pieces[0] as Buffer).length < HEADER_BYTES + GATHER_HEAD) {
      pieces.splice(0, 2, Buffer.concat([pieces[0] as Buffer, pieces[1] as Buffer]));
    }
    pieces[0] = (pieces[0] as Buffer).subarray(HEADER_BYTES);
    this.onGathered(type, pieces, this.need - HEADER_BYTES);
    return true;
  }

  /** Byte `at` of the collected parts (which hold more than `at` bytes). */
  private byteAt(at: number): number {
    for (const p of this.parts) {
      if (at < p.length) return p[at] as number;
      at -= p.length;
    }
    return Number.NaN;
  }

  /** Bytes held while waiting for the rest of a frame. */
  get buffered(): number {
    return this.partBytes;
  }

  /** Whether the frame of `size` bytes that the collected parts begin (PASS_HEAD bytes of it at least) is passed through. */
  private passes(size: number): boolean {
    // The type byte follows the length prefix, in whichever part holds byte 4.
    return size - PASS_HEAD >= this.passMin && this.byteAt(4) === this.passType;
  }

  /** `start` holds the first bytes (PASS_HEAD or more, fewer than `size`) of a pass-through frame. */
  private startPassing(start: Buffer, size: number): void {
    this.passId = start.readUInt32BE(HEADER_BYTES);
    this.passing = size - start.length;
    if (start.length > PASS_HEAD) this.onPiece(this.passId, start.subarray(PASS_HEAD), false);
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
 * A batch frame whose entries wait beside the writer's buffer (FrameWriter.batch): `first` is its
 * first entry's sequence number (CSEND), `n` the bytes of its entries so far, `segs` where they
 * lie in the writer's side buffer ([start, end) pairs, in order).
 */
interface Staged {
  type: number;
  key: number;
  first: number | undefined;
  n: number;
  segs: number[];
}

/**
 * Accumulates frames in one growing buffer. `take()` hands out the bytes written so far (a copy the
 * caller may keep) and starts over.
 *
 * Batch entries of one type and key go into one frame while no other kind of frame comes between
 * them, even when entries for other keys do (a producer sending round-robin over many channels):
 * while the frame written last is a batch, entries for other batches wait beside the buffer, one
 * frame each, and are written after it, in the order their first entries came, before any other
 * frame and before the bytes are handed out. So the entries of one key keep their order, and so
 * does every frame that is not a batch entry; only entries of different keys written between two
 * such frames may change places (they travel in the same write).
 */
export class FrameWriter {
  private buf: Buffer;
  private n = 0;
  /** Where the batch frame written last starts (its length prefix), or -1 if the last frame is not one. */
  private batchAt = -1;
  private batchType = 0;
  private batchKey = 0;
  /** Batch frames waiting to be written after the buffer's last one, in the order they began. */
  private readonly staged: Staged[] = [];
  /** The staged frame that takes further entries of a key (of its type; another type starts another). */
  private readonly stagedBy = new Map<number, Staged>();
  /** Staged frames written out, kept for the next ones. */
  private readonly spareStaged: Staged[] = [];
  /** The entries of the staged frames, one after another as they came (each frame knows its own). */
  private side: Buffer | undefined;
  private sideN = 0;
  /** Bytes the staged frames will take in the buffer, headers included. */
  private stagedBytes = 0;
  /** Buffers handed out by lend() and not yet given back, oldest first. */
  private readonly lent: Buffer[] = [];
  /** Buffers given back, ready for reuse. */
  private readonly spare: Buffer[] = [];

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.n + this.stagedBytes;
  }

  /** Appends one frame: type, u32 fields, then the tail bytes. */
  frame(type: number, fields: readonly number[], tail?: Uint8Array): void {
    if (this.staged.length > 0) this.unstage();
    this.batchAt = -1;
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

  /**
   * Appends `value` as one entry ([u32 length][bytes]) of a batch frame `[type][key] entry...`:
   * to the frame written last if that is a batch of the same type and key with room; else, while
   * that frame is a batch of another key, to the frame of this key waiting beside the buffer (see
   * the class); else to a new one.
   */
  batch(type: number, key: number, value: Uint8Array, first?: number): void {
    const o = this.stage(type, key, value.length, first);
    if (o >= 0) {
      (this.side as Buffer).set(value, o);
      return;
    }
    this.entryHead(type, key, value.length, first);
    this.buf.set(value, this.n);
    this.n += value.length;
  }

  /** Like batch(), with the entry being `bytes` encoded as a MessagePack bin (no copy made first). */
  batchBin(type: number, key: number, bytes: Uint8Array, first?: number): void {
    const n = bytes.length;
    const o = this.stage(type, key, binHeadBytes(n) + n, first);
    if (o >= 0) {
      const side = this.side as Buffer;
      side.set(bytes, o + writeBinHead(side, o, n));
      return;
    }
    this.entryHead(type, key, binHeadBytes(n) + n, first);
    const at = this.n + writeBinHead(this.buf, this.n, n);
    this.buf.set(bytes, at);
    this.n = at + n;
  }

  /**
   * Where in the side buffer an entry of `size` bytes for type and key goes (its length prefix
   * written before it, and counted in its staged frame); or -1 if it goes into the buffer (it
   * belongs to the buffer's last frame, or no batch is open there).
   */
  private stage(type: number, key: number, size: number, first: number | undefined): number {
    if (this.batchAt < 0 || (this.batchType === type && this.batchKey === key)) return -1;
    let st = this.stagedBy.get(key);
    if (st && (st.type !== type || st.n + 4 + size > BATCH_BYTES - HEADER_BYTES - 8)) st = undefined;
    if (!st) {
      st = this.spareStaged.pop() ?? { type, key, first, n: 0, segs: [] };
      st.type = type;
      st.key = key;
      st.first = first;
      this.staged.push(st);
      this.stagedBy.set(key, st);
      this.stagedBytes += HEADER_BYTES + (first === undefined ? 4 : 8);
    }
    const need = 4 + size;
    let side = this.side;
    if (!side || this.sideN + need > side.length) {
      let len = side ? side.length * 2 : 16 * 1024;
      while (len < this.sideN + need) len *= 2;
      const next = Buffer.allocUnsafe(len);
      side?.copy(next, 0, 0, this.sideN);
      this.side = side = next;
    }
    const at = this.sideN;
    side.writeUInt32BE(size, at);
    // An entry right after the frame's last one (nothing else came between) extends its piece.
    const segs = st.segs;
    if (segs.length > 0 && segs[segs.length - 1] === at) segs[segs.length - 1] = at + need;
    else segs.push(at, at + need);
    this.sideN = at + need;
    st.n += need;
    this.stagedBytes += need;
    return at + 4;
  }

  /** Writes the staged frames into the buffer, in the order they began; none is open after them. */
  private unstage(): void {
    const side = this.side as Buffer;
    for (const st of this.staged) {
      let at = this.batchHead(st.type, st.key, st.first, st.n);
      const segs = st.segs;
      for (let i = 0; i < segs.length; i += 2) at += side.copy(this.buf, at, segs[i] as number, segs[i + 1] as number);
      this.n = at;
      segs.length = 0;
      st.n = 0;
      if (this.spareStaged.length < 256) this.spareStaged.push(st);
    }
    this.staged.length = 0;
    this.stagedBy.clear();
    this.stagedBytes = 0;
    this.sideN = 0;
    // As the buffer itself: a burst of big entries does not keep its memory.
    if (side.length > 1024 * 1024) this.side = undefined;
    this.batchAt = -1;
  }

  /**
   * Writes the entry's length prefix (starting or extending a batch frame) and makes room for it.
   * With `first`, a new batch frame carries it as a second header field (CSEND's sequence number
   * of its first entry; the caller numbers the entries of one frame consecutively).
   */
  private entryHead(type: number, key: number, size: number, first?: number): void {
    const at = this.batchAt;
    if (at >= 0 && this.batchType === type && this.batchKey === key && this.n - at + 4 + size <= BATCH_BYTES) {
      this.reserve(4 + size);
      const b = this.buf;
      b.writeUInt32BE(size, this.n);
      this.n += 4;
      b.writeUInt32BE(this.n - at - 4 + size, at);
      return;
    }
    const start = this.n;
    const entry = this.batchHead(type, key, first, 4 + size);
    this.buf.writeUInt32BE(size, entry);
    this.n = entry + 4;
    this.batchAt = start;
    this.batchType = type;
    this.batchKey = key;
  }

  /**
   * Writes the header of a batch frame whose entries take `bytes` (with `first`, its second
   * field) at the end of the buffer, with room made for them; returns where they go.
   */
  private batchHead(type: number, key: number, first: number | undefined, bytes: number): number {
    const at = this.n;
    const head = first === undefined ? 4 : 8;
    this.reserve(HEADER_BYTES + head + bytes);
    const b = this.buf;
    b.writeUInt32BE(1 + head + bytes, at);
    b[at + 4] = type;
    b.writeUInt32BE(key >>> 0, at + 5);
    if (first !== undefined) b.writeUInt32BE(first >>> 0, at + 9);
    return at + HEADER_BYTES + head;
  }

  take(): Buffer {
    if (this.staged.length > 0) this.unstage();
    const out = Buffer.from(this.buf.subarray(0, this.n));
    this.n = 0;
    this.batchAt = -1;
    if (this.buf.length > 1024 * 1024) this.buf = Buffer.allocUnsafe(64 * 1024);
    return out;
  }

  /** True while a buffer lent out has not come back. */
  get lending(): boolean {
    return this.lent.length > 0;
  }

  /**
   * Hands out the bytes written so far without copying them, and goes on in another buffer. The
   * caller gives each handed-out buffer back with recycle() once it is done with it, in order.
   * A caller whose earlier loan is still out should take() instead: a buffer lent per write to a
   * peer that reads slowly would hold a whole buffer for every few bytes waiting.
   */
  lend(): Buffer {
    if (this.staged.length > 0) this.unstage();
    const out = this.buf.subarray(0, this.n);
    this.lent.push(this.buf);
    this.buf = this.spare.pop() ?? Buffer.allocUnsafeSlow(64 * 1024);
    this.n = 0;
    this.batchAt = -1;
    return out;
  }

  /** The buffer lent out first is free again. */
  recycle(): void {
    const b = this.lent.shift();
    if (b && b.length <= 1024 * 1024 && this.spare.length < 2) this.spare.push(b);
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
