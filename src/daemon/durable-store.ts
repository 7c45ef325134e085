// The store behind durable channels: one LMDB environment in the data directory (`DIR/chans.mdb`),
// chosen over SQLite because its commits (with their fsync) run on a worker thread and group every
// write issued in one event-loop turn into one transaction: concurrent sends share one sync while
// the event loop keeps serving (measurements in the README).
//
// Tables: `chans` (id → names, cap, closed); `groups` ([id, first, count, bytes] → the values with
// keys first … first+count−1, a msgpack array, in key order, which is send order); `acked` ([id,
// first] → the offsets in that group whose receivers acknowledged them, while some of the group is
// not acknowledged yet); `dedupe` ([id, cid] → highest send sequence number stored). The values a
// channel receives in one event-loop turn are one group, one LMDB record: a batch of sends costs one
// B-tree insert instead of one per value (measured: 512 values per commit, 370 k values/s one record
// each against 900 k grouped), and the acknowledgements of one turn cost one write per group they
// touch. A value and the de-duplication record of its send are written in the same transaction, so a
// send resent after a restart is stored once. Counts and bytes in the keys let a restart size a
// backlog from the keys alone. Stores written before groups (table `vals`, one record per value)
// are converted at open.
//
// Stream messages: `chunks` ([id, stream, n] → the message's n-th chunk) and `streams` ([id, stream]
// → −1 while its chunks are being written, then the channel key of its marker). A stream message
// sits in a group as a marker value (see `streamMarker`), put in the turn that records that key;
// once the marker is acknowledged and its removal synced, the chunks go. A restart deletes every
// stream still at −1, and every one whose marker is no longer stored (a crash between the two), so
// half a message never comes back and no chunk is left behind.

import { closeSync, existsSync, openSync, readSync, statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Database, RootDatabase } from "lmdb";
import { Packr } from "msgpackr";
import { type CircuitError, StorageFull } from "../errors.js";
import { monotonicMs } from "../util/clock.js";

/** A durable channel as the store keeps it. */
export interface ChanRecord {
  names: string[];
  cap: number;
  closed: boolean;
}

/**
 * A stored stream message's place in a channel's buffer: 0xc1 (a byte MessagePack never uses, so no
 * encoded value starts with it), the stream number and the message's length (6 bytes each).
 */
export function streamMarker(stream: number, length: number): Buffer {
  const b = Buffer.alloc(MARKER_LEN);
  b[0] = 0xc1;
  b.writeUIntBE(stream, 1, 6);
  b.writeUIntBE(length, 7, 6);
  return b;
}

const MARKER_LEN = 13;

/** The stream number and length of a marker, or undefined for an encoded value. */
export function markerOf(v: Buffer): { stream: number; length: number } | undefined {
  if (v.length !== MARKER_LEN || v[0] !== 0xc1) return undefined;
  return { stream: v.readUIntBE(1, 6), length: v.readUIntBE(7, 6) };
}

/** The bytes an item stands for in the store: a value's own length, a stream message's length. */
export function itemBytes(v: Buffer): number {
  return markerOf(v)?.length ?? v.length;
}

/** [channel id, key of the group's first value, values, bytes]. */
type GroupKey = [number, number, number, number];
/** What `acked` keeps for a group: offsets acknowledged and their bytes. */
interface AckedRecord {
  o: number[];
  b: number;
}

/** A group whose values are partly acknowledged (or were looked up for an acknowledgement). */
interface Group {
  key: GroupKey;
  acked: Set<number>;
  ackedBytes: number;
  /** In `partial`. */
  kept?: boolean;
}

/** A group being filled in this turn; written when the turn's microtasks run. */
interface Pending {
  id: number;
  first: number;
  values: Buffer[];
  bytes: number;
  /** The disk had no room for it (hasRoom): it fails with StorageFull, nothing written. */
  refused: boolean;
  done: Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

/** A channel's stored backlog, from the keys: its first live key, how many values, their bytes. */
export interface Backlog {
  first: number;
  count: number;
  bytes: number;
  /** One past the last key used. */
  next: number;
}

/** A group is closed at this many values or bytes (so reading one value back never reads much more). */
const GROUP_VALUES = 1024;
const GROUP_BYTES = 1024 * 1024;

/** A store that cannot be opened or read: the daemon stops at start-up with this one line. */
export class StoreUnreadable extends Error {}

/** One file name, for messages. */
export const STORE_FILE = "chans.mdb";

/** Whether an error from LMDB means the disk (or the map) is full. */
export function isFull(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code === 28 || e?.code === "ENOSPC" || e?.code === -30792) return true;
  return /ENOSPC|MDB_MAP_FULL|No space left/i.test(String(e?.message ?? ""));
}

