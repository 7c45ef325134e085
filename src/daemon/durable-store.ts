// The store behind durable channels: one LMDB environment in the data directory (`DIR/chans.mdb`),
// chosen over SQLite because its commits (with their fsync) run on a worker thread and group every
// write issued in one event-loop turn into one transaction: concurrent sends share one sync while
// the event loop keeps serving (measurements in the README).
//
// Five tables: `chans` (id → names, cap, closed), `vals` ([id, key, length] → value bytes, in key
// order, which is send order), `dedupe` ([id, cid] → highest send sequence number stored), and for
// stream messages `chunks` ([id, stream, n] → the message's n-th chunk) and `streams` ([id, stream]
// → 0 while its chunks are being written, 1 once it is complete). A stream message sits in `vals`
// as a marker (see `streamMarker`) written in the transaction that marks it complete; a restart
// deletes every stream still at 0 with its chunks, so half a message never comes back. A
// value and the de-duplication record of its send are written in the same transaction, so a send
// resent after a restart is stored once. The length in the key lets a restart count a backlog's
// bytes from the keys alone.

import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import type { Database, RootDatabase } from "lmdb";
import { type CircuitError, StorageFull } from "../errors.js";

/** A durable channel as the store keeps it. */
export interface ChanRecord {
  names: string[];
  cap: number;
  closed: boolean;
}

export type ValKey = [number, number, number];

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

export class DurableStore {
  readonly file: string;
  private readonly env: RootDatabase;
  private readonly chans: Database<ChanRecord, number>;
  private readonly vals: Database<Buffer, ValKey>;
  private readonly dedupe: Database<number, [number, string]>;
  private readonly chunks: Database<Buffer, [number, number, number]>;
  private readonly streams: Database<number, [number, number]>;
  private nextId = 1;
  private nextStream = 1;

