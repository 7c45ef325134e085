// A connection that carries frames over a byte stream (TCP, TLS, or an in-memory duplex). Frames
// written during one event-loop turn leave in one write: the protocol engines above write a frame
// per message and never think about syscalls.

import type { Duplex } from "node:stream";
import { ProtocolError } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import { keepFreedMemory } from "../util/malloc-hint.js";
import { afterMicrotasks } from "../util/microtask.js";
import {
  binHeadBytes,
  FrameDecoder,
  FrameWriter,
  type GatherHandler,
  HEADER_BYTES,
  type PieceHandler,
  writeBinHead,
} from "../wire/frame.js";
import { adoptDirectReads } from "./direct-read.js";

const FLUSH_AT = 256 * 1024;
/**
 * A frame whose tail (or a batch entry) is at least this big leaves as its own write, straight from
 * the caller's buffer, instead of being copied into the writer's: for a 16 MiB value that copy, and
 * the fresh 32 MiB buffer it needs, cost more than the socket write.
 */
const LARGE = 64 * 1024;

export interface FrameConnOptions {
  /** Largest frame accepted from the peer, in bytes (length prefix excluded). */
  maxFrame: number;
  /**
   * Most bytes that may wait unsent for a peer that does not read; past it the connection is
   * closed rather than letting the peer grow our memory. Default: unlimited.
   */
  maxUnsent?: number;
}

export class FrameConn {
  onFrame: (type: number, body: Buffer) => void = () => {};
  /** Called once when the connection ends, with the reason if it was not a clean close. */
  onClose: (err?: Error) => void = () => {};
  /** Called when the peer's bytes cannot be framed, just before the connection is destroyed. */
  onBadInput: (err: Error) => void = () => {};

  private readonly writer = new FrameWriter();
  private readonly decoder: FrameDecoder;
  private scheduled = false;
  /** A flush waits for the microtasks queued before it (flushAfterMicrotasks). */
  private microFlush = false;
  /** When the peer last sent anything (monotonicMs()). */
  lastInput = monotonicMs();
  /** When we last wrote anything (monotonicMs()). */
  lastOutput = monotonicMs();
  /** How many writes have been made: the frames queued between two counts leave in one write. */
  writes = 0;
  /** When the operating system last accepted bytes we wrote (monotonicMs()). */
  lastDrain = monotonicMs();
  /** Called whenever the operating system has accepted more of our bytes. */
  onDrain: () => void = () => {};
  private readonly maxUnsent: number;
  private ended = false;
  /** Bytes handed to the stream so far, and how many of those the operating system has accepted. */
  private flushedBytes = 0;
  private acceptedBytes = 0;
  /** Per write in flight, oldest first: where it ends in the byte count, and whether it was lent. */
  private readonly inFlight: { end: number; lent: boolean }[] = [];
  /** Promises of written(), oldest first, each with the byte count it waits for. */
  private readonly waiters: { end: number; resolve(): void; reject(e: Error): void }[] = [];
  /** The promise the frames queued since the last flush share (written() while the writer holds bytes). */
  private batchDone: Promise<void> | undefined;
  private batchWaiter: { end: number; resolve(): void; reject(e: Error): void } | undefined;
  private closeError: Error | undefined;

  constructor(
    readonly stream: Duplex,
    opts: FrameConnOptions,
  ) {
    keepFreedMemory();
    this.decoder = new FrameDecoder(opts.maxFrame, (t, b) => this.onFrame(t, b));
    this.maxUnsent = opts.maxUnsent ?? Number.POSITIVE_INFINITY;
    const onBytes = (chunk: Buffer): void => {
      if (this.ended) return;
      this.lastInput = monotonicMs();
      try {
        this.decoder.push(chunk);
      } catch (err) {
        const e = err instanceof Error ? err : new ProtocolError(String(err));
        this.onBadInput(e);
        this.destroy(e);
      }
    };
    if (!adoptDirectReads(stream, onBytes)) stream.on("data", onBytes);
    stream.on("error", (err) => {
      this.closeError ??= err;
      this.finish(err);
    });
    stream.on("close", () => {
      this.finish();
      // Whatever the operating system had not accepted by now never left this process.
      const err = this.closeError ?? new ProtocolError("connection closed before the bytes were written");
      for (const w of this.waiters.splice(0)) w.reject(err);
      if (this.batchWaiter) this.batchWaiter.reject(err);
      this.batchWaiter = undefined;
      this.batchDone = undefined;
    });
    stream.on("end", () => this.finish());
  }

  get closed(): boolean {
    return this.ended;
  }

