// The buffer of a durable channel: every value is written to the store as it enters, becomes
// available to receivers only once synced, and leaves the store only when its receiver acknowledges
// it. Memory holds a bounded window at the head (READ_AHEAD_*); the rest of the backlog stays on
// disk and is read back in key order as the window drains, so a backlog of any size costs the
// daemon the window, not the backlog.
//
// Order: keys grow with every push. Values pushed while nothing is spilled go to the window, the
// others only to the store; so the window is [values given back by receivers (synced)] + [pushed or
// read back, in key order], and the values not yet synced are always its tail.

import type { ChanBuffer, Channel } from "../element/channel.js";
import { Deque } from "../util/deque.js";
import { type ChanRecord, type DurableStore, itemBytes, markerOf, writeError } from "./durable-store.js";
import type { Item } from "./stream-pipe.js";

/** At most this many values of a durable channel are held in memory ahead of its receivers. */
export const READ_AHEAD_VALUES = 1024;
/** …and at most this many bytes (one value larger than this is still read alone). */
export const READ_AHEAD_BYTES = 8 * 1024 * 1024;
/** An acknowledgement whose removal failed (disk full) is retried after this long. */
const RETRY_MS = 1000;

interface Unsynced {
  v: Buffer;
  inMem: boolean;
}

export class DurableChan implements ChanBuffer<Item> {
  /** The channel this buffers for: told when values become available or slots free up. */
  channel: Channel<Item> | undefined;
  /** Bytes of the values in the store (buffered, or handed out and not acknowledged). */
  bytes = 0;
  private readonly mem = new Deque<Buffer>();
  private memBytes = 0;
  private readonly keyOf = new WeakMap<Buffer, number>();
  private readonly stored = new WeakMap<Buffer, Promise<void>>();
  private nextKey = 1;
  /** Values past the window, in the store only (once synced): keys from spillFrom on. */
  private spilled = 0;
  private spillFrom = 0;
  private readonly unsynced = new Map<number, Unsynced>();
  private unsyncedInMem = 0;
  /** Every key through this one is synced (or failed and gone). */
  private syncedThrough = 0;
  private readonly settledAhead = new Set<number>();
  private kickQueued = false;
  private retries: [number, number, Buffer][] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private dropped = false;
  private lastWrite: Promise<unknown> = Promise.resolve();
  /** Stream messages being read out (see durable-stream.ts), by marker: their acknowledgement waits. */
  readonly reading = new Map<Buffer, { acked: boolean }>();

  constructor(
    readonly store: DurableStore,
    readonly id: number,
    readonly rec: ChanRecord,
  ) {}

  /** Brings back a channel's backlog after a restart: counted from the keys, read as needed. */
  restore(): void {
    for (const [, key, len] of this.store.keys(this.id)) {
      if (this.spilled === 0) this.spillFrom = key;
      this.spilled++;
      this.bytes += len;
      this.nextKey = key + 1;
    }
    this.syncedThrough = this.nextKey - 1;
    this.refill();
  }

  get length(): number {
    return this.mem.length + this.spilled;
  }

  get available(): number {
    return this.mem.length - this.unsyncedInMem;
  }

  push(v: Item): void {
    if (!Buffer.isBuffer(v)) throw new TypeError("a durable channel stores values, not streams");
    const key = this.nextKey++;
    this.bytes += itemBytes(v);
    this.keyOf.set(v, key);
    const inMem = this.spilled === 0 && (this.mem.length === 0 || this.roomFor(v.length));
    if (inMem) {
      this.mem.push(v);
      this.memBytes += v.length;
      this.unsyncedInMem++;
    } else {
      if (this.spilled === 0) this.spillFrom = key;
      this.spilled++;
    }
    this.unsynced.set(key, { v, inMem });
    const p = this.store.put(this.id, key, v).then(
      () => this.settle(key, undefined),
      async (err) => {
        this.settle(key, err);
        throw await writeError(this.store.file, err);
      },
    );
    this.track(p);
    this.stored.set(v, p);
  }

  /** Settles once everything written for this channel so far is synced (or has failed). */
  whenSynced(): Promise<void> {
    return this.lastWrite.then(
      () => {},
      () => {},
    );
  }

  /** Records the highest send sequence number of client `cid` stored here (same turn: same transaction). */
  storeDedupe(cid: string, seq: number): void {
    this.track(this.store.putDedupe(this.id, cid, seq));
  }

  dropDedupe(cid: string): void {
    this.track(this.store.removeDedupe(this.id, cid));
  }

  /** Marks the channel closed in the store; resolves once synced (StorageFull on a full disk). */
  setClosed(): Promise<unknown> {
    this.rec.closed = true;
    return this.track(this.store.setClosed(this.id, this.rec)).catch(async (err) => {
      throw await writeError(this.store.file, err);
    });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.lastWrite = p;
    p.catch((err) => void writeError(this.store.file, err));
    return p;
  }

  /** Settles once `v` (pushed here) is on stable storage; fails with StorageFull if it could not be. */
  whenStored(v: Buffer): Promise<void> {
    return this.stored.get(v) ?? Promise.resolve();
  }