/** A write refused before it reached LMDB: the disk is (nearly) full. */
function noRoom(file: string): Error {
  return Object.assign(new Error(`no space left on the disk holding ${file}`), { code: "ENOSPC" });
}

/** Free space kept beyond a stream chunk's own size (see hasRoom). */
const ROOM_MARGIN = 4 * 1024 * 1024;

const groupId = (id: number, first: number) => `${id}:${first}`;

/**
 * Settles once a write is committed and synced to disk. The store opens with overlappingSync: a
 * commit's fsyncs run while the next transaction is written (commits no longer wait for each
 * other's syncs); a write's promise then resolves when it is committed (visible) and its `flushed`
 * (separateFlushed) when it is on disk, which is when a send may complete. A failed commit rejects
 * the write itself (`flushed` never rejects), hence both.
 */
function synced(p: Promise<unknown>): Promise<unknown> {
  const flushed = (p as { flushed?: PromiseLike<unknown> }).flushed;
  return flushed ? p.then(() => flushed) : p;
}

/** A group's record: a MessagePack array of bins; decoded bins are views of the bytes decoded. */
const groupCodec = new Packr({ useRecords: false });

export class DurableStore {
  readonly file: string;
  private readonly dir: string;
  private readonly env: RootDatabase;
  private readonly chans: Database<ChanRecord, number>;
  /** Groups as MessagePack arrays we encode (read back with views into one copy, see read). */
  private readonly groups: Database<Buffer, GroupKey>;
  private readonly acked: Database<AckedRecord, [number, number]>;
  private readonly dedupe: Database<number, [number, string]>;
  private readonly chunks: Database<Buffer, [number, number, number]>;
  private readonly streams: Database<number, [number, number]>;
  private nextId = 1;
  private nextStream = 1;
  /** Groups being filled this turn, by channel. */
  private readonly pending = new Map<number, Pending>();
  private flushQueued = false;
  /** Groups with acknowledged values that are still stored, by `id:first`. */
  private readonly partial = new Map<string, Group>();
  /** The group each channel's last acknowledgement fell in (acknowledgements come mostly in order). */
  private readonly lastGroup = new Map<number, Group>();
  /** Groups written and not committed yet, by channel (a read would not find them). */
  private readonly writing = new Map<number, Group[]>();
  /** Groups whose acknowledgements are written when this turn's microtasks run. */
  private readonly touched = new Set<Group>();
  private ackFlush: { done: Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void } | undefined;

  private constructor(file: string, env: RootDatabase) {
    this.file = file;
    this.dir = dirname(file);
    this.env = env;
    this.chans = env.openDB<ChanRecord, number>({ name: "chans" });
    this.groups = env.openDB<Buffer, GroupKey>({ name: "groups", encoding: "binary" });
    this.acked = env.openDB<AckedRecord, [number, number]>({ name: "acked" });
    this.dedupe = env.openDB<number, [number, string]>({ name: "dedupe" });
    this.chunks = env.openDB<Buffer, [number, number, number]>({ name: "chunks", encoding: "binary" });
    this.streams = env.openDB<number, [number, number]>({ name: "streams" });
  }