  /**
   * Big frames of `type` (a stream's data: one u32 id field, then bytes) reach `onPiece` in pieces
   * as they arrive rather than onFrame whole (FrameDecoder.passThrough).
   */
  passThrough(type: number, onPiece: PieceHandler, min?: number): void {
    this.decoder.passThrough(type, onPiece, min);
  }

  /**
   * Big frames of `types` that arrive over several reads reach `onGathered` as the pieces they
   * arrived in rather than onFrame in one buffer (FrameDecoder.gather).
   */
  gather(types: readonly number[], onGathered: GatherHandler, min: number): void {
    this.decoder.gather(types, onGathered, min);
  }

  /**
   * Queues one frame whose tail is `parts` one after another. Big ones leave from the parts
   * themselves, in one write with the header (no copy): the caller must not change them.
   */
  sendParts(type: number, fields: readonly number[], parts: readonly Buffer[]): void {
    if (this.ended) return;
    if (parts.length === 1) return this.send(type, fields, parts[0]);
    let total = 0;
    for (const p of parts) total += p.length;
    if (total < LARGE) return this.send(type, fields, Buffer.concat(parts, total));
    this.sendLarge(type, fields, false, parts, false);
  }

  /** Queues a frame; it is written at the end of this event-loop turn. */
  send(type: number, fields: readonly number[], tail?: Uint8Array): void {
    if (this.ended) return;
    if (tail && tail.length >= LARGE) return this.sendLarge(type, fields, false, [tail], false);
    this.writer.frame(type, fields, tail);
    this.queued();
  }

  /**
   * Queues a frame whose tail is `bytes` encoded as a MessagePack bin. Large bytes are written
   * from `bytes` itself, after a header that holds the bin's head (no copy of them): the caller
   * must not change them until written().
   */
  sendBin(type: number, fields: readonly number[], bytes: Uint8Array): void {
    if (this.ended) return;
    if (bytes.length >= LARGE) return this.sendLarge(type, fields, false, [bytes], true);
    const tail = Buffer.allocUnsafe(binHeadBytes(bytes.length) + bytes.length);
    tail.set(bytes, writeBinHead(tail, 0, bytes.length));
    this.send(type, fields, tail);
  }

  /**
   * Queues `value` as an entry of a batch frame (FrameWriter.batch). A large value goes as a batch
   * frame of its own, written from `value` itself: the caller must not change it until written().
   */
  batch(type: number, key: number, value: Uint8Array, first?: number): void {
    if (this.ended) return;
    if (value.length >= LARGE)
      return this.sendLarge(type, first === undefined ? [key] : [key, first], true, [value], false);
    this.writer.batch(type, key, value, first);
    this.queued();
  }

  /**
   * Writes what is queued, then one frame whose tail leaves from `tails` themselves, one after
   * another (a batch entry with `entry`; with `bin`, the tail is the content of a MessagePack bin
   * whose head the header ends with).
   */
  private sendLarge(
    type: number,
    fields: readonly number[],
    entry: boolean,
    tails: readonly Uint8Array[],
    bin: boolean,
  ): void {
    this.flush();
    if (this.ended) return;
    let tailBytes = 0;
    for (const t of tails) tailBytes += t.length;
    const binHead = bin ? binHeadBytes(tailBytes) : 0;
    const headBytes = HEADER_BYTES + 4 * fields.length + (entry ? 4 : 0) + binHead;
    const head = Buffer.allocUnsafe(headBytes);
    head.writeUInt32BE(headBytes - 4 + tailBytes, 0);
    head[4] = type;
    let o = HEADER_BYTES;
    for (const f of fields) {
      head.writeUInt32BE(f >>> 0, o);
      o += 4;
    }
    if (entry) {
      head.writeUInt32BE(binHead + tailBytes, o);
      o += 4;
    }
    if (bin) writeBinHead(head, o, tailBytes);
    this.lastOutput = monotonicMs();
    this.stream.cork();
    this.writeOut(head, false);
    for (const t of tails) this.writeOut(t, false);
    this.stream.uncork();
    this.overLimit();
  }

  private writeOut(chunk: Uint8Array, lent: boolean): void {
    this.writes++;
    this.flushedBytes += chunk.length;
    this.inFlight.push({ end: this.flushedBytes, lent });
    this.stream.write(chunk, this.onWritten);
  }

  private overLimit(): void {
    if (this.stream.writableLength > this.maxUnsent) {
      this.finish(new ProtocolError(`peer is not reading: over ${this.maxUnsent} bytes unsent`));
      this.stream.destroy();
    }
  }

