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
export const READ_AHEAD_VALUES = 4096;
/** …and at most this many bytes (one value larger than this is still read alone). */
export const READ_AHEAD_BYTES = 8 * 1024 * 1024;
/** An acknowledgement whose removal failed (disk full) is retried after this long. */
const RETRY_MS = 1000;

/** Values pushed in one turn: written together, synced together (one store promise). */
interface Batch {
  first: number;
  last: number;
  /** The store's promise for them. */
  write: Promise<unknown>;
  /** Settles when they are synced; rejects with the sender's error when they could not be. */
  done: Promise<void>;
  values: Buffer[];
  /** How many of them (a prefix) went to the window; the others are past it, in the store only. */
  inMem: number;
}

export class DurableChan implements ChanBuffer<Item> {
  /** The channel this buffers for: told when values become available or slots free up. */
  channel: Channel<Item> | undefined;
  /** Bytes of the values in the store (buffered, or handed out and not acknowledged). */
  bytes = 0;
  private readonly mem = new Deque<Buffer>();
  private memBytes = 0;
  /**
   * The key of every value of this channel that is in memory (in the window, or handed out and not
   * acknowledged). A Map, not a WeakMap: every entry leaves with its value's acknowledgement, its
   * failed write or the channel's drop, and a WeakMap's set cost about 0.6 µs a value here.
   */
  private readonly keyOf = new Map<Buffer, number>();
  private nextKey = 1;
  /** Values past the window, in the store only (once synced): keys from spillFrom on. */
  private spilled = 0;
  private spillFrom = 0;
  /** Batches written and not yet synced, in key order. */
  private readonly unsynced = new Deque<Batch>();
  private unsyncedInMem = 0;
  /** Every key through this one is synced (or failed and gone). */
  private syncedThrough = 0;
  /** Batches synced before an earlier one (kept until those before them are). */
  private readonly settledAhead = new Map<number, Batch>();
  private kickQueued = false;
  private retries: [number, Buffer][] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private dropped = false;
  private lastWrite: Promise<unknown> = Promise.resolve();
  /**
   * Capacity 0: values handed straight from a sender to a receiver, stored at the hand-over (see
   * whenSent), with their writes. Never pushed, so the batch bookkeeping above is not involved.
   */
  private readonly handed = new Map<Buffer, Promise<void>>();
  /** Stream messages being read out (see durable-stream.ts), by marker: their acknowledgement waits. */
  readonly reading = new Map<Buffer, { acked: boolean }>();

  constructor(
    readonly store: DurableStore,
    readonly id: number,
    readonly rec: ChanRecord,
  ) {}