  /**
   * When a send of `v` that the channel accepted completes: once `v` is on stable storage. With
   * capacity 0 the channel handed `v` straight to a receiver (in this same turn, before any
   * acknowledgement can arrive): it is stored now as a value handed out and not yet acknowledged,
   * so that a crash before the acknowledgement brings it back at the head, as for any buffer.
   */
  whenSent(v: Buffer): Promise<void> {
    if (this.rec.cap === 0 && !this.stored.has(v) && !this.dropped) this.handedOver(v);
    return this.whenStored(v);
  }

  private handedOver(v: Buffer): void {
    const key = this.nextKey++;
    const len = itemBytes(v);
    this.bytes += len;
    this.keyOf.set(v, key);
    const p = this.store.put(this.id, key, v).then(
      () => {},
      async (err) => {
        if (this.keyOf.get(v) === key) {
          this.keyOf.delete(v);
          this.bytes -= len;
        }
        throw await writeError(this.store.file, err);
      },
    );
    this.track(p);
    this.stored.set(v, p);
  }

  shift(): Buffer | undefined {
    const v = this.mem.shift();
    if (v === undefined) return undefined;
    this.memBytes -= v.length;
    if (this.spilled > 0 && this.mem.length < READ_AHEAD_VALUES >> 1) this.refill();
    return v;
  }

  unshift(v: Item): void {
    // A value given back was synced before it was handed out: it is still in the store.
    this.mem.unshift(v as Buffer);
    this.memBytes += (v as Buffer).length;
  }

  drain(): void {
    this.mem.drain();
    this.memBytes = 0;
    this.spilled = 0;
    this.unsynced.clear();
    this.unsyncedInMem = 0;
    this.dropped = true;
    clearTimeout(this.retryTimer);
  }

  /** A receiver acknowledged `v`: it leaves the store. */
  ack(v: Buffer): void {
    const r = this.reading.get(v);
    if (r) {
      // A stream message is acknowledged once it has also been read out whole (readDone).
      r.acked = true;
      return;
    }
    const key = this.keyOf.get(v);
    if (key === undefined || this.dropped) return;
    this.keyOf.delete(v);
    this.bytes -= itemBytes(v);
    this.remove(key, itemBytes(v), v);
  }

  /** True once scrubbed (its data deleted). */
  get isDropped(): boolean {
    return this.dropped;
  }

  /** A stream message that never became part of the channel (its send failed or was cancelled). */
  discardStream(marker: Buffer): void {
    const m = markerOf(marker);
    // Also once the channel is scrubbed: chunks written after its data was deleted go too.
    if (m) void this.store.dropStream(this.id, m.stream).catch(() => {});
  }

  /**
   * A stream message's reader is done with `v`: read out whole, or `lost` (its receiver's
   * connection dropped first). Whole and acknowledged, it leaves the store; lost after its
   * acknowledgement, it goes back to the head of the channel (never half a message).
   */
  readDone(v: Buffer, entry: { acked: boolean }, lost: boolean): void {
    if (this.reading.get(v) !== entry) return;
    this.reading.delete(v);
    if (!entry.acked || this.dropped) return;
    if (lost) this.channel?.requeue([v]);
    else this.ack(v);
  }

  private remove(key: number, len: number, v: Buffer): void {
    this.store.remove(this.id, key, len, v).catch((err) => {
      void writeError(this.store.file, err);
      // Kept (disk full): the removal is tried again; a restart meanwhile delivers it again.
      this.retries.push([key, len, v]);
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        const r = this.retries;
        this.retries = [];
        if (!this.dropped) for (const [k, l, x] of r) this.remove(k, l, x);
      }, RETRY_MS);
      this.retryTimer.unref();
    });
  }

  private roomFor(len: number): boolean {
    return this.mem.length < READ_AHEAD_VALUES && this.memBytes + len <= READ_AHEAD_BYTES;
  }

  /** Reads synced values past the window back into it, in key order. */
  private refill(): void {
    while (this.spilled > 0 && this.spillFrom <= this.syncedThrough && this.mem.length < READ_AHEAD_VALUES) {
      if (this.mem.length > 0 && this.memBytes >= READ_AHEAD_BYTES) break;
      const rows = this.store.read(this.id, this.spillFrom, this.syncedThrough, 64);
      if (rows.length === 0) {
        this.spillFrom = this.syncedThrough + 1;
        break;
      }
      for (const r of rows) {
        this.keyOf.set(r.value, r.key);
        this.mem.push(r.value);
        this.memBytes += r.value.length;
        this.spilled--;
        this.spillFrom = r.key + 1;
      }
    }
  }

  /** A value's write finished: synced, or failed (then it is gone from the buffer as if never sent). */
  private settle(key: number, err: unknown): void {
    const u = this.unsynced.get(key);
    if (!u || this.dropped) return;
    this.unsynced.delete(key);
    if (u.inMem) this.unsyncedInMem--;
    if (err !== undefined) {
      this.bytes -= itemBytes(u.v);
      this.keyOf.delete(u.v);
      if (u.inMem) {
        this.mem.removeWhere((x) => x === u.v);
        this.memBytes -= u.v.length;
      } else this.spilled--;
    }
    this.settledAhead.add(key);
    while (this.settledAhead.delete(this.syncedThrough + 1)) this.syncedThrough++;
    if (!this.kickQueued) {
      this.kickQueued = true;
      queueMicrotask(() => {
        this.kickQueued = false;
        if (this.dropped) return;
        if (this.spilled > 0) this.refill();
        this.channel?.kick();
      });
    }
  }
}