  /** Opens (or creates) the store in `dir`; an unreadable or corrupt one throws StoreUnreadable. */
  static async open(dir: string): Promise<DurableStore> {
    // Loaded only by daemons with a data directory: the native module costs about 12 MB of RSS.
    const { open } = await import("lmdb");
    ignoreFailedCommits();
    const file = join(dir, STORE_FILE);
    const existed = existsSync(file);
    let store: DurableStore;
    // LMDB trusts its file: one that is not an LMDB environment can crash the process instead of
    // failing the open, so the two meta pages are checked first.
    const bad = existed ? badHeader(file) : undefined;
    if (bad) throw new StoreUnreadable(`unreadable or corrupt store ${file}: ${bad}`);
    try {
      // overlappingSync off: a write's promise resolves once its transaction is synced, which is
      // the moment a durable send may complete.
      const env = open({ path: file, overlappingSync: true, separateFlushed: true, noSync: false, maxDbs: 8 });
      store = new DurableStore(file, env);
      // Reading every table now finds a corrupt file before the daemon serves.
      for (const { key } of store.chans.getRange()) store.nextId = Math.max(store.nextId, key + 1);
      for (const _ of store.dedupe.getKeys({ limit: 1 })) break;
      for (const _ of store.groups.getKeys({ limit: 1 })) break;
      store.convertValues(env);
      store.loadAcked();
      for (const _ of store.chunks.getKeys({ limit: 1 })) break;
      await store.dropDeadStreams();
    } catch (err) {
      const why = String((err as Error)?.message ?? err).split("\n")[0];
      throw new StoreUnreadable(`${existed ? "unreadable or corrupt" : "cannot create"} store ${file}: ${why}`);
    }
    return store;
  }

  /** A store written before groups kept one record per value in `vals`: each becomes a group of one. */
  private convertValues(env: RootDatabase): void {
    const vals = env.openDB<Buffer, [number, number, number]>({ name: "vals", encoding: "binary" });
    let any = false;
    for (const _ of vals.getKeys({ limit: 1 })) any = true;
    if (!any) return;
    env.transactionSync(() => {
      for (const { key, value } of vals.getRange()) {
        const [id, k, len] = key;
        this.groups.putSync([id, k, 1, len], groupCodec.pack([Buffer.from(value)]));
        vals.removeSync(key);
      }
    });
  }

  private loadAcked(): void {
    for (const { key, value } of this.acked.getRange()) {
      const [id, first] = key;
      const g = this.findGroup(id, first);
      if (!g || g.key[1] !== first) continue;
      for (const o of value.o) g.acked.add(o);
      g.ackedBytes = value.b;
      g.kept = true;
      this.partial.set(groupId(id, first), g);
    }
  }

  /**
   * Stream messages whose sender did not finish before a crash, or whose marker was acknowledged
   * and removed just before one, go with their chunks.
   */
  private async dropDeadStreams(): Promise<void> {
    const dead: [number, number][] = [];
    for (const { key, value } of this.streams.getRange()) {
      this.nextStream = Math.max(this.nextStream, key[1] + 1);
      if (value < 0 || !this.isLive(key[0], value)) dead.push(key);
    }
    if (dead.length === 0) return;
    await this.env.transaction(() => {
      for (const [id, s] of dead) this.dropStreamSync(id, s);
    });
  }

  /** Whether value `key` of channel `id` is stored and not acknowledged. */
  private isLive(id: number, key: number): boolean {
    const g = this.findGroup(id, key);
    return g !== undefined && !g.acked.has(key - g.key[1]);
  }

  /** Every channel kept, with its id. */
  channels(): { id: number; rec: ChanRecord }[] {
    const out: { id: number; rec: ChanRecord }[] = [];
    for (const { key, value } of this.chans.getRange()) out.push({ id: key, rec: value });
    return out;
  }

  /** A channel's stored backlog, from the keys (reads no value). */
  backlog(id: number): Backlog {
    const b: Backlog = { first: 0, count: 0, bytes: 0, next: 1 };
    for (const key of this.groups.getKeys({ start: [id, 0], end: [id + 1, 0] })) {
      const [, first, count, bytes] = key as GroupKey;
      const g = this.partial.get(groupId(id, first));
      const live = count - (g?.acked.size ?? 0);
      if (live > 0 && b.count === 0) {
        b.first = first;
        if (g) while (g.acked.has(b.first - first)) b.first++;
      }
      b.count += live;
      b.bytes += bytes - (g?.ackedBytes ?? 0);
      b.next = first + count;
    }
    return b;
  }

