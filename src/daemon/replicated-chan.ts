// A replicated channel at /@/… as its host (the lease holder) runs it (DESIGN §12). The channel's
// state is a log in a JetStream stream with R replicas: `v` records are values (with the sender's
// id), `a` records acknowledge a delivered value, `c` closes, `h` marks a new host. The host keeps
// the buffer in memory as the log says it is and appends every change with JetStream's "expected
// last sequence": once another host has appended its `h` record, this one's next append is refused
// (fencing), and it stops at once, whatever it still believes. Appends it had in flight behind that
// one can still be accepted after the `h` (the store checks each expectation alone, and the second
// of two pipelined appends expects the sequence the `h` took): they are records of the log like any
// other, which every host reading the log applies; the new host finds them at its next append,
// which is refused, or its next check (verify), and reads the log again.
//
// Sends complete when their `v` record is stored on a quorum (the publish ack). A value handed to
// a receiver stays in the log until its `a` record is stored: if the host dies first, the next host
// finds it unacknowledged and delivers it again.

import { headers, type JetStreamClient, type JetStreamManager, type MsgHdrs } from "nats";
import { ChannelAborted, ChannelClosed, CircuitError } from "../errors.js";
import { Deque } from "../util/deque.js";
import type { ReplicatedChanStat } from "../wire/shapes.js";

/** A party to the channel: one client session on the host. */
export type Owner = object;

interface Value {
  seq: number;
  bytes: Buffer;
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

/** The host lost the element (fenced or store failure): clients should ask again where it lives. */
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
  /** Ids of every value in the log: a send retried across a takeover is stored once. */
  private readonly ids = new Set<string>();
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
  /** A value's append was answered "duplicate" (its id was stored before, at `seq`). */
  onDuplicate: (id: string, seq: number) => void = () => {};
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

  /** Makes the stream of a new channel (R replicas, file storage, de-duplication by message id). */
  static async createStream(jsm: JetStreamManager, stream: string, replicas: number): Promise<void> {
    await jsm.streams.add({
      name: stream,
      subjects: [ReplicatedChan.subject(stream)],
      num_replicas: replicas,
      duplicate_window: 120_000_000_000,
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
      const info = await jsm.streams.info(stream);
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
        this.apply(m.seq, m.headers, Buffer.from(m.data));
        if (at >= last) break;
      }
      if (n === 0)
        throw Object.assign(new Error(`no log records after ${at} within ${waitMs} ms`), { code: "TIMEOUT" });
    }
  }

  /** Applies one log record read back on takeover. */
  private apply(seq: number, h: MsgHdrs | undefined, data: Buffer): void {
    const t = h?.get("C-T");
    if (t === "v") {
      this.buffer.push({ seq, bytes: data });
      this.ids.add(h?.get("C-Id") ?? "");
      this.numSend++;
    } else if (t === "a") {
      const acked = new Set((h?.get("C-S") ?? "").split(",").map(Number));
      // Acknowledged values leave the buffer wherever they are in it (they were delivered in order,
      // but a value put back by a receiver that gave up may be acknowledged later than its successors).
      this.numRecv += this.buffer.removeWhere((v) => acked.has(v.seq)).length;
    } else if (t === "c") {
      this.closed = true;
    }
  }

  /**
   * Appends a record, expecting the stream to end where this host last left it. Rejects with Moved
   * when it does not (another host appended: this one is fenced) or the store failed.
   */
  private append(t: string, data: Buffer | undefined, fields: Record<string, string> = {}): Promise<number> {
    if (this.lost) return Promise.reject(this.lost);
    const h = headers();
    h.set("C-T", t);
    // Which host wrote it: lets anyone reading the log check that a fenced host wrote nothing.
    h.set("C-H", this.hostId);
    for (const [k, v] of Object.entries(fields)) h.set(k, v);
    const expect = this.expect++;
    const opts = { headers: h, expect: { lastSequence: expect }, ...(fields["C-Id"] ? { msgID: fields["C-Id"] } : {}) };
    this.appending++;
    return this.js.publish(ReplicatedChan.subject(this.stream), data ?? new Uint8Array(0), opts).then(
      (ack) => {
        this.appending--;
        if (ack.duplicate && t === "v") {
          this.onDuplicate(fields["C-Id"] ?? "", ack.seq);
          // Sequence 0: the store has seen the id but not stored it yet (a proposal in flight, or
          // one lost with a NATS leader): not done. The client asks again; the next host's replay
          // finds it once it is stored.
          if (ack.seq === 0) throw this.lose(new Moved(`log of ${this.stream}: a send is not confirmed yet`));
          // Stored before: trimmed from the log since (its id is in JetStream's window), or stored
          // by an earlier host after this one read the log. The send is done; this host's view is
          // behind the log, so it stops and the next host reads the log again.
          queueMicrotask(() => this.lose(new Moved(`log of ${this.stream} resynchronizes`)));
          return 0;
        }
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
    // Offered cases keep their reservation in name only: a commit here is refused with `lost`.
    for (const c of this.allCases()) this.tell(c, err);
    this.onLost(err);
    return err;
  }

  send(owner: Owner, opid: number, bytes: Buffer, id: string, done: (err?: CircuitError) => void): void {
    if (this.lost) return done(this.lost);
    if (this.aborted) return done(new ChannelAborted("the channel was scrubbed"));
    if (this.closed || this.closing) return done(new ChannelClosed("send on a closed channel"));
    if (this.ids.has(id)) return done();
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
          this.append("a", undefined, { "C-S": batch.join(",") }).then(() => {
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
   * closed (the close record must stay). A send retried after its record was trimmed is still
   * stored once: JetStream's de-duplication window (2 min) knows its id.
   */
  private trim(): void {
    if (this.acks < TRIM_EVERY || this.trimming || this.inflight > 0) return;
    if (this.closed || this.closing || this.lost || !this.fresh()) return;
    let low = this.buffer.peek()?.seq ?? this.expect;
    for (const seq of this.unacked.keys()) low = Math.min(low, seq);
    for (const c of this.allCases()) if (c.v) low = Math.min(low, c.v.seq);
    if (low <= this.trimmedTo) return;
    this.acks = 0;
    this.trimming = true;
    this.jsm
      .then((jsm) => jsm.streams.purge(this.stream, { seq: low }))
      .then(
        () => {
          this.trimmedTo = low;
        },
        () => {},
      )
      .finally(() => {
        this.trimming = false;
      });
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
    if (c.offer === "value" && !this.fresh()) throw this.lose(new Moved("lease not confirmed in time"));
    this.dropCase(c);
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
    if (this.ids.has(id)) {
      this.pump();
      return null;
    }
    this.ids.add(id);
    this.inflight++;
    try {
      const seq = await this.append("v", bytes, { "C-Id": id });
      if (seq > 0) {
        this.numSend++;
        this.buffer.push({ seq, bytes });
      }
      return null;
    } finally {
      this.inflight--;
      this.pump();
      this.settleOnce();
    }
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
        this.inflight++;
        this.ids.add(s.id);
        this.append("v", s.bytes, { "C-Id": s.id }).then(
          (seq) => {
            this.inflight--;
            // seq 0: a duplicate of a send stored (and taken) before; nothing new is buffered.
            if (seq > 0) {
              this.numSend++;
              this.buffer.push({ seq, bytes: s.bytes });
            }
            s.done();
            this.pump();
            this.settleOnce();
          },
          (err: CircuitError) => {
            this.inflight--;
            s.done(err);
          },
        );
        continue;
      }
      return;
    }
  }
}
