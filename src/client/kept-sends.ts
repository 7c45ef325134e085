// What a connection keeps of each channel it sends on: credits, sequence numbers, and copies of
// the sends the server has not acknowledged yet, to send again after a reconnection. Credited
// sends in a row are kept as one run of entries in a slab (a copy into a buffer, no object each).
// The functions here change a ChanState and return how many kept bytes they added or freed; the
// connection keeps the total, which counts toward its bound on unsent bytes.

import type { CircuitError } from "../errors.js";
import { Deque } from "../util/deque.js";
import { binHeadBytes, forEachEntry, writeBinHead } from "../wire/frame.js";
import { seqAtMost } from "../wire/protocol.js";

/** An operation held back (while the connection's unsent bytes are over the bound, or behind a send that waits for room). */
export interface Gated {
  run(): void;
  reject(err: unknown): void;
}

/**
 * Sends the client keeps until the server has stored them, to send again after a reconnection:
 * one blocking send, or a run of credited sends with consecutive sequence numbers whose copies
 * sit side by side in the channel's slab as batch entries ([u32 length][bytes]), so that keeping
 * a small credited value costs a copy into a buffer and no object of its own.
 */
export interface Kept {
  /** The first sequence number not yet acknowledged. */
  seq: number;
  /** The last sequence number (a blocking send: seq). */
  last: number;
  /** A blocking send's value; for a run, `bytes.subarray(start, end)` holds its entries. */
  bytes: Buffer;
  /** `bytes` are a big byte value's own bytes, sent as a MessagePack bin (kept by reference, not encoded). */
  bin?: boolean;
  /** A blocking send's request id while it waits for its RES; 0 for a run of credited sends. */
  id: number;
  /** A run: the sequence number of its first entry, and where its entries lie in `bytes`. */
  first: number;
  start: number;
  end: number;
}

/** A run's slab starts this big and doubles up to KEPT_SLAB_MAX as a channel keeps more. */
const KEPT_SLAB_MIN = 4 * 1024;
const KEPT_SLAB_MAX = 64 * 1024;
const NO_BYTES = Buffer.alloc(0);
/** Encoded values this big are kept by reference (they are ours), not copied into a slab. */
export const KEPT_BY_REFERENCE = 64 * 1024;

/** Bytes a kept send accounts for. */
export function keptSize(k: Kept): number {
  return k.id === 0 ? k.end - k.start : k.bytes.length;
}

/** Per-handle send state: credits are buffer slots the server reserved for this connection. */
export interface ChanState {
  handle: number;
  cap: number;
  credits: number;
  /** The server counts us a credit holder (a GRANT came, no REVOKE since). */
  holding: boolean;
  /** We told the server (CWAIT) that a send waits here for its next GRANT. */
  waitSaid: boolean;
  /**
   * Without credit, ask for some (CWAIT with a want) and wait for it rather than send a send that
   * may block (ServerHello.grantAsk): set once a send that may block has gone (the server knows
   * our want) and after a REVOKE of our credits; cleared when the server refuses (a REVOKE while
   * we hold none), so that the next send goes as one that may block.
   */
  asking: boolean;
  /** Sends in flight that may block; while any is, credits are not used (issue order). */
  blocking: number;
  /** The anchor path, to open the channel again after a reconnection (none: not resumable). */
  names: readonly string[] | undefined;
  /** The sequence number of the last send on this channel (PROTOCOL: send sequence numbers). */
  seq: number;
  /** Sends the server has not acknowledged yet (credited: no CACK; blocking: no RES), oldest first. */
  kept: Deque<Kept>;
  /** The run that credited sends extend while they follow one another, and the slab it writes to. */
  run: Kept | undefined;
  slab: Buffer;
  slabUsed: number;
  /**
   * Sends on a buffered channel issued while an earlier one of ours waits for room: they wait here
   * until it is stored, then go with the credits its answer brought (or the next one waits at the
   * server). Without this, a producer keeping many sends in flight against a full buffer sends
   * every later one as a blocking send of its own, and never gets back to credited sends.
   */
  held: Deque<Gated>;
  releasing: boolean;
  /** A durable channel: a send completes only once the server has synced it (DESIGN §3.6). */
  durable: boolean;
  /** Credited sends waiting for the CACK that acknowledges them (durable: synced), by seq. */
  completions: Deque<Completion>;
  /** The last of `completions` while later credited sends may still share it (Connection.synced). */
  group: Completion | undefined;
}

/**
 * A credited send until its CACK (or CNAK) comes; or several in a row, numbered first…seq, that
 * were written out together and share one promise.
 */
export interface Completion {
  first: number;
  seq: number;
  resolve(): void;
  reject(err: CircuitError): void;
  /** The promise the sends share (a group that may take more; undefined: not shared). */
  promise: Promise<void> | undefined;
  /** The connection's count of writes (FrameConn.writes) when the group began: it takes sends until the next. */
  gen: number;
}

