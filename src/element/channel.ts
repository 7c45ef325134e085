// The channel: Go's channel semantics as a pure state machine. It does no I/O; it takes operations
// and answers through the callbacks of the waiters it is given. Callbacks must not call back into
// the same channel synchronously.
//
// Every operation enqueues a waiter and runs one matching engine (`pump`), so that waiters are
// served in the order they arrived whatever their kind: plain sends and receives, and select cases.
//
// Credits: a credit holder (one client connection) may hold reserved buffer slots so that its sends
// complete without a round trip. A reserved slot counts as occupied for every other sender, so to
// keep Go's meaning the channel takes reservations back (revoke) as soon as a sender would block,
// and close/scrub complete only after every holder has given its credits back: from then on no
// credited send can be in flight.
//
// Select cases (docs/select.md): a case never completes on its own. When it could, the channel
// reserves what it needs (a value, a sender, a buffer slot, a receive) and makes the case an offer;
// the selector then commits exactly one case and releases the others, and a released reservation
// goes back where it came from. Two select cases meeting on an unbuffered channel form a pair: the
// selector with the lower id is asked first; only if it commits is the other asked. Selectors wait
// only on higher ids, so no cycle of selectors can wait on each other.

import { ChannelAborted, ChannelClosed, type CircuitError } from "../errors.js";
import { Deque } from "../util/deque.js";

export const MAX_CAP = 1_000_000;
/** The largest capacity of a durable channel (its backlog lives on disk). */
export const MAX_DURABLE_CAP = 2 ** 31 - 1;

/**
 * Where a channel keeps its buffered values. In memory it is a plain queue; a durable channel's
 * (src/daemon/durable-chan.ts) keeps a bounded window in memory and the rest in its store, and
 * makes a value available only once it is on stable storage.
 */
export interface ChanBuffer<V> {
  /** Every buffered value, available or not: what counts against the capacity. */
  readonly length: number;
  /** How many values at the head may be handed out now. */
  readonly available: number;
  push(v: V): void;
  /** Takes the head; only while `available` > 0. */
  shift(): V | undefined;
  /** Puts back at the head a value that was handed out (and not acknowledged). */
  unshift(v: V): void;
  /** Drops every value (scrub). */
  drain(): unknown;
}

/** The in-memory buffer: every value is available at once. */
class MemBuffer<V> extends Deque<V> implements ChanBuffer<V> {
  get available(): number {
    return this.length;
  }
}

export interface ChannelOptions<V> {
  /** Where buffered values live (default: memory). */
  buffer?: ChanBuffer<V>;
  /** The largest capacity accepted (default MAX_CAP). */
  maxCap?: number;
  /**
   * False: a value never goes from a sender straight to a receiver, only through the buffer (a
   * durable channel must store every value before anyone may receive it). Default true.
   */
  handoff?: boolean;
}

/** A blocked (or about to block) send. `done` is called exactly once. */
export interface SendWaiter<V> {
  readonly value: V;
  done(err?: CircuitError): void;
}

/**
 * A receiver; each credit added with `recv` is one blocked receive. `take` is called once per value,
 * `end` at most once (channel closed and drained, or aborted) and then the receiver is forgotten.
 */
export interface Receiver<V> {
  take(value: V): void;
  end(err: CircuitError): void;
}

/** A connection that can hold reserved buffer slots. */
export interface CreditHolder {
  /** n more credits; `waited`: the holder had said it waits for them (holderWaits). */
  grant(n: number, waited: boolean): void;
  /** Asks the holder to give back its unused credits with `release`. */
  revoke(): void;
}

/** What a select case would get if committed now. */
export interface Offer<V> {
  /** recv: the value reserved for it. */
  value?: V;
  /** recv: the channel is closed and drained. */
  closed?: boolean;
  /** send: the send would fail (ChannelClosed, ChannelAborted). */
  error?: CircuitError;
  /** The first half of a select-vs-select pair: committing asks the other selector. */
  pair?: boolean;
}

/** The outcome of a committed case. */
export interface Outcome<V> {
  value?: V;
  closed?: boolean;
  error?: CircuitError;
}

/** One case of a select, registered on one channel. */
export interface SelectCase<V> {
  /** Orders selectors; unique per select. */
  readonly selector: number;
  readonly op: "recv" | "send";
  /** The value, for a send case. */
  readonly value?: V;
  /** The channel reserved a match for this case. */
  offer(o: Offer<V>): void;
  /** The reservation behind the last offer is gone (its counterpart left); the case waits again. */
  withdraw(): void;
  /** A pair this case committed to completed (it happened) or failed (the case waits again). */
  settled(outcome: Outcome<V> | undefined): void;
}