  /**
   * Values of channel `id` with keys from `from` through `through`, not acknowledged, in key order:
   * at least `limit` of them if there are, and the rest of the last group read (a group is read
   * whole; it holds at most GROUP_VALUES values and about GROUP_BYTES).
   */
  read(id: number, from: number, through: number, limit: number): { key: number; value: Buffer }[] {
    const out: { key: number; value: Buffer }[] = [];
    const g0 = this.findGroup(id, from);
    const start = g0 && g0.key[1] + g0.key[2] > from ? g0.key : [id, from];
    for (const { key, value: raw } of this.groups.getRange({ start, end: [id, through + 1] })) {
      const [, first] = key as GroupKey;
      const acked = this.partial.get(groupId(id, first))?.acked;
      // One copy of the record (lmdb hands out memory it reuses), its values views into it.
      const value = groupCodec.unpack(Buffer.from(raw)) as Buffer[];
      for (let i = 0; i < value.length; i++) {
        const k = first + i;
        if (k < from || k > through || acked?.has(i)) continue;
        out.push({ key: k, value: value[i] as Buffer });
      }
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The group holding key `key` of channel `id`, if it is stored. */
  private findGroup(id: number, key: number): Group | undefined {
    const last = this.lastGroup.get(id);
    if (last && last.key[1] <= key && key < last.key[1] + last.key[2]) return last;
    for (const g of this.writing.get(id) ?? []) {
      if (g.key[1] <= key && key < g.key[1] + g.key[2]) return g;
    }
    for (const k of this.groups.getKeys({ start: [id, key + 1], end: [id, -1], reverse: true, limit: 1 })) {
      const gk = k as GroupKey;
      if (gk[0] !== id || gk[1] + gk[2] <= key) return undefined;
      const g = this.partial.get(groupId(id, gk[1])) ?? { key: gk, acked: new Set<number>(), ackedBytes: 0 };
      this.lastGroup.set(id, g);
      return g;
    }
    return undefined;
  }

  dedupeOf(id: number): Map<string, number> {
    const m = new Map<string, number>();
    for (const { key, value } of this.dedupe.getRange({ start: [id, ""], end: [id + 1, ""] })) m.set(key[1], value);
    return m;
  }

  /**
   * Hears how long each write took to be synced (for /metrics); set by the daemon. Unset, writes
   * are not timed at all.
   */
  onOp: ((op: string, seconds: number) => void) | undefined;

  private timed(op: string, p: Promise<unknown>): Promise<unknown> {
    const report = this.onOp;
    if (!report) return p;
    const t0 = monotonicMs();
    void p.then(
      () => report(op, (monotonicMs() - t0) / 1000),
      () => {},
    );
    return p;
  }

  /** A new channel; resolves once its record is synced. */
  create(rec: ChanRecord): { id: number; done: Promise<unknown> } {
    const id = this.nextId++;
    return { id, done: this.timed("create", synced(this.chans.put(id, rec))) };
  }

  setClosed(id: number, rec: ChanRecord): Promise<unknown> {
    return this.timed("close", synced(this.chans.put(id, { ...rec, closed: true })));
  }

  /** Deletes a channel with its values and records, in one transaction. */
  drop(id: number): Promise<unknown> {
    const p = this.pending.get(id);
    if (p) this.writeGroup(p);
    for (const [k, g] of this.partial) if (g.key[0] === id) this.partial.delete(k);
    for (const g of this.touched) if (g.key[0] === id) this.touched.delete(g);
    this.lastGroup.delete(id);
    this.writing.delete(id);
    return this.timed(
      "drop",
      synced(
        this.env.transaction(() => {
          this.chans.removeSync(id);
          for (const k of this.groups.getKeys({ start: [id, 0], end: [id + 1, 0] })) this.groups.removeSync(k);
          for (const k of this.acked.getKeys({ start: [id, 0], end: [id + 1, 0] })) this.acked.removeSync(k);
          for (const k of this.dedupe.getKeys({ start: [id, ""], end: [id + 1, ""] })) this.dedupe.removeSync(k);
          for (const k of this.chunks.getKeys({ start: [id, 0, 0], end: [id + 1, 0, 0] })) this.chunks.removeSync(k);
          for (const k of this.streams.getKeys({ start: [id, 0], end: [id + 1, 0] })) this.streams.removeSync(k);
        }),
      ),
    );
  }

  /**
   * Stores value `key` of channel `id` (keys grow by one with each value). The values of one turn
   * share one record, one transaction and one sync: the promise settles with them.
   */
  put(id: number, key: number, value: Buffer): Promise<unknown> {
    let p = this.pending.get(id);
    if (p && (p.first + p.values.length !== key || p.values.length >= GROUP_VALUES || p.bytes >= GROUP_BYTES)) {
      this.writeGroup(p);
      p = undefined;
    }
    if (!p) {
      let resolve!: (v: unknown) => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<unknown>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Checked before LMDB sees the write: a commit that fails for a full disk has left lmdb 3.5
      // in a state where a later write could kill the process (see hasRoom). A refused group
      // refuses its channel's de-duplication record of the turn too (putDedupe).
      const refused = !this.hasRoom(Math.max(value.length, GROUP_BYTES));
      p = { id, first: key, values: [], bytes: 0, done, resolve, reject, refused };
      this.pending.set(id, p);
      this.queueFlush();
    }
    const m = markerOf(value);
    // A stream message's record names its marker's key in this same turn (no later than the marker).
    if (m) void this.streams.put([id, m.stream], key);
    p.values.push(value);
    p.bytes += m?.length ?? value.length;
    return p.done;
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Still this turn: lmdb gathers the writes of a turn into one transaction.
    queueMicrotask(() => {
      this.flushQueued = false;
      for (const p of [...this.pending.values()]) this.writeGroup(p);
      this.flushAcks();
    });
  }

  private writeGroup(p: Pending): void {
    this.pending.delete(p.id);
    if (p.refused) {
      p.reject(noRoom(this.file));
      return;
    }
    const key: GroupKey = [p.id, p.first, p.values.length, p.bytes];
    // Until committed, acknowledgements find it here (a value handed straight to a receiver, on
    // a channel of capacity 0, may be acknowledged before its group is committed).
    const g: Group = { key, acked: new Set(), ackedBytes: 0 };
    let list = this.writing.get(p.id);
    if (!list) this.writing.set(p.id, (list = []));
    list.push(g);
    const written = () => {
      const l = this.writing.get(p.id);
      if (!l) return;
      const i = l.indexOf(g);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.writing.delete(p.id);
    };
    this.timed("put", synced(this.groups.put(key, groupCodec.pack(p.values)))).then(
      (v) => {
        written();
        p.resolve(v);
      },
      (err) => {
        written();
        p.reject(err);
      },
    );
  }

  /**
   * Value `key` (of `length` bytes) of channel `id` was acknowledged: it leaves the store (with the
   * other acknowledgements of this turn; a group leaves when all its values have).
   */
  remove(id: number, key: number, length: number): Promise<unknown> {
    const g = this.findGroup(id, key);
    if (!g) return Promise.resolve();
    const o = key - g.key[1];
    if (!g.acked.has(o)) {
      g.acked.add(o);
      g.ackedBytes += length;
    }
    if (!g.kept) {
      g.kept = true;
      this.partial.set(groupId(id, g.key[1]), g);
    }
    this.touched.add(g);
    if (!this.ackFlush) {
      let resolve!: (v: unknown) => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<unknown>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.ackFlush = { done, resolve, reject };
      this.queueFlush();
    }
    return this.ackFlush.done;
  }

  private flushAcks(): void {
    const f = this.ackFlush;
    if (!f) return;
    this.ackFlush = undefined;
    const writes: Promise<unknown>[] = [];
    for (const g of this.touched) {
      const [id, first, count] = g.key;
      if (g.acked.size >= count) {
        // Forgotten once removed; if the removal fails, the retried acknowledgement finds it again.
        const gone = Promise.all([this.groups.remove(g.key), this.acked.remove([id, first])]);
        writes.push(
          gone.then(() => {
            g.kept = false;
            this.partial.delete(groupId(id, first));
            if (this.lastGroup.get(id) === g) this.lastGroup.delete(id);
          }),
        );
      } else writes.push(this.acked.put([id, first], { o: [...g.acked], b: g.ackedBytes }));
    }
    this.touched.clear();
    this.timed("remove", Promise.all(writes)).then(f.resolve, f.reject);
  }

  /** A new stream message of channel `id`: its number, recorded as incomplete (in the next commit). */
  openStream(id: number): number {
    const s = this.nextStream++;
    void this.streams.put([id, s], -1);
    return s;
  }

  /**
   * Whether the disk has room for `bytes` (with a margin), checked before a stream message is
   * opened, before each of its chunks and before each group of values: a write on a nearly full
   * disk fails with StorageFull without reaching LMDB. (lmdb 3.5 died with `malloc(): corrupted
   * top size` in writes after commits had failed for a full disk; see the README.)
   */
  hasRoom(bytes: number): boolean {
    try {
      const s = statfsSync(this.dir);
      return s.bavail * s.bsize >= 2 * bytes + ROOM_MARGIN;
    } catch {
      return true;
    }
  }

  /** Chunk `n` of stream message `s`; settles once synced. */
  putChunk(id: number, s: number, n: number, chunk: Buffer): Promise<unknown> {
    return this.timed("chunk", synced(this.chunks.put([id, s, n], chunk)));
  }

  /** Chunk `n` of stream message `s` (a copy), or undefined if there is none. */
  chunk(id: number, s: number, n: number): Buffer | undefined {
    const b = this.chunks.getBinary([id, s, n]);
    return b && Buffer.from(b);
  }

  /** Deletes stream message `s` of channel `id`: its chunks and its record. */
  dropStream(id: number, s: number): Promise<unknown> {
    // Plain removes issued in this turn (one transaction with the rest of the turn's writes).
    const writes: Promise<unknown>[] = [];
    for (const k of this.chunks.getKeys({ start: [id, s, 0], end: [id, s + 1, 0] })) writes.push(this.chunks.remove(k));
    writes.push(this.streams.remove([id, s]));
    return Promise.all(writes);
  }

  private dropStreamSync(id: number, s: number): void {
    for (const k of this.chunks.getKeys({ start: [id, s, 0], end: [id, s + 1, 0] })) this.chunks.removeSync(k);
    this.streams.removeSync([id, s]);
  }

  putDedupe(id: number, cid: string, seq: number): Promise<unknown> {
    // With the values of its turn, or not at all.
    if (this.pending.get(id)?.refused) return Promise.reject(noRoom(this.file));
    return synced(this.dedupe.put([id, cid], seq));
  }

  removeDedupe(id: number, cid: string): Promise<unknown> {
    return this.dedupe.remove([id, cid]);
  }

  async close(): Promise<void> {
    for (const p of [...this.pending.values()]) this.writeGroup(p);
    this.flushAcks();
    try {
      await this.env.flushed;
    } finally {
      await this.env.close();
    }
  }
}

let ignoring = false;

/**
 * A failed commit (disk full) rejects, besides the promises of its writes (which the durable
 * channel handles), a promise inside lmdb that nobody can reach: without this, that rejection
 * would end the daemon. Only that error (it carries `commitError`) is swallowed; any other
 * unhandled rejection still ends the process, as it would without this listener.
 */
function ignoreFailedCommits(): void {
  if (ignoring) return;
  ignoring = true;
  process.on("unhandledRejection", (reason) => {
    const inner = (reason as { commitError?: Promise<unknown> } | undefined)?.commitError;
    if (inner && typeof inner.then === "function") {
      inner.then(
        () => {},
        () => {},
      );
      return;
    }
    // Anything else: what Node does without listeners (end the process), unless the program has
    // listeners of its own, which then decide.
    if (process.listenerCount("unhandledRejection") === 1) throw reason;
  });
}

const LMDB_MAGIC = 0xbeefc0de;
/** Where the magic number sits in a meta page (after the page header). */
const MAGIC_AT = 24;

/** Why `file` is not an LMDB environment, or undefined if its two meta pages look right. */
function badHeader(file: string): string | undefined {
  const fd = openSync(file, "r");
  try {
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64) return "file too short";
    if (head.readUInt32LE(MAGIC_AT) !== LMDB_MAGIC) return "first meta page has no LMDB magic number";
    // The page size is kept in the first database record of the meta page.
    const psize = head.readUInt32LE(0x30);
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0) return `implausible page size ${psize}`;
    const second = Buffer.alloc(64);
    if (readSync(fd, second, 0, 64, psize) < 64) return "file too short for its second meta page";
    if (second.readUInt32LE(MAGIC_AT) !== LMDB_MAGIC) return "second meta page has no LMDB magic number";
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * What a failed write means to a sender: StorageFull when the disk is full, else the error. LMDB
 * rejects every write of a failed commit with a generic error whose `commitError` promise holds the
 * cause (and is an unhandled rejection unless someone looks at it, which this does at once).
 */
export async function writeError(file: string, err: unknown): Promise<CircuitError | Error> {
  let cause = err;
  const inner = (err as { commitError?: Promise<unknown> })?.commitError;
  if (inner) {
    cause = await inner.then(
      () => err,
      (e: unknown) => e,
    );
  }
  if (isFull(cause)) return new StorageFull(`the disk holding ${file} is full`, { cause });
  return cause instanceof Error ? cause : new Error(String(cause));
}