  /** Brings back a channel's backlog after a restart: counted from the keys, read as needed. */
  restore(): void {
    const b = this.store.backlog(this.id);
    this.spillFrom = b.first;
    this.spilled = b.count;
    this.bytes = b.bytes;
    this.nextKey = b.next;
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
    // The values of one turn share one store write: one batch, one promise, one settlement.
    const write = this.store.put(this.id, key, v);
    let b = this.unsynced.peekLast();
    if (b === undefined || b.write !== write) {
      const nb: Batch = {
        first: key,
        last: key,
        write,
        done: undefined as unknown as Promise<void>,
        values: [],
        inMem: 0,
      };
      nb.done = write.then(
        () => this.settle(nb, undefined),
        async (err) => {
          this.settle(nb, err);
          throw await writeError(this.store.file, err);
        },
      );
      this.track(nb.done);
      this.unsynced.push(nb);
      b = nb;
    }
    b.last = key;
    b.values.push(v);
    if (inMem) b.inMem++;
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

  /**
   * Settles once `v` (pushed here, in this turn) is on stable storage; fails with StorageFull if it
   * could not be.
   */
  whenStored(v: Buffer): Promise<void> {
    const key = this.keyOf.get(v);
    if (key !== undefined) {
      for (const b of this.unsynced) if (b.first <= key && key <= b.last) return b.done;
    }
    return Promise.resolve();
  }

  /**
   * When a send of `v` that the channel accepted completes: once `v` is on stable storage. With
   * capacity 0 the channel handed `v` straight to a receiver (in this same turn, before any
   * acknowledgement can arrive): it is stored now as a value handed out and not yet acknowledged,
   * so that a crash before the acknowledgement brings it back at the head, as for any buffer.
   */
  whenSent(v: Buffer): Promise<void> {
    if (this.rec.cap > 0) return this.whenStored(v);
    const h = this.handed.get(v);
    if (h) return h;
    if (this.dropped) return Promise.resolve();
    const key = this.nextKey++;
    const len = itemBytes(v);
    this.bytes += len;
    this.keyOf.set(v, key);
    const p = this.store.put(this.id, key, v).then(
      () => {
        this.handed.delete(v);
      },
      async (err) => {
        this.handed.delete(v);
        if (this.keyOf.get(v) === key) {
          this.keyOf.delete(v);
          this.bytes -= len;
        }
        throw await writeError(this.store.file, err);
      },
    );
    this.track(p);
    this.handed.set(v, p);
    return p;
  }

  /** whenStored for values pushed together (a batch of credited sends, this turn). */
  whenStoredAll(values: Buffer[]): Promise<void> {
    const first = this.keyOf.get(values[0] as Buffer);
    const last = this.keyOf.get(values[values.length - 1] as Buffer);
    if (first === undefined || last === undefined)
      return Promise.all(values.map((v) => this.whenStored(v))).then(() => {});
    const waits: Promise<void>[] = [];
    for (const b of this.unsynced) if (b.last >= first && b.first <= last) waits.push(b.done);
    return waits.length === 1 ? (waits[0] as Promise<void>) : Promise.all(waits).then(() => {});
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
    this.unsynced.drain();
    this.settledAhead.clear();
    this.keyOf.clear();
    this.handed.clear();
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
    // Capacity 0: acknowledged before its hand-over write committed (the store finds only
    // committed values): removed once it has.
    const h = this.handed.get(v);
    if (h)
      h.then(
        () => this.remove(key, v),
        () => {},
      );
    else this.remove(key, v);
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

  private remove(key: number, v: Buffer): void {
    const m = markerOf(v);
    this.store.remove(this.id, key, itemBytes(v)).then(
      // A stream message's chunks go once its marker's removal is synced (a crash in between
      // leaves chunks without a marker, which the next start-up deletes).
      () => {
        if (m) this.discardStream(v);
      },
      (err) => {
        void writeError(this.store.file, err);
        // Kept (disk full): the removal is tried again; a restart meanwhile delivers it again.
        this.retries.push([key, v]);
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          const r = this.retries;
          this.retries = [];
          if (!this.dropped) for (const [k, x] of r) this.remove(k, x);
        }, RETRY_MS);
        this.retryTimer.unref();
      },
    );
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

  /** A batch's write finished: synced, or failed (then its values are gone as if never sent). */
  private settle(b: Batch, err: unknown): void {
    if (this.dropped) return;
    this.unsynced.removeWhere((x) => x === b);
    this.unsyncedInMem -= b.inMem;
    // Values past the window come back from the store as new buffers, keyed then.
    if (err === undefined) for (let i = b.inMem; i < b.values.length; i++) this.keyOf.delete(b.values[i] as Buffer);
    if (err !== undefined) {
      for (let i = 0; i < b.values.length; i++) {
        const v = b.values[i] as Buffer;
        this.bytes -= itemBytes(v);
        this.keyOf.delete(v);
        if (i < b.inMem) {
          this.mem.removeWhere((x) => x === v);
          this.memBytes -= v.length;
        } else this.spilled--;
      }
    }
    this.settledAhead.set(b.first, b);
    for (let n = this.settledAhead.get(this.syncedThrough + 1); n; n = this.settledAhead.get(this.syncedThrough + 1)) {
      this.settledAhead.delete(n.first);
      this.syncedThrough = n.last;
    }
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