/** What `stat()` answers (the same shape as ChanStat in src/wire/shapes.ts, which clients see). */
export interface ChanStat {
  cap: number;
  len: number;
  closed: boolean;
  aborted: boolean;
  numSend: number;
  numRecv: number;
  waitingSenders: number;
  waitingReceivers: number;
}

export type CommitResult<V> = { status: "done"; outcome: Outcome<V> } | { status: "pending" } | { status: "failed" };

interface Holding {
  held: number;
  want: number;
  revoking: boolean;
  /** Out of credit with a send waiting for more (holderWaits): a waiting sender until granted. */
  waiting: boolean;
  /** Counts its waits, so that holderStuck acts on the wait it was meant for. */
  waitNo: number;
  /** Where its current wait stands among the senders' (the channel's seq when it began). */
  wseq: number;
}

/** A waiting holder's place in the queue of waits (stale once the holder stops waiting). */
interface HolderWait {
  holder: CreditHolder;
  h: Holding;
  seq: number;
}

interface PlainSend<V> {
  w: SendWaiter<V>;
  seq: number;
  /** Cancelled in place: skipped when it reaches the head (cancelling is O(1)). */
  dead?: boolean;
}
interface PlainRecv<V> {
  r: Receiver<V>;
  n: number;
  seq: number;
}
interface Tentative<V> {
  c: SelectCase<V>;
  seq: number;
}

/** What a select case holds while its offer is out. */
type Reservation<V> =
  | { kind: "buf"; value: V; seq: number }
  | { kind: "sender"; s: PlainSend<V>; seq: number }
  | { kind: "closed"; seq: number }
  | { kind: "slot"; seq: number }
  | { kind: "receiver"; r: Receiver<V>; seq: number; rseq: number }
  | { kind: "error"; error: CircuitError; seq: number }
  | { kind: "pair"; other: SelectCase<V>; first: boolean; committed: boolean; seq: number };

export class Channel<V> {
  readonly cap: number;
  private readonly buf: ChanBuffer<V>;
  private readonly handoff: boolean;
  private readonly senders = new Deque<PlainSend<V>>();
  private readonly receivers = new Deque<PlainRecv<V>>();
  private readonly tsend = new Deque<Tentative<V>>();
  private readonly trecv = new Deque<Tentative<V>>();
  private readonly reservations = new Map<SelectCase<V>, Reservation<V>>();
  private readonly holders = new Map<CreditHolder, Holding>();
  /** Holders waiting for credit, in the order they began to wait (entries of past waits are skipped). */
  private readonly waits = new Deque<HolderWait>();
  /** Which holder grant() tops up first next time (they take turns). */
  private grantTurn = 0;
  /** Where each queued plain sender and receiver stands, so cancelling is not a queue scan. */
  private readonly sendIndex = new Map<SendWaiter<V>, PlainSend<V>>();
  private readonly recvIndex = new Map<Receiver<V>, Set<PlainRecv<V>>>();
  private liveSenders = 0;
  private seq = 0;
  /** Slots reserved by credit holders. */
  private reserved = 0;
  /** Slots reserved by select send cases. */
  private selSlots = 0;
  /** Buffered values reserved by select recv cases: they still occupy their slots. */
  private bufHeld = 0;
  private closing = false;
  private closed = false;
  private aborted = false;
  private numSend = 0;
  private numRecv = 0;
  private readonly settledCbs: (() => void)[] = [];

  constructor(cap: number, opts?: ChannelOptions<V>) {
    const max = opts?.maxCap ?? MAX_CAP;
    if (!Number.isInteger(cap) || cap < 0 || cap > max) {
      throw new RangeError(`channel capacity must be an integer from 0 to ${max}, got ${cap}`);
    }
    this.cap = cap;
    this.buf = opts?.buffer ?? new MemBuffer<V>();
    this.handoff = opts?.handoff ?? true;
  }

  /** Values became available in the buffer, or slots came free (a durable store answered). */
  kick(): void {
    if (!this.aborted) this.pump();
  }

  /** A channel brought back from a store in its closed state (no sender can hold credits yet). */
  restoreClosed(): void {
    this.closing = true;
    this.closed = true;
  }

  /** True once scrubbed. */
  get isAborted(): boolean {
    return this.aborted;
  }

  send(w: SendWaiter<V>): void {
    if (this.aborted) return w.done(new ChannelAborted());
    if (this.closing) return w.done(new ChannelClosed("send on closed channel"));
    this.queueSender({ w, seq: ++this.seq }, false);
    this.pump();
  }

