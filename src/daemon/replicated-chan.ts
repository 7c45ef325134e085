// A replicated channel at /@/… as its host (the lease holder) runs it (DESIGN §12). The channel's
// state is a log in a JetStream stream with R replicas: `b` records are values (a batch: the
// values whose sends reached the host while the appends before them were in flight, each with its
// sender's id), `k` records acknowledge delivered values, `c` closes, `h` marks a new host. The host keeps
// the buffer in memory as the log says it is and appends every change with JetStream's "expected
// last sequence": once another host has appended its `h` record, this one's next append is refused
// (fencing), and it stops at once, whatever it still believes. Appends it had in flight behind that
// one can still be accepted after the `h` (the store checks each expectation alone, and the second
// of two pipelined appends expects the sequence the `h` took): they are records of the log like any
// other, which every host reading the log applies; the new host finds them at its next append,
// which is refused, or its next check (verify), and reads the log again.
//
// Sends complete when their `b` record is stored on a quorum (the publish ack). A value handed to
// a receiver stays in the log until its `k` record is stored: if the host dies first, the next host
// finds it unacknowledged and delivers it again. A value is named by its key: its record's
// sequence times KEY_SPAN plus its place in the record.
//
// A send retried across a takeover is stored once: the host knows the id of every value stored in
// the last DEDUPE_MS (a client carries a send over to the next host for at most CARRY_MS from its
// start). Ids of values in the log come back with the log; before acknowledged values' records are
// trimmed, their ids go to a `d` record on a subject of their own, which the trims of the log leave
// alone and which is dropped once older than DEDUPE_MS. (Logs written before batches have `v`
// records of one value each and `a` acknowledgements by sequence; both are still read.)

import { Packr } from "msgpackr";
import { headers, type JetStreamClient, type JetStreamManager, type MsgHdrs } from "nats";
import { ChannelAborted, ChannelClosed, CircuitError } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import { Deque } from "../util/deque.js";
import { CARRY_MS, type ReplicatedChanStat } from "../wire/shapes.js";

/** Keys per record: a value's key is its record's sequence × KEY_SPAN + its place in the record. */
export const KEY_SPAN = 1024;
/** Bytes of values in one record, at most (one larger value goes alone). */
const BATCH_BYTES = 256 * 1024;
/** Value records in flight at once; sends arriving meanwhile join the next one. */
const BATCHES_IN_FLIGHT = 2;
/** How long the host remembers a stored send's id: past the longest a client retries a send. */
export const DEDUPE_MS = CARRY_MS + 10_000;

/** A batch record's data: the ids and the values, in order (MessagePack, two arrays). */
const batchCodec = new Packr({ useRecords: false });

/** A party to the channel: one client session on the host. */
export type Owner = object;

interface Value {
  seq: number;
  bytes: Buffer;
}

/** Sends on their way into one record. */
interface Batch {
  ids: string[];
  values: Buffer[];
  bytes: number;
  /** Each value's: told its key once the record is stored, or the failure. */
  done: ((err: CircuitError | undefined, key: number) => void)[];
  /** Retries of these sends (their clients lost the answer): told when the values are. */
  retries: ((err: CircuitError | undefined) => void)[];
}

interface PendingSend {
  owner: Owner;
  opid: number;
  bytes: Buffer;
  id: string;
  done: (err?: CircuitError) => void;
  /** A select's send case waiting in line (its `done` only ever reports a failure). */
  sel?: CaseWait;
}

interface PendingRecv {
  owner: Owner;
  opid: number;
  done: (err: CircuitError | undefined, v?: Value) => void;
  /** A select's recv case waiting in line (its `done` only ever reports a failure). */
  sel?: CaseWait;
}

/**
 * What a select case on this channel would get if committed now (docs/select.md, "Replicated
 * channels"): a value reserved for a recv case, the channel closed and drained, room reserved for
 * a send case, or a send that would fail (the channel is closed or scrubbed).
 */
export type CaseOffer = "value" | "closed" | "room" | "error";

/** A select case registered on this host by a client session, identified by (owner, opid). */
interface CaseWait {
  owner: Owner;
  opid: number;
  dir: "recv" | "send";
  bytes?: Buffer;
  id?: string;
  /** Set once the channel has reserved what the case needs. */
  offer?: CaseOffer;
  /** The value reserved for a recv case. */
  v?: Value;
  /** Told the offer (or the failure) once: a client's `case` or `watch` request waiting for it. */
  notify?: (err: CircuitError | undefined, offer?: CaseOffer) => void;
  /** A select with `default` waiting only for the values being appended (see selectCase). */
  once?: boolean;
  /** The select's id: its own recv cases make no room for its send cases (it cannot meet itself). */
  selector?: number;
}

