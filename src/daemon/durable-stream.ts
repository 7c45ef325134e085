// Stream messages in a durable channel (DESIGN §3.1 streams, §3.6). Writing: the bytes are stored
// as they arrive, chunk by chunk, under a stream number recorded as incomplete; only once every
// chunk is synced does the message enter the channel, as a marker value (durable-store.ts) written
// in the transaction that records it complete. Memory stays bounded whatever the message's length:
// the sender gets credit back as chunks are synced (WRITE_WINDOW in flight at most). Reading: a
// receiver that takes a marker gets a pipe fed from the store as it grants credit. A restart
// deletes incomplete messages, so a receiver sees a whole message or none.

import { ChannelAborted, StorageFull, StreamBroken } from "../errors.js";
import type { DurableChan } from "./durable-chan.js";
import { type DurableStore, markerOf, streamMarker, writeError } from "./durable-store.js";
import { type PipeReceiver, type PipeSender, StreamPipe } from "./stream-pipe.js";

/** Most bytes of one stream message written and not yet synced. */
export const WRITE_WINDOW = 512 * 1024;
/** The largest stream message a durable channel takes (the marker's length field: 6 bytes). */
export const MAX_STORED_STREAM = 2 ** 48 - 1;

export type StreamEnd = { marker: Buffer } | { error: Error };

/** A stream message being written into a durable channel's store. */
export class DurableStreamIn implements PipeReceiver {
  readonly stream: number;
  private n = 0;
  private length = 0;
  private last: Promise<unknown> = Promise.resolve();
  private over = false;

  private readonly store: DurableStore;
  private readonly chanId: number;

  constructor(
    private readonly durable: DurableChan,
    private readonly pipe: StreamPipe,
    private readonly onEnd: (e: StreamEnd) => void,
  ) {
    this.store = durable.store;
    this.chanId = durable.id;
    pipe.attach(this);
    if (!this.store.hasRoom(WRITE_WINDOW)) {
      // Nothing is written at all on a (nearly) full disk (see DurableStore.hasRoom).
      this.stream = 0;
      this.over = true;
      queueMicrotask(() => onEnd({ error: new StorageFull(`the disk holding ${this.store.file} is full`) }));
      return;
    }
    this.stream = this.store.openStream(this.chanId);
    pipe.grant(WRITE_WINDOW);
  }

  /** The pieces of one frame from the sender, stored as one chunk (as the frame was before it came in pieces). */
  dataParts(chunks: Buffer[]): void {
    this.data(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  }

  data(chunk: Buffer): void {
    if (this.over) return;
    if (this.durable.isDropped) {
      this.fail(new ChannelAborted());
      return;
    }
    if (this.length + chunk.length > MAX_STORED_STREAM) {
      this.fail(new RangeError(`a stream message in a durable channel is at most ${MAX_STORED_STREAM} bytes`));
      return;
    }
    this.length += chunk.length;
    const len = chunk.length;
    if (!this.store.hasRoom(chunk.length)) {
      this.fail(new StorageFull(`the disk holding ${this.store.file} is full`));
      return;
    }
    const p = this.store.putChunk(this.chanId, this.stream, this.n++, chunk);
    this.last = p;
    p.then(
      () => {
        if (!this.over) this.pipe.grant(len);
      },
      async (err) => this.fail(await writeError(this.store.file, err)),
    );
  }

  fin(): void {
    if (this.over) return;
    // Every chunk synced: the message may enter the channel (its marker is written then).
    this.last.then(
      () => {
        if (this.over) return;
        this.over = true;
        this.onEnd({ marker: streamMarker(this.stream, this.length) });
      },
      () => {},
    );
  }

  broken(reason: string): void {
    this.end(new StreamBroken(reason));
  }

  /**
   * The send was cancelled or its sender is gone: nothing of it stays. The pipe is not dropped: a
   * sender told that its send failed (ERR) destroys its writer, which ends the pipe; were the pipe
   * dropped too, its writer would fail with StreamBroken rather than with the reason. Until then
   * the pipe holds at most the sender's window, since no more credit is granted.
   */
  abort(reason: string): void {
    this.end(new Error(reason));
  }

  private fail(err: Error): void {
    this.end(err);
  }

  private end(err: Error): void {
    if (this.over) return;
    this.over = true;
    void this.store.dropStream(this.chanId, this.stream).catch(() => {});
    this.onEnd({ error: err });
  }
}

/**
 * A pipe that reads stored stream message `marker` of `durable` out to one receiver, chunk by
 * chunk as it grants credit. When it ends the channel hears whether the message went out whole.
 */
export function readStored(durable: DurableChan, pipeId: number, marker: Buffer): StreamPipe {
  const store = durable.store;
  const m = markerOf(marker) as { stream: number; length: number };
  const entry = { acked: false };
  durable.reading.set(marker, entry);
  let credit = 0;
  let sent = 0;
  let n = 0;
  let cur: Buffer | undefined;
  let pipe: StreamPipe | undefined;
  let scheduled = false;
  const pump = (): void => {
    scheduled = false;
    const p = pipe;
    if (!p || p.isDone) return;
    while (credit > 0 && sent < m.length) {
      if (!cur || cur.length === 0) {
        cur = store.chunk(durable.id, m.stream, n++);
        if (!cur) {
          p.breakOff("the stored stream message is incomplete");
          return;
        }
      }
      const part = cur.length > credit ? cur.subarray(0, credit) : cur;
      cur = cur.subarray(part.length);
      credit -= part.length;
      sent += part.length;
      p.write(part);
    }
    if (sent >= m.length) p.fin();
  };
  const sender: PipeSender = {
    credit: (k) => {
      credit += k;
      if (!scheduled) {
        scheduled = true;
        setImmediate(pump);
      }
    },
    abort: () => {},
  };
  pipe = new StreamPipe(pipeId, sender);
  pipe.onEnd = (_whole, lost) => durable.readDone(marker, entry, lost);
  return pipe;
}