  /** Withdraws a blocked send; false if it already completed (or failed). */
  cancelSend(w: SendWaiter<V>): boolean {
    const queued = this.sendIndex.get(w);
    if (queued) {
      queued.dead = true;
      this.sendIndex.delete(w);
      this.liveSenders--;
      return true;
    }
    // Reserved by a select case: the offer is void, the send did not happen.
    for (const [c, res] of this.reservations) {
      if (res.kind === "sender" && res.s.w === w) {
        this.reservations.delete(c);
        this.requeueCase(c, res.seq);
        c.withdraw();
        this.pump();
        return true;
      }
    }
    return false;
  }

  /**
   * A send into a slot reserved for `holder`. It completed when the holder spent the credit, so it
   * is accepted even if a close has begun since. Returns false if the holder had no credit.
   */
  sendCredited(holder: CreditHolder, value: V): boolean {
    return this.sendCreditedMany(holder, [value]);
  }

  /**
   * Several credited sends, in order, each spending one credit: all of them are accepted, or none
   * (false) if the holder has fewer credits than values.
   */
  sendCreditedMany(holder: CreditHolder, values: readonly V[]): boolean {
    const h = this.holders.get(holder);
    const n = values.length;
    if (!h || h.held < n) return false;
    h.held -= n;
    this.reserved -= n;
    if (this.aborted) return true;
    this.numSend += n;
    for (let i = 0; i < n; i++) this.buf.push(values[i] as V);
    this.pump();
    return true;
  }

  /** Adds n blocked receives for r (FIFO behind every receive already waiting). */
  recv(r: Receiver<V>, n: number): void {
    if (this.aborted) return r.end(new ChannelAborted());
    if (n <= 0) return;
    const last = this.receivers.peekLast();
    const lastT = this.trecv.peekLast();
    if (last && last.r === r && last.n > 0 && (!lastT || lastT.seq < last.seq)) last.n += n;
    else this.queueReceiver({ r, n, seq: ++this.seq }, false);
    this.pump();
  }

  /** Withdraws all of r's waiting receives; returns how many there were. */
  cancelRecv(r: Receiver<V>): number {
    let n = 0;
    for (const w of this.recvIndex.get(r) ?? []) {
      n += w.n;
      w.n = 0;
    }
    this.recvIndex.delete(r);
    // A receive reserved by a select send case is withdrawn too: that offer is void.
    for (const [c, res] of this.reservations) {
      if (res.kind === "receiver" && res.r === r) {
        this.reservations.delete(c);
        this.requeueCase(c, res.seq);
        c.withdraw();
        n++;
      }
    }
    this.pump();
    return n;
  }

  /**
   * Puts values that were handed to a receiver but never acknowledged back at the head of the
   * channel, in their order. They may exceed the capacity for a while.
   */
  requeue(values: readonly V[]): void {
    if (this.aborted || values.length === 0) return;
    for (let i = values.length - 1; i >= 0; i--) this.buf.unshift(values[i] as V);
    this.numRecv -= values.length;
    this.pump();
  }

  /**
   * Puts a value in without ever blocking (for subscriptions): to a waiting receiver, else into the
   * buffer, dropping the oldest value when it is full. Returns how many values were dropped.
   */
  offer(value: V): number {
    if (this.closing || this.cap === 0) return 1;
    this.numSend++;
    let dropped = 0;
    if (this.buf.length >= this.cap) {
      this.buf.shift();
      dropped = 1;
    }
    this.buf.push(value);
    this.pump();
    return dropped;
  }

  /**
   * Starts closing. Blocked senders fail now; `settled` is called once no credited send can still
   * arrive, which is when the close has happened. Throws ChannelClosed for a second close.
   */
  close(settled: () => void): void {
    if (this.aborted) throw new ChannelAborted();
    if (this.closing) throw new ChannelClosed("close of closed channel");
    this.closing = true;
    for (const s of this.drainSenders()) s.w.done(new ChannelClosed("send on closed channel"));
    this.voidSends(new ChannelClosed("send on closed channel"));
    this.settledCbs.push(settled);
    this.revokeAll(true);
    this.maybeSettle();
    this.pump();
  }