/** A committed case: a value delivered (unacknowledged), closed, or null for a stored send. */
export type CaseOutcome = { seq: number; value: Buffer } | { closed: true } | { failed: true } | null;

export type RStat = ReplicatedChanStat;

/** How many acknowledgements between two trims of the log. */
export const TRIM_EVERY = 512;

export class Moved extends CircuitError {
  constructor(message: string) {
    super("Moved", message);
  }
}

export class ReplicatedChan {
  private readonly buffer = new Deque<Value>();
  private readonly unacked = new Map<number, { v: Value; owner: Owner; opid: number }>();
  private readonly senders = new Deque<PendingSend>();
  private readonly receivers = new Deque<PendingRecv>();
  /** Select cases registered here, by session and opid: waiting in line, or offered (reserved). */
  private readonly cases = new Map<Owner, Map<number, CaseWait>>();
  /** Cases of selects with `default` waiting for the appends in flight (see selectCase). */
  private readonly onceCases = new Set<CaseWait>();
  /** Values reserved for recv cases and room reserved for send cases: both count as occupied. */
  private reservedValues = 0;
  private reservedRoom = 0;
  /** Ids of the values stored in the last DEDUPE_MS, with when this host learned of each. */
  private readonly ids = new Map<string, number>();
  /** Ids of the values in the records being appended: a retry waits for that append. */
  private readonly pendingIds = new Map<string, Batch>();
  /** The next value record, filling while BATCHES_IN_FLIGHT are being appended. */
  private batch: Batch | undefined;
  /** The sequences the value records being appended will take (at most BATCHES_IN_FLIGHT but for full ones). */
  private readonly valueAppends = new Set<number>();
  /** Value records not trimmed yet, with their ids (written to a `d` record before the trim). */
  private readonly records = new Deque<{ seq: number; ids: string[] }>();
  /** `d` records kept, with when this host wrote or read each. */
  private readonly dedupeRecs = new Deque<{ seq: number; at: number }>();
  /** Appends in flight that will add a value. */
  private inflight = 0;
  private closed = false;
  private closing = false;
  private aborted = false;
  private numSend = 0;
  private numRecv = 0;
  private acks = 0;
  private ackBatch: number[] | undefined;
  private ackFlush: Promise<void> | undefined;
  private trimming = false;
  private trimmedTo = 0;
  /** The sequence the next append expects the stream to end at. */
  private expect = 0;
  /** Appends sent and not yet answered. */
  private appending = 0;
  /** Set once this host may change nothing any more. */
  lost: CircuitError | undefined;
  onLost: (err: CircuitError) => void = () => {};
  /**
   * Whether this host's lease is surely still its own. Values are handed out only while it is:
   * a host replaced unawares would otherwise hand out values from a buffer that is no longer true.
   */
  fresh: () => boolean = () => true;

  private constructor(
    private readonly js: JetStreamClient,
    readonly stream: string,
    readonly cap: number,
    readonly replicas: number,
    private readonly hostId: string,
    private readonly jsm: Promise<JetStreamManager>,
  ) {}

  static subject(stream: string): string {
    return `circuit.log.${stream}`;
  }

  /** The subject of the `d` records: ids of trimmed values, kept DEDUPE_MS. */
  static idsSubject(stream: string): string {
    return `circuit.ids.${stream}`;
  }

  /** Makes the stream of a new channel (R replicas, file storage). */
  static async createStream(jsm: JetStreamManager, stream: string, replicas: number): Promise<void> {
    await jsm.streams.add({
      name: stream,
      subjects: [ReplicatedChan.subject(stream), ReplicatedChan.idsSubject(stream)],
      num_replicas: replicas,
    });
  }