  private constructor(file: string, env: RootDatabase) {
    this.file = file;
    this.env = env;
    this.chans = env.openDB<ChanRecord, number>({ name: "chans" });
    this.vals = env.openDB<Buffer, ValKey>({ name: "vals", encoding: "binary" });
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
      const env = open({ path: file, overlappingSync: false, noSync: false, maxDbs: 8 });
      store = new DurableStore(file, env);
      // Reading every table now finds a corrupt file before the daemon serves.
      for (const { key } of store.chans.getRange()) store.nextId = Math.max(store.nextId, key + 1);
      for (const _ of store.dedupe.getKeys({ limit: 1 })) break;
      for (const _ of store.vals.getKeys({ limit: 1 })) break;
      for (const _ of store.chunks.getKeys({ limit: 1 })) break;
      // Stream messages whose sender did not finish before the crash leave no trace.
      const unfinished: [number, number][] = [];
      for (const { key, value } of store.streams.getRange()) {
        store.nextStream = Math.max(store.nextStream, key[1] + 1);
        if (value !== 1) unfinished.push(key);
      }
      if (unfinished.length > 0) {
        const st = store;
        await st.env.transaction(() => {
          for (const [id, s] of unfinished) st.dropStreamSync(id, s);
        });
      }
    } catch (err) {
      const why = String((err as Error)?.message ?? err).split("\n")[0];
      throw new StoreUnreadable(`${existed ? "unreadable or corrupt" : "cannot create"} store ${file}: ${why}`);
    }
    return store;
  }

  /** Every channel kept, with its id. */
  channels(): { id: number; rec: ChanRecord }[] {
    const out: { id: number; rec: ChanRecord }[] = [];
    for (const { key, value } of this.chans.getRange()) out.push({ id: key, rec: value });
    return out;
  }

  /** The keys of a channel's values in order (with their lengths); reads no value. */
  *keys(id: number, from = 0): Generator<ValKey> {
    for (const k of this.vals.getKeys({ start: [id, from, 0], end: [id + 1, 0, 0] })) yield k as ValKey;
  }

  /** Up to `limit` values of channel `id` from key `from` on, through key `through`. */
  read(id: number, from: number, through: number, limit: number): { key: number; value: Buffer }[] {
    const out: { key: number; value: Buffer }[] = [];
    for (const { key, value } of this.vals.getRange({ start: [id, from, 0], end: [id, through + 1, 0], limit })) {
      // Copied: lmdb may hand out a buffer it reuses for the next read.
      out.push({ key: (key as ValKey)[1], value: Buffer.from(value) });
    }
    return out;
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
    const t0 = performance.now();
    void p.then(
      () => report(op, (performance.now() - t0) / 1000),
      () => {},
    );
    return p;
  }

  /** A new channel; resolves once its record is synced. */
  create(rec: ChanRecord): { id: number; done: Promise<unknown> } {
    const id = this.nextId++;
    return { id, done: this.timed("create", this.chans.put(id, rec)) };
  }

  setClosed(id: number, rec: ChanRecord): Promise<unknown> {
    return this.timed("close", this.chans.put(id, { ...rec, closed: true }));
  }

  /** Deletes a channel with its values and records, in one transaction. */
  drop(id: number): Promise<unknown> {
    return this.timed(
      "drop",
      this.env.transaction(() => {
        this.chans.removeSync(id);
        for (const k of this.vals.getKeys({ start: [id, 0, 0], end: [id + 1, 0, 0] })) this.vals.removeSync(k);
        for (const k of this.dedupe.getKeys({ start: [id, ""], end: [id + 1, ""] })) this.dedupe.removeSync(k);
        for (const k of this.chunks.getKeys({ start: [id, 0, 0], end: [id + 1, 0, 0] })) this.chunks.removeSync(k);
        for (const k of this.streams.getKeys({ start: [id, 0], end: [id + 1, 0] })) this.streams.removeSync(k);
      }),
    );
  }

  /** Writes issued in one turn share one transaction and one sync: each promise settles with it. */
  put(id: number, key: number, value: Buffer): Promise<unknown> {
    const m = markerOf(value);
    // A stream message's marker goes in the same transaction as the record that completes it.
    if (m) void this.streams.put([id, m.stream], 1);
    return this.timed("put", this.vals.put([id, key, m?.length ?? value.length], value));
  }

  remove(id: number, key: number, length: number, value?: Buffer): Promise<unknown> {
    const m = value && markerOf(value);
    if (m) {
      return this.timed(
        "remove",
        this.env.transaction(() => {
          this.vals.removeSync([id, key, length]);
          this.dropStreamSync(id, m.stream);
        }),
      );
    }
    return this.timed("remove", this.vals.remove([id, key, length]));
  }

  /** A new stream message of channel `id`: its number, recorded as incomplete (in the next commit). */
  openStream(id: number): number {
    const s = this.nextStream++;
    void this.streams.put([id, s], 0);
    return s;
  }

  /** Chunk `n` of stream message `s`; settles once synced. */
  putChunk(id: number, s: number, n: number, chunk: Buffer): Promise<unknown> {
    return this.timed("chunk", this.chunks.put([id, s, n], chunk));
  }

  /** Chunk `n` of stream message `s` (a copy), or undefined if there is none. */
  chunk(id: number, s: number, n: number): Buffer | undefined {
    const b = this.chunks.getBinary([id, s, n]);
    return b && Buffer.from(b);
  }

  /** Deletes a stream message that never became part of its channel (its sender gave up or failed). */
  dropStream(id: number, s: number): Promise<unknown> {
    return this.env.transaction(() => this.dropStreamSync(id, s));
  }

  private dropStreamSync(id: number, s: number): void {
    for (const k of this.chunks.getKeys({ start: [id, s, 0], end: [id, s + 1, 0] })) this.chunks.removeSync(k);
    this.streams.removeSync([id, s]);
  }

  putDedupe(id: number, cid: string, seq: number): Promise<unknown> {
    return this.dedupe.put([id, cid], seq);
  }

  removeDedupe(id: number, cid: string): Promise<unknown> {
    return this.dedupe.remove([id, cid]);
  }

  async close(): Promise<void> {
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
