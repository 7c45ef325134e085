// The channel: Go's channel semantics as a pure state machine. It does no I/O; it takes operations
// and answers through the callbacks of the waiters it is given. Callbacks must not call back into
// the same channel synchronously.
//
// Credits: a credit holder (one client connection) may hold reserved buffer slots so that its sends
// complete without a round trip. A reserved slot counts as occupied for every other sender, so to
// keep Go's meaning the channel takes reservations back (revoke) as soon as a sender would block,
// and close/scrub complete only after every holder has given its credits back: from then on no
// credited send can be in flight.

import { ChannelAborted, ChannelClosed, type CircuitError } from "../errors.js";
import { Deque } from "../util/deque.js";

export const MAX_CAP = 1_000_000;

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
  grant(n: number): void;
  /** Asks the holder to give back its unused credits with `release`. */
  revoke(): void;
}

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

interface Holding {
  held: number;
  want: number;
  revoking: boolean;
}

interface Waiting<V> {
  r: Receiver<V>;
  n: number;
}

export class Channel<V> {
  readonly cap: number;
  private readonly buf = new Deque<V>();
  private readonly senders = new Deque<SendWaiter<V>>();
  private readonly receivers = new Deque<Waiting<V>>();
  private readonly holders = new Map<CreditHolder, Holding>();
  private reserved = 0;
  private closing = false;
  private closed = false;
  private aborted = false;
  private numSend = 0;
  private numRecv = 0;
  private readonly settled: (() => void)[] = [];

  constructor(cap: number) {
    if (!Number.isInteger(cap) || cap < 0 || cap > MAX_CAP) {
      throw new RangeError(`channel capacity must be an integer from 0 to ${MAX_CAP}, got ${cap}`);
    }
    this.cap = cap;
  }

  /** True once scrubbed. */
  get isAborted(): boolean {
    return this.aborted;
  }

  send(w: SendWaiter<V>): void {
    if (this.aborted) return w.done(new ChannelAborted());
    if (this.closing) return w.done(new ChannelClosed("send on closed channel"));
    if (this.senders.length === 0 && this.handToReceiver(w.value)) {
      this.numSend++;
      w.done();
      this.pump();
      return;
    }
    if (this.senders.length === 0 && this.buf.length + this.reserved < this.cap) {
      this.buf.push(w.value);
      this.numSend++;
      w.done();
      return;
    }
    this.senders.push(w);
    this.revokeAll();
  }

  /** Withdraws a blocked send; false if it already completed (or failed). */
  cancelSend(w: SendWaiter<V>): boolean {
    const removed = this.senders.removeWhere((x) => x === w);
    return removed.length > 0;
  }

  /**
   * A send into a slot reserved for `holder`. It completed when the holder spent the credit, so it
   * is accepted even if a close has begun since. Returns false if the holder had no credit.
   */
  sendCredited(holder: CreditHolder, value: V): boolean {
    const h = this.holders.get(holder);
    if (!h || h.held <= 0) return false;
    h.held--;
    this.reserved--;
    if (this.aborted) return true;
    this.numSend++;
    if (!this.handToReceiver(value)) this.buf.push(value);
    this.pump();
    return true;
  }

  /** Adds n blocked receives for r (FIFO behind every receive already waiting). */
  recv(r: Receiver<V>, n: number): void {
    if (this.aborted) return r.end(new ChannelAborted());
    while (n > 0 && this.buf.length > 0) {
      const v = this.buf.shift() as V;
      this.numRecv++;
      n--;
      r.take(v);
      this.refill();
    }
    while (n > 0 && this.senders.length > 0) {
      // Unbuffered (or over-full) channel: take straight from a blocked sender.
      const w = this.senders.shift() as SendWaiter<V>;
      this.numSend++;
      this.numRecv++;
      n--;
      r.take(w.value);
      w.done();
    }
    if (n > 0) {
      if (this.closed) {
        r.end(new ChannelClosed());
        this.forgetReceiver(r);
      } else {
        const last = this.receivers.peekLast();
        if (last && last.r === r) last.n += n;
        else this.receivers.push({ r, n });
      }
    }
    this.pump();
  }

  /**
   * Puts a value in without ever blocking (for subscriptions): to a waiting receiver, else into the
   * buffer, dropping the oldest value when it is full. Returns how many values were dropped.
   */
  offer(value: V): number {
    if (this.closing) return 1;
    this.numSend++;
    if (this.handToReceiver(value)) return 0;
    let dropped = 0;
    if (this.cap === 0) return 1;
    if (this.buf.length >= this.cap) {
      this.buf.shift();
      dropped = 1;
    }
    this.buf.push(value);
    return dropped;
  }