  /**
   * Becomes the host: reads the whole log, then appends an `h` record after it. If another host
   * appended meanwhile, reads again (a bounded number of times).
   */
  static async resume(
    js: JetStreamClient,
    jsm: JetStreamManager,
    stream: string,
    cap: number,
    replicas: number,
    hostId: string,
    waitMs = 4000,
  ): Promise<ReplicatedChan> {
    for (let attempt = 0; ; attempt++) {
      const ch = new ReplicatedChan(js, stream, cap, replicas, hostId, Promise.resolve(jsm));
      let info = await jsm.streams.info(stream);
      // A stream made before `d` records takes their subject too.
      const idsSubject = ReplicatedChan.idsSubject(stream);
      if (!info.config.subjects?.includes(idsSubject)) {
        info = await jsm.streams.update(stream, {
          ...info.config,
          subjects: [...(info.config.subjects ?? []), idsSubject],
        });
      }
      const last = info.state.last_seq;
      if (info.state.messages > 0) await ch.replay(info.state.first_seq, last, waitMs);
      ch.expect = last;
      try {
        await ch.append("h", undefined);
        return ch;
      } catch (err) {
        if (attempt >= 4 || !(err instanceof Moved)) throw err;
      }
    }
  }

  /** Reads records first…last in batches; each batch must come within `waitMs` (else TIMEOUT). */
  private async replay(first: number, last: number, waitMs: number): Promise<void> {
    const c = await this.js.consumers.get(this.stream, {
      opt_start_seq: first,
      deliver_policy: "by_start_sequence" as never,
    });
    let at = first - 1;
    while (at < last) {
      const batch = await c.fetch({ max_messages: Math.min(4096, last - at), expires: waitMs });
      let n = 0;
      for await (const m of batch) {
        n++;
        at = m.seq;
        this.apply(m.seq, m.headers, m.data);
        if (at >= last) break;
      }
      if (n === 0)
        throw Object.assign(new Error(`no log records after ${at} within ${waitMs} ms`), { code: "TIMEOUT" });
    }
  }