/** A Completion for the one send `seq`. */
export function completion(seq: number, resolve: () => void, reject: (err: CircuitError) => void): Completion {
  return { first: seq, seq, resolve, reject, promise: undefined, gen: -1 };
}

/** A channel's send state, before its first send. */
export function newChanState(
  handle: number,
  cap: number,
  names: readonly string[] | undefined,
  durable: boolean,
): ChanState {
  return {
    handle,
    cap,
    credits: 0,
    holding: false,
    waitSaid: false,
    asking: false,
    blocking: 0,
    names,
    seq: 0,
    kept: new Deque(),
    run: undefined,
    slab: NO_BYTES,
    slabUsed: 0,
    held: new Deque(),
    releasing: false,
    durable,
    completions: new Deque(),
    group: undefined,
  };
}

/** Keeps `bytes` (a blocking send with request id `id`, or a big credited send with id 0) on its own. */
export function keep(st: ChanState, seq: number, bytes: Buffer, id: number, bin = false): Kept {
  const k: Kept = { seq, last: seq, bytes, id, first: seq, start: 0, end: bytes.length };
  if (bin) k.bin = true;
  st.kept.push(k);
  st.run = undefined;
  return k;
}

/**
 * Keeps a copy of a credited send (its encoded value, or with `bin` its bytes to be encoded as a
 * MessagePack bin) at the end of the channel's current run, or of a new one. Returns the bytes
 * it keeps.
 */
export function keepCredited(st: ChanState, seq: number, value: Uint8Array, bin: boolean): number {
  const n = value.length;
  if (n >= KEPT_BY_REFERENCE) {
    // Big: kept as it is rather than copied (an encoded value of our own, or the caller's bytes,
    // which it must not change before the send completes).
    keep(st, seq, value as Buffer, 0, bin);
    return n;
  }
  const size = 4 + (bin ? binHeadBytes(n) + n : n);
  let run = st.run;
  if (
    !run ||
    st.slabUsed !== run.end ||
    st.slabUsed + size > st.slab.length ||
    run.last !== ((seq - 1) >>> 0 || 0xffffffff)
  ) {
    if (st.slabUsed + size > st.slab.length) {
      // A fresh slab; the old one lives on while runs in it are kept.
      const want = Math.min(KEPT_SLAB_MAX, Math.max(KEPT_SLAB_MIN, st.slab.length * 2));
      st.slab = Buffer.allocUnsafe(Math.max(want, size));
      st.slabUsed = 0;
    }
    run = { seq, last: seq, bytes: st.slab, id: 0, first: seq, start: st.slabUsed, end: st.slabUsed };
    st.kept.push(run);
    st.run = run;
  }
  const b = st.slab;
  let o = st.slabUsed;
  b.writeUInt32BE(size - 4, o);
  o += 4;
  if (bin) o += writeBinHead(b, o, n);
  b.set(value, o);
  st.slabUsed = run.end = o + n;
  run.last = seq;
  return size;
}

/**
 * The server stored the credited sends through `through` (CACK, or failed them: CNAK): their
 * copies go. Returns the bytes freed.
 */
export function ackThrough(st: ChanState, through: number): number {
  let freed = 0;
  for (let k = st.kept.peek(); k && k.id === 0 && seqAtMost(k.seq, through); k = st.kept.peek()) {
    if (!seqAtMost(k.last, through)) {
      k.seq = (through + 1) >>> 0 || 1; // the rest of the run was sent in a later frame
      break;
    }
    st.kept.shift();
    freed += k.end - k.start;
    if (k === st.run) st.run = undefined;
  }
  // Nothing kept any more: the slab can be written from the start again.
  if (st.kept.length === 0) st.slabUsed = 0;
  return freed;
}

/**
 * The kept sends one by one, in order: each run split into copies of its unacknowledged entries.
 * `delta`: the change in kept bytes (entries acknowledged in the middle of a run are not copied).
 */
export function unrun(kept: Kept[]): { out: Kept[]; delta: number } {
  const out: Kept[] = [];
  let delta = 0;
  for (const k of kept) {
    if (k.id !== 0 || (k.first === k.last && k.start === 0 && k.end === k.bytes.length)) {
      out.push(k);
      continue;
    }
    delta -= k.end - k.start;
    const entries = k.bytes.subarray(k.start, k.end);
    let seq = k.first;
    // Entries before k.seq were acknowledged (a CACK in the middle of the run).
    let taking = false;
    forEachEntry(entries, 0, (start, end) => {
      if (seq === k.seq) taking = true;
      if (taking) {
        const bytes = Buffer.from(entries.subarray(start, end));
        out.push({ seq, last: seq, bytes, id: 0, first: seq, start: 0, end: bytes.length });
        delta += bytes.length;
      }
      seq = (seq + 1) >>> 0 || 1;
    });
  }
  return { out, delta };
}