  /**
   * Aborts: every waiting op fails with ChannelAborted and buffered values are dropped. `settled`
   * is called once every credit holder has given its credits back.
   */
  scrub(settled: () => void): void {
    if (!this.aborted) {
      this.aborted = true;
      this.closing = true;
      const err = new ChannelAborted();
      for (const s of this.drainSenders()) s.w.done(err);
      this.endReceivers(err);
      // Select cases: withdrawn reservations give back plain waiters, which fail like the rest.
      for (const [c, res] of [...this.reservations]) {
        this.reservations.delete(c);
        if (res.kind === "sender") res.s.w.done(err);
        if (res.kind === "receiver") res.r.end(err);
        if (res.kind === "pair" && res.committed) c.settled({ error: err });
        else {
          // Back in its queue, the case is offered the failure below.
          this.requeueCase(c, res.seq);
          c.withdraw();
        }
      }
      this.buf.drain();
      this.selSlots = 0;
      this.bufHeld = 0;
      this.revokeAll(true);
      // Select cases still waiting get an offer that fails, so their selects end.
      this.pump();
    }
    this.settledCbs.push(settled);
    this.maybeSettle();
  }

  /** Registers a select case; it gets an offer as soon as it could complete. */
  selectCase(c: SelectCase<V>): void {
    (c.op === "recv" ? this.trecv : this.tsend).push({ c, seq: ++this.seq });
    this.pump();
  }

  /** The selector commits to case c (after an offer). */
  commitCase(c: SelectCase<V>): CommitResult<V> {
    const res = this.reservations.get(c);
    if (!res) return { status: "failed" };
    if (res.kind === "pair") {
      if (res.first) {
        // Ask the other selector; the answer decides.
        res.committed = true;
        const other = this.reservations.get(res.other);
        if (other?.kind !== "pair") return { status: "failed" };
        res.other.offer(c.op === "send" ? { value: c.value } : {});
        return { status: "pending" };
      }
      // The second selector commits: the pair happens, but only if it was asked, that is, if the
      // first has committed (a stale commit from an earlier offer must not complete it).
      const first = res.other;
      const fres = this.reservations.get(first);
      if (fres?.kind !== "pair" || !fres.committed) return { status: "failed" };
      this.reservations.delete(c);
      this.reservations.delete(first);
      this.numSend++;
      this.numRecv++;
      const value = (c.op === "send" ? c.value : first.value) as V;
      first.settled(first.op === "recv" ? { value } : {});
      this.pump();
      return { status: "done", outcome: c.op === "recv" ? { value } : {} };
    }
    this.reservations.delete(c);
    let outcome: Outcome<V> = {};
    switch (res.kind) {
      case "buf":
        this.bufHeld--;
        this.numRecv++;
        outcome = { value: res.value };
        break;
      case "sender":
        this.numSend++;
        this.numRecv++;
        res.s.w.done();
        outcome = { value: res.s.w.value };
        break;
      case "closed": {
        // A value handed back since this offer was made (its receiver's connection closed): the
        // channel is closed but not drained any more, and a receive now takes that value.
        const v = this.buf.shift();
        if (v !== undefined) {
          this.numRecv++;
          outcome = { value: v };
        } else if (this.bufHeld > 0) {
          // Such a value is held for another case's offer: this receive takes it if that offer is
          // given up, and ends only once it is taken. Until then this offer is void; the case waits
          // in its place for the next one (nothing here can make it at once: the buffer is empty).
          this.requeueCase(c, res.seq);
          return { status: "failed" };
        } else outcome = { closed: true };
        break;
      }
      case "error":
        outcome = { error: res.error };
        break;
      case "slot":
        this.selSlots--;
        this.numSend++;
        this.buf.push(c.value as V);
        break;
      case "receiver":
        this.numSend++;
        this.numRecv++;
        res.r.take(c.value as V);
        break;
    }
    this.pump();
    return { status: "done", outcome };
  }

  /** The selector gives up case c: a waiting case leaves, a reservation goes back. */
  releaseCase(c: SelectCase<V>): void {
    const res = this.reservations.get(c);
    if (!res) {
      (c.op === "recv" ? this.trecv : this.tsend).removeWhere((t) => t.c === c);
      return;
    }
    this.reservations.delete(c);
    switch (res.kind) {
      case "buf":
        this.bufHeld--;
        this.buf.unshift(res.value);
        break;
      case "sender":
        this.queueSender(res.s, true);
        break;
      case "slot":
        this.selSlots--;
        break;
      case "receiver":
        this.queueReceiver({ r: res.r, n: 1, seq: res.rseq }, true);
        break;
      case "pair": {
        const other = this.reservations.get(res.other);
        if (other?.kind === "pair") {
          this.reservations.delete(res.other);
          this.requeueCase(res.other, other.seq);
          // The other half's offer (if it had one) is void: committed, its pair failed; else withdrawn.
          if (other.committed) res.other.settled(undefined);
          else if (other.first) res.other.withdraw();
        }
        break;
      }
    }
    this.pump();
  }