  /** Applies one log record read back on takeover. */
  private apply(seq: number, h: MsgHdrs | undefined, data: Uint8Array): void {
    const t = h?.get("C-T");
    const now = monotonicMs();
    if (t === "b") {
      const [ids, values] = batchCodec.unpack(data) as [string[], Uint8Array[]];
      for (let i = 0; i < values.length; i++) {
        const v = values[i] as Uint8Array;
        this.buffer.push({ seq: seq * KEY_SPAN + i, bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength) });
        this.ids.set(ids[i] ?? "", now);
      }
      this.records.push({ seq, ids });
      this.numSend += values.length;
    } else if (t === "v") {
      // One value, as written before batches.
      const id = h?.get("C-Id") ?? "";
      this.buffer.push({ seq: seq * KEY_SPAN, bytes: Buffer.from(data) });
      this.ids.set(id, now);
      this.records.push({ seq, ids: [id] });
      this.numSend++;
    } else if (t === "k" || t === "a") {
      // Keys, or (written before batches) sequences of one-value records.
      const scale = t === "a" ? KEY_SPAN : 1;
      const acked = new Set((h?.get("C-S") ?? "").split(",").map((x) => Number(x) * scale));
      // Acknowledged values leave the buffer wherever they are in it (they were delivered in order,
      // but a value put back by a receiver that gave up may be acknowledged later than its successors).
      this.numRecv += this.buffer.removeWhere((v) => acked.has(v.seq)).length;
    } else if (t === "d") {
      for (const id of batchCodec.unpack(data) as string[]) this.ids.set(id, now);
      this.dedupeRecs.push({ seq, at: now });
    } else if (t === "c") {
      this.closed = true;
    }
  }

  /**
   * Appends a record, expecting the stream to end where this host last left it. Rejects with Moved
   * when it does not (another host appended: this one is fenced) or the store failed.
   */
  private append(
    t: string,
    data: Uint8Array | undefined,
    fields: Record<string, string> = {},
    subject = ReplicatedChan.subject(this.stream),
  ): Promise<number> {
    if (this.lost) return Promise.reject(this.lost);
    const h = headers();
    h.set("C-T", t);
    // Which host wrote it: lets anyone reading the log check that a fenced host wrote nothing.
    h.set("C-H", this.hostId);
    for (const [k, v] of Object.entries(fields)) h.set(k, v);
    const expect = this.expect++;
    this.appending++;
    return this.js.publish(subject, data ?? new Uint8Array(0), { headers: h, expect: { lastSequence: expect } }).then(
      (ack) => {
        this.appending--;
        if (ack.seq !== expect + 1 || ack.duplicate) throw this.lose(new Moved(`log of ${this.stream} moved on`));
        return ack.seq;
      },
      (err) => {
        this.appending--;
        throw this.lose(new Moved(`cannot append to ${this.stream}: ${(err as Error).message}`));
      },
    );
  }

  /** Whether anyone waits on this host: a receiver with no value, or a sender with no room. */
  get waiting(): boolean {
    return this.receivers.length > 0 || this.senders.length > 0;
  }

  /**
   * Checks that the log still ends where this host's last append left it. A host learns that
   * another one took over (fenced it) when an append fails; one that appends nothing, because
   * its parties are all waiting, would otherwise keep them waiting on a stale buffer forever.
   * Leases alone do not rule that out: NATS servers before 2.9.21 can accept two concurrent
   * compare-and-set updates of one key (nats-server issue 4320), so two daemons can both believe
   * they hold a lease for a moment.
   */
  async verify(): Promise<void> {
    if (this.lost || this.appending > 0) return;
    const at = this.expect;
    const info = await (await this.jsm).streams.info(this.stream);
    if (this.lost || this.appending > 0 || this.expect !== at) return;
    if (info.state.last_seq !== at) this.lose(new Moved(`log of ${this.stream} moved on under another host`));
  }

  /** This host may change nothing any more: everyone waiting here is told to ask again. */
  lose(err: CircuitError): CircuitError {
    if (this.lost) return this.lost;
    this.lost = err;
    for (const s of this.senders.drain()) s.done(err);
    for (const r of this.receivers.drain()) r.done(err);
    const b = this.batch;
    this.batch = undefined;
    if (b) this.settleBatch(b, err, 0);
    // Offered cases keep their reservation in name only: a commit here is refused with `lost`.
    for (const c of this.allCases()) this.tell(c, err);
    this.onLost(err);
    return err;
  }

  send(owner: Owner, opid: number, bytes: Buffer, id: string, done: (err?: CircuitError) => void): void {
    if (this.lost) return done(this.lost);
    if (this.aborted) return done(new ChannelAborted("the channel was scrubbed"));
    if (this.closed || this.closing) return done(new ChannelClosed("send on a closed channel"));
    if (this.known(id, done)) return;
    this.senders.push({ owner, opid, bytes, id, done });
    this.pump();
  }

  recv(owner: Owner, opid: number, done: (err: CircuitError | undefined, v?: Value) => void): void {
    if (this.lost) return done(this.lost);
    if (this.aborted) return done(new ChannelAborted("the channel was scrubbed"));
    this.receivers.push({ owner, opid, done });
    this.pump();
  }

  /** The receiver has the value: its `a` record makes that final. */
  ack(seq: number): Promise<void> {
    // A host that may change nothing cannot acknowledge anything either (not even a value it has
    // already let go of: its earlier `a` record may be the one that was refused).
    if (this.lost) return Promise.reject(this.lost);
    const u = this.unacked.get(seq);
    // Acknowledged before: settled as that acknowledgement's record is (the latest batch's).
    if (!u) return this.ackFlush ?? Promise.resolve();
    this.unacked.delete(seq);
    // Acknowledgements that arrive in one turn share one record: half the appends under load.
    if (!this.ackBatch) {
      const batch: number[] = [];
      this.ackBatch = batch;
      this.ackFlush = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          this.ackBatch = undefined;
          this.append("k", undefined, { "C-S": batch.join(",") }).then(() => {
            this.acks += batch.length;
            this.trim();
            resolve();
          }, reject);
        }),
      );
    }
    this.ackBatch.push(seq);
    return this.ackFlush as Promise<void>;
  }

  /**
   * Every TRIM_EVERY acknowledgements, drops the records before the oldest value still needed
   * (buffered or delivered unacknowledged): they are acknowledged values and their records. Only
   * while the lease is surely ours, so that no new host is reading the log meanwhile; never once
   * closed (the close record must stay). The ids of the values trimmed that were stored in the
   * last DEDUPE_MS go to a `d` record first, on its own subject, which this purge leaves alone: a
   * send retried after its record was trimmed is still stored once. `d` records older than
   * DEDUPE_MS go too.
   */
  private trim(): void {
    if (this.acks < TRIM_EVERY || this.trimming) return;
    if (this.closed || this.closing || this.lost || !this.fresh()) return;
    // Values on their way in go to records after the stream's end as this host knows it (expect),
    // or to those being appended: neither is trimmed.
    let low = this.buffer.peek()?.seq ?? this.expect * KEY_SPAN;
    for (const seq of this.valueAppends) low = Math.min(low, seq * KEY_SPAN);
    for (const key of this.unacked.keys()) low = Math.min(low, key);
    for (const c of this.allCases()) if (c.v) low = Math.min(low, c.v.seq);
    // The record of the oldest value needed stays (with whatever else it holds).
    const lowSeq = Math.floor(low / KEY_SPAN);
    if (lowSeq <= this.trimmedTo) return;
    this.acks = 0;
    this.trimming = true;
    this.pruneIds();
    const young: string[] = [];
    while ((this.records.peek()?.seq ?? lowSeq) < lowSeq) {
      for (const id of (this.records.shift() as { ids: string[] }).ids) if (this.ids.has(id)) young.push(id);
    }
    const cutoff = monotonicMs() - DEDUPE_MS;
    let oldD = 0;
    while ((this.dedupeRecs.peek()?.at ?? cutoff) < cutoff) oldD = (this.dedupeRecs.shift() as { seq: number }).seq;
    const kept =
      young.length === 0
        ? Promise.resolve()
        : this.append("d", batchCodec.pack(young), {}, ReplicatedChan.idsSubject(this.stream)).then((seq) => {
            this.dedupeRecs.push({ seq, at: monotonicMs() });
          });
    kept
      .then(() => this.jsm)
      .then(async (jsm) => {
        await jsm.streams.purge(this.stream, { filter: ReplicatedChan.subject(this.stream), seq: lowSeq });
        if (oldD > 0)
          await jsm.streams.purge(this.stream, { filter: ReplicatedChan.idsSubject(this.stream), seq: oldD + 1 });
      })
      .then(
        () => {
          this.trimmedTo = lowSeq;
        },
        () => {},
      )
      .finally(() => {
        this.trimming = false;
      });
  }

  /** Forgets the ids older than DEDUPE_MS (the map is in the order they were learned). */
  private pruneIds(): void {
    const cutoff = monotonicMs() - DEDUPE_MS;
    for (const [id, at] of this.ids) {
      if (at >= cutoff) break;
      this.ids.delete(id);
    }
  }

  /**
   * Whether a send with this id was stored or is being stored: `done` is told once it is (at
   * once, or when the append under way settles). A send retried after its client lost the
   * answer is stored once.
   */
  private known(id: string, done: (err: CircuitError | undefined) => void): boolean {
    if (id === "") return false;
    if (this.ids.has(id)) {
      done(undefined);
      return true;
    }
    const b = this.pendingIds.get(id);
    if (!b) return false;
    b.retries.push(done);
    return true;
  }

  /** Adds a value to the next record; `done` is told its key once stored (or the failure). */
  private enqueue(id: string, bytes: Buffer, done: (err: CircuitError | undefined, key: number) => void): void {
    let b = this.batch;
    if (!b || b.ids.length >= KEY_SPAN || (b.bytes > 0 && b.bytes + bytes.length > BATCH_BYTES)) {
      if (b) this.flush(true);
      b = { ids: [], values: [], bytes: 0, done: [], retries: [] };
      this.batch = b;
    }
    b.ids.push(id);
    b.values.push(bytes);
    b.bytes += bytes.length;
    b.done.push(done);
    this.pendingIds.set(id, b);
    this.flush(false);
  }

  /** Appends the next record if fewer than BATCHES_IN_FLIGHT are (or `force`: it is full). */
  private flush(force: boolean): void {
    const b = this.batch;
    if (!b || (!force && this.valueAppends.size >= BATCHES_IN_FLIGHT)) return;
    this.batch = undefined;
    // The sequence the record will take if stored: a trim meanwhile keeps it.
    const at = this.expect + 1;
    this.valueAppends.add(at);
    const n = b.ids.length;
    this.append("b", batchCodec.pack([b.ids, b.values]), { "C-N": String(n) }).then(
      (seq) => {
        this.valueAppends.delete(at);
        const now = monotonicMs();
        for (const id of b.ids) this.ids.set(id, now);
        this.records.push({ seq, ids: b.ids });
        this.settleBatch(b, undefined, seq);
        this.flush(false);
      },
      (err: CircuitError) => {
        this.valueAppends.delete(at);
        this.settleBatch(b, err, 0);
      },
    );
  }

  private settleBatch(b: Batch, err: CircuitError | undefined, seq: number): void {
    for (const id of b.ids) if (this.pendingIds.get(id) === b) this.pendingIds.delete(id);
    for (let i = 0; i < b.done.length; i++)
      (b.done[i] as (e: CircuitError | undefined, k: number) => void)(err, err ? 0 : seq * KEY_SPAN + i);
    for (const r of b.retries) r(err);
  }

  /** A receive was withdrawn by its client: it stops waiting, or its value goes back to the head. */
  cancel(owner: Owner, opid: number): void {
    this.senders.removeWhere((s) => s.owner === owner && s.opid === opid);
    this.receivers.removeWhere((r) => r.owner === owner && r.opid === opid);
    const c = this.findCase(owner, opid);
    if (c) this.release(c);
    for (const [seq, u] of this.unacked) {
      if (u.owner === owner && u.opid === opid) {
        this.unacked.delete(seq);
        this.putBack(u.v);
      }
    }
    this.pump();
  }

  /** A client session ended: its waits go, its unacknowledged values go back to the head in order. */
  ownerGone(owner: Owner): void {
    this.senders.removeWhere((s) => s.owner === owner);
    this.receivers.removeWhere((r) => r.owner === owner);
    for (const c of [...(this.cases.get(owner)?.values() ?? [])]) this.release(c);
    for (const [seq, u] of [...this.unacked]) {
      if (u.owner !== owner) continue;
      this.unacked.delete(seq);
      this.putBack(u.v);
    }
    this.pump();
  }

  /** A value handed out but not acknowledged goes back where its place in the log puts it. */
  private putBack(v: Value): void {
    const head = this.buffer.peek();
    if (!head || head.seq > v.seq) {
      this.buffer.unshift(v);
      return;
    }
    const all = this.buffer.drain();
    const at = all.findIndex((x) => x.seq > v.seq);
    all.splice(at < 0 ? all.length : at, 0, v);
    for (const x of all) this.buffer.push(x);
  }

  // Select cases (docs/select.md, "Replicated channels"). A case waits in line with plain sends
  // and receives; when it could complete, the channel reserves what it needs and offers it. The
  // client commits one offer (commitCase) and releases the others (cancel). A reservation holds
  // until then: nothing here withdraws an offer; a commit answers from the state at that moment.

  /**
   * Registers a select case. `reply` is told its offer at once if there is one; otherwise, it is
   * told `undefined` and the case waits (or, with `once`, is dropped: a select with `default`).
   */
  selectCase(
    owner: Owner,
    opid: number,
    dir: "recv" | "send",
    send: { bytes: Buffer; id: string } | undefined,
    opts: { once?: boolean; selector?: number },
    reply: (err: CircuitError | undefined, offer?: CaseOffer) => void,
  ): void {
    if (this.lost) return reply(this.lost);
    if (this.aborted) return reply(new ChannelAborted("the channel was scrubbed"));
    const once = opts.once === true;
    const c: CaseWait = { owner, opid, dir, ...send, selector: opts.selector };
    this.addCase(c);
    if (dir === "send" && (this.closed || this.closing)) c.offer = "error";
    else if (dir === "send") {
      const sel = c;
      this.senders.push({
        owner,
        opid,
        bytes: send?.bytes ?? Buffer.alloc(0),
        id: "",
        sel,
        done: (e) => this.tell(sel, e),
      });
      this.pump();
    } else {
      this.receivers.push({ owner, opid, sel: c, done: (e) => this.tell(c, e) });
      this.pump();
    }
    if (c.offer || !once) return reply(undefined, c.offer);
    if (dir === "recv" && this.inflight > 0) {
      // Values are being stored, maybe for this very case (on a channel of capacity 0 a waiting
      // receive makes room for a waiting sender): a select with `default` waits for those appends
      // rather than answer "not ready" and leave the value to whoever receives next.
      c.once = true;
      c.notify = reply;
      this.onceCases.add(c);
      return;
    }
    this.release(c);
    reply(undefined, undefined);
  }

  /** Once no append is in flight, `default` cases that got nothing are answered "not ready". */
  private settleOnce(): void {
    if (this.inflight > 0) return;
    for (const c of this.onceCases) if (!c.offer) this.release(c);
    this.onceCases.clear();
  }

  /** A client waits for its case's offer: told at once if it has one, else when it comes. */
  watchCase(owner: Owner, opid: number, reply: (err: CircuitError | undefined, offer?: CaseOffer) => void): void {
    if (this.lost) return reply(this.lost);
    const c = this.findCase(owner, opid);
    // Unknown here (released, or registered with another host): the client registers it again.
    if (!c) return reply(new Moved("no such select case on this host"));
    if (c.offer) return reply(undefined, c.offer);
    c.notify = reply;
  }

  /**
   * Commits an offered case: a recv case's value is delivered (unacknowledged, as a plain
   * receive's), a send case's value is appended and the promise settles on the publish ack.
   * `{failed}`: the case has no reservation here (the client registers it again).
   */
  async commitCase(owner: Owner, opid: number): Promise<CaseOutcome> {
    if (this.lost) throw this.lost;
    const c = this.findCase(owner, opid);
    if (!c?.offer) {
      if (c) this.release(c);
      return { failed: true };
    }
    if (this.aborted) {
      this.release(c);
      throw new ChannelAborted("the channel was scrubbed");
    }
    // A value handed back since a "closed" offer was made (its receiver went away without
    // acknowledging it): the channel is closed but not drained any more, and the case takes it.
    const back = c.offer === "closed" ? this.buffer.peek() : undefined;
    if ((c.offer === "value" || back) && !this.fresh()) throw this.lose(new Moved("lease not confirmed in time"));
    this.dropCase(c);
    if (back) {
      this.buffer.shift();
      this.unacked.set(back.seq, { v: back, owner, opid });
      this.numRecv++;
      this.pump();
      return { seq: back.seq, value: back.bytes };
    }
    // Such a value held for another case decides whether this receive ends: not yet; the client
    // registers the case again and it waits in line.
    if (c.offer === "closed" && this.reservedValues > 0) return { failed: true };
    if (c.offer === "value" && c.v) {
      this.reservedValues--;
      this.unacked.set(c.v.seq, { v: c.v, owner, opid });
      this.numRecv++;
      // Its slot is free now (a delivered value no longer counts against the capacity).
      this.pump();
      return { seq: c.v.seq, value: c.v.bytes };
    }
    if (c.offer === "closed") return { closed: true };
    if (c.offer === "room") this.reservedRoom--;
    if (this.closed || this.closing) {
      this.pump();
      throw new ChannelClosed("send on a closed channel");
    }
    const id = c.id ?? "";
    const bytes = c.bytes ?? Buffer.alloc(0);
    // Committed before (the client asked again after losing the answer): stored once.
    const again = await new Promise<CircuitError | undefined | false>((resolve) => {
      if (!this.known(id, resolve)) resolve(false);
    });
    if (again !== false) {
      this.pump();
      if (again) throw again;
      return null;
    }
    await new Promise<void>((resolve, reject) => this.store(id, bytes, (err) => (err ? reject(err) : resolve())));
    return null;
  }

  /** Stores a value (counted in flight meanwhile); `done` once it is in the log and the buffer. */
  private store(id: string, bytes: Buffer, done: (err?: CircuitError) => void): void {
    this.inflight++;
    this.enqueue(id, bytes, (err, key) => {
      this.inflight--;
      if (!err) {
        this.numSend++;
        this.buffer.push({ seq: key, bytes });
      }
      done(err);
      this.pump();
      this.settleOnce();
    });
  }

  /** Takes the first sender that `room` is for (not only made by its own select's recv cases). */
  private nextSender(room: number): PendingSend | undefined {
    const head = this.senders.peek();
    if (!head) return undefined;
    if (this.ownReceivers(head) < room) return this.senders.shift();
    // The head is a select's send case whose room only its own recv cases make: a sender behind
    // it may use that room (a receive of that select meeting another sender is fine).
    for (const x of this.senders) {
      if (this.ownReceivers(x) < room) {
        this.senders.removeWhere((y) => y === x);
        return x;
      }
    }
    return undefined;
  }

  /** Receivers that are recv cases of the same select as send case `s` (none for a plain send). */
  private ownReceivers(s: PendingSend): number {
    const sel = s.sel?.selector;
    if (sel === undefined) return 0;
    let n = 0;
    for (const r of this.receivers) if (r.sel?.selector === sel) n++;
    return n;
  }

  private findCase(owner: Owner, opid: number): CaseWait | undefined {
    return this.cases.get(owner)?.get(opid);
  }

  private addCase(c: CaseWait): void {
    let mine = this.cases.get(c.owner);
    if (!mine) {
      mine = new Map();
      this.cases.set(c.owner, mine);
    }
    // An opid names one case of a session: a second registration under it replaces the first.
    const old = mine.get(c.opid);
    if (old) this.release(old);
    mine.set(c.opid, c);
  }

  /** Forgets a case; false if it was not registered (any more). */
  private dropCase(c: CaseWait): boolean {
    const mine = this.cases.get(c.owner);
    if (mine?.get(c.opid) !== c) return false;
    mine.delete(c.opid);
    if (mine.size === 0) this.cases.delete(c.owner);
    this.onceCases.delete(c);
    return true;
  }

  private *allCases(): Generator<CaseWait> {
    for (const mine of [...this.cases.values()]) yield* [...mine.values()];
  }

  private offerCase(c: CaseWait, offer: CaseOffer): void {
    c.offer = offer;
    const n = c.notify;
    c.notify = undefined;
    n?.(undefined, offer);
  }

  /** The case failed where it waited (host lost, channel scrubbed): its waiting client hears it. */
  private tell(c: CaseWait, err: CircuitError | undefined): void {
    if (!err) return;
    this.dropCase(c);
    const n = c.notify;
    c.notify = undefined;
    n?.(err);
  }

  /** Drops a case: out of line, or its reservation back (a value to its place at the head). */
  private release(c: CaseWait): void {
    if (!this.dropCase(c)) return;
    this.senders.removeWhere((s) => s.sel === c);
    this.receivers.removeWhere((r) => r.sel === c);
    if (c.offer === "value" && c.v) {
      this.reservedValues--;
      this.putBack(c.v);
    } else if (c.offer === "room") this.reservedRoom--;
    const n = c.notify;
    c.notify = undefined;
    n?.(undefined, undefined);
    this.pump();
  }

  async close(): Promise<void> {
    if (this.lost) throw this.lost;
    if (this.aborted) throw new ChannelAborted("the channel was scrubbed");
    if (this.closed || this.closing) throw new ChannelClosed("close of a closed channel");
    this.closing = true;
    for (const s of this.senders.drain()) {
      // A waiting send case is offered the failure, as on an ordinary channel.
      if (s.sel) this.offerCase(s.sel, "error");
      else s.done(new ChannelClosed("channel closed while sending"));
    }
    // Sends admitted before the close go into the log before its record.
    this.flush(true);
    await this.append("c", undefined);
    this.closed = true;
    this.pump();
  }

  /** Aborts everyone waiting; the caller removes the stream and the tree entry. */
  abort(): void {
    this.aborted = true;
    const err = new ChannelAborted("the channel was scrubbed");
    for (const s of this.senders.drain()) s.done(err);
    for (const r of this.receivers.drain()) r.done(err);
  }

  stat(): RStat {
    return {
      cap: this.cap,
      len: this.buffer.length + this.reservedValues,
      closed: this.closed || this.closing,
      aborted: this.aborted,
      numSend: this.numSend,
      numRecv: this.numRecv,
      waitingSenders: this.senders.length,
      waitingReceivers: this.receivers.length,
      replicas: this.replicas,
      host: this.hostId,
    };
  }

  /** Moves values to receivers and senders into the log while there is room. */
  private pump(): void {
    if (this.lost) return;
    for (;;) {
      const r = this.receivers.peek();
      const v = this.buffer.peek();
      if (r && v) {
        if (!this.fresh()) {
          this.lose(new Moved("lease not confirmed in time"));
          return;
        }
        this.receivers.shift();
        this.buffer.shift();
        if (r.sel) {
          // Reserved for a select: out of circulation, but still occupying its slot.
          r.sel.v = v;
          this.reservedValues++;
          this.offerCase(r.sel, "value");
          continue;
        }
        this.unacked.set(v.seq, { v, owner: r.owner, opid: r.opid });
        this.numRecv++;
        r.done(undefined, v);
        continue;
      }
      // Closed and drained: values reserved for select cases still count (they may come back).
      if (!v && r && (this.closed || this.closing) && this.inflight === 0 && this.reservedValues === 0) {
        this.receivers.shift();
        if (r.sel) this.offerCase(r.sel, "closed");
        else r.done(new ChannelClosed("channel is closed and drained"));
        continue;
      }
      // Room: the buffer's free slots, plus (for handing straight over) receivers no value is on
      // its way to; values and room reserved for select cases are occupied.
      const room =
        this.cap + this.receivers.length - this.buffer.length - this.inflight - this.reservedValues - this.reservedRoom;
      const s = room > 0 ? this.nextSender(room) : undefined;
      if (s) {
        if (s.sel) {
          this.reservedRoom++;
          this.offerCase(s.sel, "room");
          continue;
        }
        // A retry of a send stored meanwhile (or being stored) waits for that one.
        if (this.known(s.id, s.done)) continue;
        this.store(s.id, s.bytes, s.done);
        continue;
      }
      return;
    }
  }
}