  /**
   * Queues a value whose bytes are `parts` one after another as an entry of a batch frame: a big
   * one as a batch frame of its own, written from the parts themselves (the caller must not change
   * them), a small one copied in like batch().
   */
  batchParts(type: number, key: number, parts: readonly Buffer[], length: number): void {
    if (this.ended) return;
    if (length >= LARGE) return this.sendLarge(type, [key], true, parts, false);
    this.batch(type, key, parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts as Buffer[], length));
  }

  /** Queues `bytes`, encoded as a MessagePack bin, as an entry of a batch frame. */
  batchBin(type: number, key: number, bytes: Uint8Array, first?: number): void {
    if (this.ended) return;
    if (bytes.length >= LARGE)
      return this.sendLarge(type, first === undefined ? [key] : [key, first], true, [bytes], true);
    this.writer.batchBin(type, key, bytes, first);
    this.queued();
  }

  /**
   * Takes this turn's place in the order of writes now, before any frame is queued: connections
   * write in the order they were first given a frame in a turn, so a caller that knows which answer
   * matters most can put it first.
   */
  prime(): void {
    if (this.ended || this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushSoon);
  }

  private queued(): void {
    if (this.writer.length >= FLUSH_AT) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  /** True if frames are queued to be written at the end of this turn. */
  get queuing(): boolean {
    return this.writer.length > 0;
  }

  /**
   * More than half the bound on unsent bytes waits here: whoever chooses when to send (a daemon
   * handing values to receivers) should hold back until written() settles, short of the bound,
   * where a peer is cut off as one that does not read.
   */
  get backedUp(): boolean {
    return this.unsent > this.maxUnsent / 2;
  }

  /** Bytes queued here or in the stream that the operating system has not accepted yet. */
  get unsent(): number {
    return this.writer.length + this.flushedBytes - this.acceptedBytes;
  }

  /**
   * Settles once every byte queued so far has been accepted by the operating system (the kernel
   * then delivers it even if this process dies); rejects if the connection closes first. The
   * frames of one turn share one promise.
   */
  written(): Promise<void> {
    if (this.writer.length > 0) {
      if (!this.batchDone) {
        this.batchDone = new Promise<void>((resolve, reject) => {
          this.batchWaiter = { end: 0, resolve, reject };
        });
      }
      return this.batchDone;
    }
    if (this.acceptedBytes >= this.flushedBytes) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.waiters.push({ end: this.flushedBytes, resolve, reject }));
  }

  flush(): void {
    if (this.writer.length === 0 || this.ended) return;
    this.lastOutput = monotonicMs();
    const bw = this.batchWaiter;
    this.batchWaiter = undefined;
    this.batchDone = undefined;
    // The frames leave from the writer's own buffer, which it gets back once they are written;
    // while an earlier write is still pending (a slow reader), they leave as an exact-size copy.
    const lent = !this.writer.lending;
    const chunk = lent ? this.writer.lend() : this.writer.take();
    if (bw) {
      bw.end = this.flushedBytes + chunk.length;
      this.waiters.push(bw);
    }
    this.writeOut(chunk, lent);
    this.overLimit();
  }

  /** Writes what is queued, then ends the connection. */
  end(): void {
    if (this.ended) return;
    this.flush();
    this.stream.end();
    this.finish();
  }

  destroy(err?: Error): void {
    if (this.ended) return;
    this.flush();
    this.finish(err);
    // Let queued bytes (an error frame, say) leave before the socket goes.
    this.stream.end();
    setTimeout(() => this.stream.destroy(), 200).unref();
  }

  /** A write has completed (callbacks come in write order). */
  private readonly onWritten = (err?: Error | null): void => {
    const w = this.inFlight.shift();
    if (!w || err) return;
    if (w.lent) this.writer.recycle();
    this.acceptedBytes = w.end;
    this.lastDrain = monotonicMs();
    const ws = this.waiters;
    while (ws.length > 0 && (ws[0] as { end: number }).end <= w.end) (ws.shift() as { resolve(): void }).resolve();
    this.onDrain();
  };

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /**
   * Writes what is queued once the microtasks queued so far have run, not at the end of the turn:
   * what they queue meanwhile leaves in the same write (several receive loops woken by one read,
   * each handing credit back).
   */
  flushAfterMicrotasks(): void {
    if (this.microFlush || this.ended) return;
    this.microFlush = true;
    afterMicrotasks(this.flushMicro);
  }

  private readonly flushMicro = (): void => {
    this.microFlush = false;
    this.flush();
  };

  private finish(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose(err);
  }
}