  /** Withdraws all of r's waiting receives; returns how many there were. */
  cancelRecv(r: Receiver<V>): number {
    let n = 0;
    for (const w of this.receivers.removeWhere((x) => x.r === r)) n += w.n;
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
    while (this.buf.length > 0 && this.receivers.length > 0) {
      this.handToReceiver(this.buf.shift() as V);
    }
    this.pump();
  }

  /**
   * Starts closing. Blocked senders fail now; `settled` is called once no credited send can still
   * arrive, which is when the close has happened. Throws ChannelClosed for a second close.
   */
  close(settled: () => void): void {
    if (this.aborted) throw new ChannelAborted();
    if (this.closing) throw new ChannelClosed("close of closed channel");
    this.closing = true;
    for (const w of this.senders.drain()) w.done(new ChannelClosed("send on closed channel"));
    this.settled.push(settled);
    this.revokeAll();
    this.maybeSettle();
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
      for (const w of this.senders.drain()) w.done(err);
      this.endReceivers(err);
      this.buf.drain();
      this.revokeAll();
    }
    this.settled.push(settled);
    this.maybeSettle();
  }

  /** Sets how many credits `holder` would like to hold; they are granted as slots free up. */
  want(holder: CreditHolder, n: number): void {
    if (this.closing || this.cap === 0) return;
    let h = this.holders.get(holder);
    if (!h) {
      h = { held: 0, want: 0, revoking: false };
      this.holders.set(holder, h);
    }
    if (h.revoking) return;
    h.want = Math.max(0, Math.min(n, this.cap));
    this.pump();
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
    let waitingReceivers = 0;
    for (const w of this.receivers) waitingReceivers += w.n;
    return {
      cap: this.cap,
      len: this.buf.length,
      closed: this.closing,
      aborted: this.aborted,
      numSend: this.numSend,
      numRecv: this.numRecv,
      waitingSenders: this.senders.length,
      waitingReceivers,
    };
  }

  /** Gives v to the longest-waiting receive, if any. */
  private handToReceiver(v: V): boolean {
    const w = this.receivers.peek();
    if (!w) return false;
    if (--w.n === 0) this.receivers.shift();
    this.numRecv++;
    w.r.take(v);
    return true;
  }

  /** Ends every waiting receiver once, even one queued in several places. */
  private endReceivers(err: CircuitError): void {
    for (const r of new Set(Array.from(this.receivers.drain(), (w) => w.r))) r.end(err);
  }

  private forgetReceiver(r: Receiver<V>): void {
    this.receivers.removeWhere((x) => x.r === r);
  }

  /** Moves blocked senders into free buffer slots. */
  private refill(): void {
    while (this.senders.length > 0 && this.buf.length + this.reserved < this.cap) {
      const w = this.senders.shift() as SendWaiter<V>;
      this.buf.push(w.value);
      this.numSend++;
      w.done();
    }
  }

  private pump(): void {
    this.refill();
    if (this.closing || this.senders.length > 0) return;
    let free = this.cap - this.buf.length - this.reserved;
    if (free <= 0) return;
    for (const [holder, h] of this.holders) {
      if (h.revoking || h.want <= h.held) continue;
      // Top up in batches of at least a quarter of the want, not a frame per freed slot.
      if (h.want - h.held < Math.max(1, h.want >> 2)) continue;
      const g = Math.min(free, h.want - h.held);
      h.held += g;
      this.reserved += g;
      free -= g;
      holder.grant(g);
      if (free === 0) break;
    }
  }

  private revokeAll(): void {
    for (const [holder, h] of this.holders) {
      if (h.revoking) continue;
      if (h.held === 0) {
        this.holders.delete(holder);
        continue;
      }
      h.revoking = true;
      h.want = 0;
      holder.revoke();
    }
  }

  private maybeSettle(): void {
    if (!this.closing) return;
    for (const h of this.holders.values()) if (h.revoking) return;
    if (!this.closed) {
      this.closed = true;
      if (this.buf.length === 0) {
        const err = this.aborted ? new ChannelAborted() : new ChannelClosed();
        this.endReceivers(err);
      }
    }
    for (const f of this.settled.splice(0)) f();
  }
}