  /** Sets how many credits `holder` would like to hold; they are granted as slots free up. */
  want(holder: CreditHolder, n: number): void {
    if (this.closing || this.cap === 0) return;
    let h = this.holders.get(holder);
    if (!h) {
      h = { held: 0, want: 0, revoking: false, waiting: false, waitNo: 0, wseq: 0 };
      this.holders.set(holder, h);
    }
    if (h.revoking) return;
    h.want = Math.max(0, Math.min(n, this.cap));
    this.grant();
  }

  /**
   * The holder has used every credit and has a send waiting for the next grant (`waits`), or no
   * longer has one (its send was cancelled). A waiting holder is a blocked sender: it counts as one,
   * and takes its turn with the plain senders in the order they began to wait: a slot that frees
   * while plain senders wait goes to whichever waited first (to a holder as a grant of one credit,
   * after which it waits again behind them); with none waiting, free slots go to waiting holders
   * first, in batches. Ignored while it still holds credit (a grant is on its way to it).
   *
   * `want` (a connection that holds no credit here asks for some, ServerHello.grantAsk): it
   * becomes a holder that waits, as one out of credit would. Without it, or while the channel is
   * closing, a connection that is no holder here (dropped when revocation found it holding nothing)
   * gets undefined: it should send as one that may block.
   *
   * Otherwise returns the number of the wait that goes on (0: none, granted at once or not
   * waiting), to pass to holderStuck a short while later.
   */
  holderWaits(holder: CreditHolder, waits: boolean, want?: number): number | undefined {
    let h = this.holders.get(holder);
    if (!h) {
      if (!waits) return 0;
      if (want === undefined || this.closing || this.cap === 0) return undefined;
      h = { held: 0, want: Math.max(1, Math.min(want, this.cap)), revoking: false, waiting: false, waitNo: 0, wseq: 0 };
      this.holders.set(holder, h);
    }
    if (h.revoking) return 0;
    const was = h.waiting;
    h.waiting = waits && h.held === 0;
    if (!h.waiting) return 0;
    if (!was) {
      h.waitNo++;
      h.wseq = ++this.seq;
      this.queueWait({ holder, h, seq: h.wseq });
    }
    this.pump();
    return h.waiting ? h.waitNo : 0;
  }

  /**
   * The holder's wait `waitNo` (holderWaits) has lasted a while. If it goes on while other holders
   * keep slots reserved that they have not used, the buffer has room this sender cannot have:
   * as for a sender waiting at the channel, every holder is revoked (an idle holder must not keep
   * a busy one waiting, as Go's send on a channel with room does not wait).
   */
  holderStuck(holder: CreditHolder, waitNo: number): void {
    const h = this.holders.get(holder);
    if (!h?.waiting || h.revoking || h.waitNo !== waitNo || this.reserved === 0) return;
    this.revokeAll();
  }

  /**
   * The holder gives back its unused credits, answering a revoke (frames are ordered, so every send
   * it spent a credit on has arrived); it holds none afterwards.
   */
  release(holder: CreditHolder): void {
    const h = this.holders.get(holder);
    if (!h) return;
    this.reserved -= h.held;
    this.holders.delete(holder);
    this.maybeSettle();
    this.pump();
  }

  /** The holder is gone (its connection dropped): its reservations end. */
  dropHolder(holder: CreditHolder): void {
    this.release(holder);
  }

  stat(): ChanStat {
    let waitingReceivers = this.trecv.length;
    for (const w of this.receivers) waitingReceivers += w.n;
    return {
      cap: this.cap,
      len: this.buf.length,
      closed: this.closing,
      aborted: this.aborted,
      numSend: this.numSend,
      numRecv: this.numRecv,
      waitingSenders: this.liveSenders + this.tsend.length + this.waitingHolders(),
      waitingReceivers,
    };
  }

  private waitingHolders(): number {
    let n = 0;
    for (const h of this.holders.values()) if (h.waiting) n++;
    return n;
  }

  private queueWait(w: HolderWait): void {
    // Entries of waits that ended stay until they reach the head; sweep them if they pile up.
    if (this.waits.length >= 2 * this.holders.size + 16) this.waits.removeWhere((e) => !this.isWaiting(e));
    this.waits.push(w);
  }

  private isWaiting(e: HolderWait): boolean {
    return e.h.waiting && e.h.wseq === e.seq && this.holders.get(e.holder) === e.h;
  }

