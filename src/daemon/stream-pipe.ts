// A stream message inside the daemon: bytes from its sender wait here until a receiver has taken the
// message and granted credit. The pipe never holds more than the sender's window, so a sender is
// paced by its slowest link. Until a receiver takes the message the window is a small one
// (STREAM_WAITING_WINDOW): a channel full of stream messages holds little of each; once taken, it
// grows to STREAM_WINDOW, so that a stream being read keeps several frames in flight.

import { STREAM_WAITING_WINDOW, STREAM_WINDOW } from "../wire/protocol.js";
import type { Pieces } from "./pieces.js";

/** What a channel holds: an encoded value (a big one perhaps in pieces), or a stream message. */
export type Item = Buffer | Pieces | StreamPipe;

export interface PipeSender {
  /** The sender may send n more bytes. */
  credit(n: number): void;
  /** The message was dropped (channel scrubbed, receiver gone): stop sending. */
  abort(reason: string): void;
}

export interface PipeReceiver {
  data(chunk: Buffer): void;
  /** Several chunks that may go on as one (data() for each, when absent). */
  dataParts?(chunks: Buffer[]): void;
  fin(): void;
  broken(reason: string): void;
  /**
   * True while the receiver's connection has too much queued to take more: the pipe keeps its
   * bytes (and the sender its credit) until resume(). The receiver arranges that call.
   */
  blocked?(): boolean;
}

export class StreamPipe {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private finished = false;
  private brokenReason: string | undefined;
  private receiver: PipeReceiver | undefined;
  private credit = 0;
  private done = false;
  /** Bytes the sender may have here: the waiting window, then the full one once a receiver takes it. */
  private window = STREAM_WAITING_WINDOW;
  /**
   * Told once the message is over: `whole` if its end marker reached the receiver; `lost` if it
   * did not because the receiver's connection is gone (not because it stopped reading).
   */
  onEnd: ((whole: boolean, lost: boolean) => void) | undefined;

  constructor(
    readonly id: number,
    private sender: PipeSender | undefined,
  ) {
    sender?.credit(STREAM_WAITING_WINDOW);
  }

  /**
   * Bytes from the sender; with `more`, further bytes of the same frame follow at once and the
   * chunks go on together with them (a big frame arrives in pieces: FrameDecoder.passThrough).
   * Returns false if it sent more than its window allowed.
   */
  write(chunk: Buffer, more = false): boolean {
    if (this.done || this.finished) return true;
    if (this.bytes + chunk.length > this.window) return false;
    // Kept as it is when it is most of the buffer it lies in; a small piece of a big read buffer is
    // copied, or a trickle of tiny chunks could each pin a whole read buffer.
    this.chunks.push(chunk.length * 2 >= chunk.buffer.byteLength ? chunk : Buffer.from(chunk));
    this.bytes += chunk.length;
    if (!more) this.pump();
    return true;
  }

  /** The sender's end marker. */
  fin(): void {
    if (this.done) return;
    this.finished = true;
    this.sender = undefined;
    this.pump();
  }

  /** The sender went away (or gave up) before its end marker. */
  breakOff(reason: string): void {
    if (this.done || this.finished) return;
    this.brokenReason = reason;
    this.sender = undefined;
    this.pump();
  }

  /** A receiver took the message. */
  attach(r: PipeReceiver): void {
    this.receiver = r;
    if (this.window < STREAM_WINDOW) {
      this.sender?.credit(STREAM_WINDOW - this.window);
      this.window = STREAM_WINDOW;
    }
    this.pump();
  }

  /** The receiver may be sent n more bytes. */
  grant(n: number): void {
    this.credit += n;
    this.pump();
  }

  /** The receiver that was blocked may take bytes again. */
  resume(): void {
    this.pump();
  }

  /** Nobody will read this message (scrubbed, dropped, or `lost`: the receiver's connection is gone). */
  drop(reason: string, lost = false): void {
    if (this.done) return;
    this.done = true;
    this.chunks.length = 0;
    this.receiver = undefined;
    this.sender?.abort(reason);
    this.sender = undefined;
    this.onEnd?.(false, lost);
  }

  get isDone(): boolean {
    return this.done;
  }

  private pump(): void {
    const r = this.receiver;
    if (!r || this.done) return;
    if (this.chunks.length > 0 && this.credit > 0 && r.blocked?.()) return;
    let freed = 0;
    const parts: Buffer[] = [];
    while (this.chunks.length > 0 && this.credit > 0) {
      let c = this.chunks[0] as Buffer;
      if (c.length > this.credit) {
        this.chunks[0] = c.subarray(this.credit);
        c = c.subarray(0, this.credit);
      } else {
        this.chunks.shift();
      }
      this.credit -= c.length;
      this.bytes -= c.length;
      freed += c.length;
      if (r.dataParts) parts.push(c);
      else r.data(c);
    }
    if (parts.length > 0) r.dataParts?.(parts);
    if (freed > 0) this.sender?.credit(freed);
    if (this.chunks.length === 0) {
      if (this.finished) {
        this.done = true;
        r.fin();
        this.onEnd?.(true, false);
      } else if (this.brokenReason !== undefined) {
        this.done = true;
        r.broken(this.brokenReason);
        this.onEnd?.(false, false);
      }
    }
  }
}
