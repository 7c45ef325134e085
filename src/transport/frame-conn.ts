// A connection that carries frames over a byte stream (TCP, TLS, or an in-memory duplex). Frames
// written during one event-loop turn leave in one write: the protocol engines above write a frame
// per message and never think about syscalls.

import type { Duplex } from "node:stream";
import { ProtocolError } from "../errors.js";
import { FrameDecoder, FrameWriter } from "../wire/frame.js";

const FLUSH_AT = 256 * 1024;

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
  /** When the peer last sent anything (performance.now()). */
  lastInput = performance.now();
  /** When we last wrote anything (performance.now()). */
  lastOutput = performance.now();
  private readonly maxUnsent: number;
  private ended = false;

  constructor(
    readonly stream: Duplex,
    opts: FrameConnOptions,
  ) {
    this.decoder = new FrameDecoder(opts.maxFrame, (t, b) => this.onFrame(t, b));
    this.maxUnsent = opts.maxUnsent ?? Number.POSITIVE_INFINITY;
    stream.on("data", (chunk: Buffer) => {
      if (this.ended) return;
      this.lastInput = performance.now();
      try {
        this.decoder.push(chunk);
      } catch (err) {
        const e = err instanceof Error ? err : new ProtocolError(String(err));
        this.onBadInput(e);
        this.destroy(e);
      }
    });
    stream.on("error", (err) => this.finish(err));
    stream.on("close", () => this.finish());
    stream.on("end", () => this.finish());
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Queues a frame; it is written at the end of this event-loop turn. */
  send(type: number, fields: readonly number[], tail?: Uint8Array): void {
    if (this.ended) return;
    this.writer.frame(type, fields, tail);
    this.queued();
  }

  /** Queues `value` as an entry of a batch frame (FrameWriter.batch). */
  batch(type: number, key: number, value: Uint8Array): void {
    if (this.ended) return;
    this.writer.batch(type, key, value);
    this.queued();
  }

  /** Queues `bytes`, encoded as a MessagePack bin, as an entry of a batch frame. */
  batchBin(type: number, key: number, bytes: Uint8Array): void {
    if (this.ended) return;
    this.writer.batchBin(type, key, bytes);
    this.queued();
  }

  private queued(): void {
    if (this.writer.length >= FLUSH_AT) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  flush(): void {
    if (this.writer.length === 0 || this.ended) return;
    this.lastOutput = performance.now();
    // The frames leave from the writer's own buffer, which it gets back once they are written;
    // while an earlier write is still pending (a slow reader), they leave as an exact-size copy.
    if (this.writer.lending) this.stream.write(this.writer.take());
    else this.stream.write(this.writer.lend(), this.recycle);
    if (this.stream.writableLength > this.maxUnsent) {
      this.finish(new ProtocolError(`peer is not reading: over ${this.maxUnsent} bytes unsent`));
      this.stream.destroy();
    }
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

  private readonly recycle = (): void => this.writer.recycle();

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private finish(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose(err);
  }
}