  /** The holder that has waited longest for credit, dropping entries of waits that ended. */
  private headWait(): HolderWait | undefined {
    let e = this.waits.peek();
    while (e && !this.isWaiting(e)) {
      this.waits.shift();
      e = this.waits.peek();
    }
    return e;
  }

  /** Grants the longest-waiting holder up to n credits (it no longer waits). */
  private grantWaiting(n: number): number {
    const e = this.waits.shift() as HolderWait;
    const g = Math.min(n, Math.max(1, e.h.want - e.h.held));
    e.h.held += g;
    e.h.waiting = false;
    this.reserved += g;
    e.holder.grant(g, true);
    return g;
  }

  /**
   * A close voids what select send cases reserved: their sends can no longer happen. A send case
   * committed to a pair fails with `err`; the others wait again (and are offered the failure).
   */
  private voidSends(err: CircuitError): void {
    for (const [c, res] of [...this.reservations]) {
      if (res.kind === "sender") {
        // A blocked plain sender held by a select recv case fails like every blocked sender.
        res.s.w.done(err);
      } else if (res.kind === "slot") {
        this.selSlots--;
      } else if (res.kind === "receiver") {
        this.queueReceiver({ r: res.r, n: 1, seq: res.rseq }, true);
      } else if (res.kind === "pair") {
        const send = c.op === "send" ? c : res.other;
        const recv = c.op === "send" ? res.other : c;
        const sres = this.reservations.get(send);
        const rres = this.reservations.get(recv);
        this.reservations.delete(send);
        this.reservations.delete(recv);
        if (sres?.kind === "pair" && sres.committed) send.settled({ error: err });
        else if (sres) {
          this.requeueCase(send, sres.seq);
          send.withdraw();
        }
        if (rres?.kind === "pair" && rres.committed) {
          this.requeueCase(recv, rres.seq);
          recv.settled(undefined);
        } else if (rres) {
          this.requeueCase(recv, rres.seq);
          recv.withdraw();
        }
        continue;
      } else continue;
      this.reservations.delete(c);
      this.requeueCase(c, res.seq);
      c.withdraw();
    }
  }

  /** Puts a case whose reservation ended back in its queue, at its original place. */
  private requeueCase(c: SelectCase<V>, seq: number): void {
    const q = c.op === "recv" ? this.trecv : this.tsend;
    const rest = q.drain();
    let placed = false;
    for (const t of rest) {
      if (!placed && t.seq > seq) {
        q.push({ c, seq });
        placed = true;
      }
      q.push(t);
    }
    if (!placed) q.push({ c, seq });
  }

  private reserve(c: SelectCase<V>, res: Reservation<V>, o: Offer<V>): void {
    this.reservations.set(c, res);
    c.offer(o);
  }

  /** The earliest waiting receive: a plain receiver's credit or a select recv case. */
  private firstReceiver(): PlainRecv<V> | Tentative<V> | undefined {
    const p = this.headReceiver();
    const t = this.trecv.peek();
    if (!p) return t;
    if (!t) return p;
    return p.seq < t.seq ? p : t;
  }

  private firstSender(): PlainSend<V> | Tentative<V> | undefined {
    const p = this.headSender();
    const t = this.tsend.peek();
    if (!p) return t;
    if (!t) return p;
    return p.seq < t.seq ? p : t;
  }

  /**
   * The earliest sender and, for it, the earliest receive it may meet: anything but a case of its
   * own select (a select never meets itself). Only the heads of the plain queues can match, and
   * select cases are few, so the search is short.
   */
  private findMatch(): [PlainSend<V> | Tentative<V>, PlainRecv<V> | Tentative<V>] | undefined {
    if (this.tsend.length === 0 && this.trecv.length === 0) {
      // No select cases: only the heads of the plain queues can meet.
      const ps = this.headSender();
      const pr = ps && this.headReceiver();
      return pr ? [ps, pr] : undefined;
    }
    const senders: (PlainSend<V> | Tentative<V>)[] = [...this.tsend];
    const ps = this.headSender();
    if (ps) senders.push(ps);
    senders.sort((a, b) => a.seq - b.seq);
    const pr = this.headReceiver();
    for (const S of senders) {
      const sel = "c" in S ? S.c.selector : -1;
      let best: PlainRecv<V> | Tentative<V> | undefined = pr;
      for (const t of this.trecv) {
        if (best && best.seq < t.seq) break;
        if (t.c.selector !== sel) {
          best = t;
          break;
        }
      }
      if (best) return [S, best];
    }
    return undefined;
  }

  private queueSender(s: PlainSend<V>, atHead: boolean): void {
    s.dead = false;
    if (atHead) this.senders.unshift(s);
    else this.senders.push(s);
    this.sendIndex.set(s.w, s);
    this.liveSenders++;
  }

  /** The head plain sender, dropping cancelled ones. */
  private headSender(): PlainSend<V> | undefined {
    let h = this.senders.peek();
    while (h?.dead) {
      this.senders.shift();
      h = this.senders.peek();
    }
    return h;
  }

  private shiftSender(): PlainSend<V> {
    const s = this.headSender() as PlainSend<V>;
    this.senders.shift();
    this.sendIndex.delete(s.w);
    this.liveSenders--;
    return s;
  }

  private drainSenders(): PlainSend<V>[] {
    const out = this.senders.drain().filter((s) => !s.dead);
    this.sendIndex.clear();
    this.liveSenders = 0;
    return out;
  }

  private queueReceiver(w: PlainRecv<V>, atHead: boolean): void {
    if (atHead) this.receivers.unshift(w);
    else this.receivers.push(w);
    let set = this.recvIndex.get(w.r);
    if (!set) {
      set = new Set();
      this.recvIndex.set(w.r, set);
    }
    set.add(w);
  }

  private unindexReceiver(w: PlainRecv<V>): void {
    const set = this.recvIndex.get(w.r);
    set?.delete(w);
    if (set?.size === 0) this.recvIndex.delete(w.r);
  }

  /** The head plain receive, dropping cancelled entries. */
  private headReceiver(): PlainRecv<V> | undefined {
    let h = this.receivers.peek();
    while (h && h.n === 0) {
      this.receivers.shift();
      this.unindexReceiver(h);
      h = this.receivers.peek();
    }
    return h;
  }

  /** Takes one credit from the head plain receiver. */
  private takeCredit(): PlainRecv<V> {
    const w = this.headReceiver() as PlainRecv<V>;
    if (--w.n === 0) {
      this.receivers.shift();
      this.unindexReceiver(w);
    }
    return w;
  }

  /** The matching engine: runs until nothing more can happen. */
  private pump(): void {
    for (let progressed = true; progressed; ) {
      progressed = false;
      // Buffered values go to the earliest receive (with no select case waiting, the head plain
      // one). Each value is accounted for before take(), which may re-enter the channel.
      while (this.buf.available > 0 && this.trecv.length === 0) {
        const w = this.headReceiver();
        if (!w) break;
        if (--w.n === 0) {
          this.receivers.shift();
          this.unindexReceiver(w);
        }
        this.numRecv++;
        w.r.take(this.buf.shift() as V);
        progressed = true;
      }
      while (this.buf.available > 0) {
        const R = this.firstReceiver();
        if (!R) break;
        const v = this.buf.shift() as V;
        if ("r" in R) {
          this.takeCredit();
          this.numRecv++;
          R.r.take(v);
        } else {
          this.trecv.shift();
          this.bufHeld++;
          this.reserve(R.c, { kind: "buf", value: v, seq: R.seq }, { value: v });
        }
        progressed = true;
      }
      // Senders fill free slots (a select send case reserves one).
      while (!this.closing && this.buf.length + this.bufHeld + this.reserved + this.selSlots < this.cap) {
        const S = this.firstSender();
        if (!S) break;
        const W = this.headWait();
        if (W && W.seq < S.seq) {
          // A holder waited before this sender: the slot is its (one credit; it waits again after).
          this.grantWaiting(1);
          progressed = true;
          continue;
        }
        if ("w" in S) {
          this.shiftSender();
          this.buf.push(S.w.value);
          this.numSend++;
          S.w.done();
        } else {
          this.tsend.shift();
          this.selSlots++;
          this.reserve(S.c, { kind: "slot", seq: S.seq }, {});
        }
        progressed = true;
      }
      // No room in the buffer: senders hand over directly to receives (the unbuffered case).
      while (this.handoff && this.buf.length === 0 && !this.closing) {
        const m = this.findMatch();
        if (!m) break;
        const [S, R] = m;
        if ("w" in S && "r" in R) {
          this.shiftSender();
          this.takeCredit();
          this.numSend++;
          this.numRecv++;
          R.r.take(S.w.value);
          S.w.done();
        } else if ("w" in S && "c" in R) {
          this.shiftSender();
          this.trecv.removeWhere((t) => t === R);
          this.reserve(R.c, { kind: "sender", s: S, seq: R.seq }, { value: S.w.value });
        } else if ("c" in S && "r" in R) {
          this.tsend.removeWhere((t) => t === S);
          const rseq = R.seq;
          this.takeCredit();
          this.reserve(S.c, { kind: "receiver", r: R.r, seq: S.seq, rseq }, {});
        } else if ("c" in S && "c" in R) {
          this.tsend.removeWhere((t) => t === S);
          this.trecv.removeWhere((t) => t === R);
          const [first, second] = S.c.selector < R.c.selector ? [S, R] : [R, S];
          this.reservations.set(second.c, {
            kind: "pair",
            other: first.c,
            first: false,
            committed: false,
            seq: second.seq,
          });
          this.reserve(
            first.c,
            { kind: "pair", other: second.c, first: true, committed: false, seq: first.seq },
            first.c.op === "recv" ? { value: second.c.value as V, pair: true } : { pair: true },
          );
        }
        progressed = true;
      }
    }
    // Closed (or scrubbed): receives on an empty channel end; select cases get a final offer.
    if ((this.closed || this.aborted) && this.buf.length === 0 && this.bufHeld === 0) {
      const err = this.aborted ? new ChannelAborted() : new ChannelClosed();
      if (this.headReceiver()) this.endReceivers(err);
      for (const t of this.trecv.drain()) {
        if (this.aborted) this.reserve(t.c, { kind: "error", error: err, seq: t.seq }, { error: err });
        else this.reserve(t.c, { kind: "closed", seq: t.seq }, { closed: true });
      }
    }
    if (this.closing) {
      const err = this.aborted ? new ChannelAborted() : new ChannelClosed("send on closed channel");
      for (const t of this.tsend.drain()) this.reserve(t.c, { kind: "error", error: err, seq: t.seq }, { error: err });
    }
    if (this.liveSenders + this.tsend.length > 0) this.revokeAll();
    else this.grant();
  }

  /** Tops up credit holders from the free slots, in batches: the ones waiting for credit first. */
  private grant(): void {
    if (this.closing || this.holders.size === 0 || this.liveSenders + this.tsend.length > 0) return;
    let free = this.cap - this.buf.length - this.reserved - this.selSlots;
    if (free <= 0) return;
    // Waiting holders first, in the order they began to wait, as blocked senders are served.
    while (free > 0 && this.headWait()) free -= this.grantWaiting(free);
    // The others take turns at being topped up first: with several senders and few free slots, the
    // first in line would otherwise take every slot, and the others would wait at the channel.
    const n = this.holders.size;
    const first = n > 1 ? this.grantTurn++ % n : 0;
    // Pass 0 takes the holders from `first` on, pass 1 those before it.
    for (let pass = 0; pass < 2 && free > 0; pass++) {
      let i = 0;
      for (const [holder, h] of this.holders) {
        if (pass === 0 ? i++ < first : i++ >= first) continue;
        if (h.waiting || h.revoking || h.want <= h.held) continue;
        // Top up in batches of at least half the want, not a frame per freed slot: with several
        // senders taking turns, smaller batches ran each one dry more often.
        if (h.want - h.held < Math.max(1, h.want >> 1)) continue;
        const g = Math.min(free, h.want - h.held);
        h.held += g;
        this.reserved += g;
        free -= g;
        holder.grant(g, false);
        if (free === 0) break;
      }
    }
  }

  /** Ends every waiting receiver once, even one queued in several places. */
  private endReceivers(err: CircuitError): void {
    const ended = new Set<Receiver<V>>();
    for (const w of this.receivers.drain()) if (w.n > 0) ended.add(w.r);
    this.recvIndex.clear();
    for (const r of ended) r.end(err);
  }

  /**
   * Takes every reservation back: a sender waits at the channel (Go's send would not wait for slots
   * nobody uses), or with `final` the channel is closing. A holder holding nothing is dropped, or if
   * it waits for credit keeps waiting in its turn (it reserves nothing); with `final` it is revoked
   * too, so that its send goes on as one that may block, and fails.
   */
  private revokeAll(final = false): void {
    for (const [holder, h] of this.holders) {
      if (h.revoking) continue;
      if (h.held === 0 && !(h.waiting && final)) {
        if (!h.waiting) this.holders.delete(holder);
        continue;
      }
      h.revoking = true;
      h.waiting = false;
      h.want = 0;
      holder.revoke();
    }
  }

  private maybeSettle(): void {
    if (!this.closing) return;
    for (const h of this.holders.values()) if (h.revoking) return;
    if (!this.closed) {
      this.closed = true;
      this.pump();
    }
    for (const f of this.settledCbs.splice(0)) f();
  }
}
