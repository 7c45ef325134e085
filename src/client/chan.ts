// A handle on a channel element anywhere in the circuit.

import { Readable, type Writable } from "node:stream";
import { ChannelClosed, type CircuitError, ProtocolError, WrongKind } from "../errors.js";
import { afterMicrotasks } from "../util/microtask.js";
import { decode } from "../wire/protocol.js";
import type { ChanStat } from "../wire/shapes.js";
import type { ChanState, Connection, Flush } from "./connection.js";
import type { SelectCase } from "./select.js";

export type { ChanStat };

export interface OpOptions {
  /** Aborting it withdraws the operation: it rejects with `signal.reason` and has not happened. */
  signal?: AbortSignal;
}

export interface IterateOptions extends OpOptions {
  /**
   * How many receives to keep outstanding (default 1). N outstanding receives are N blocked
   * receivers on the channel: values they take leave the channel's buffer at once. At most 65,536,
   * and at most the server's `--max-credits` (a larger prefetch is held to it).
   */
  prefetch?: number;
}

/** The prefetch `opts` ask for (default 1); a RangeError unless an integer from 1 to 65,536. */
function prefetchOf(opts: IterateOptions | undefined): number {
  const prefetch = opts?.prefetch ?? 1;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65536) {
    throw new RangeError("prefetch must be an integer from 1 to 65536");
  }
  return prefetch;
}

/** The value a received frame holds in frame[start, end); a ProtocolError if it is not MessagePack. */
function decodeValue<T>(frame: Buffer, start: number, end: number): T {
  try {
    return decode(frame, start, end) as T;
  } catch (err) {
    throw new ProtocolError("received a value that is not valid MessagePack", { cause: err });
  }
}

/** The writable side of a stream message; `sent` settles like a send of the message would. */
export type MessageWriter = Writable & { sent: Promise<void> };

/**
 * A channel with Go's semantics across the circuit. Values are anything MessagePack encodes;
 * the hosting server stores and forwards them without decoding.
 */
export class Chan<T = unknown> implements AsyncIterable<T>, AsyncDisposable {
  readonly kind = "chan";
  /** Iterations (iterate, consume) started through this handle that have not ended. */
  private readonly iterations = new Set<{ return(): Promise<unknown> }>();

  /** @internal */
  constructor(
    private readonly c: Connection,
    /** The anchor path of this channel. */
    readonly path: string,
    private readonly st: ChanState,
  ) {}

  /** The buffer capacity (0: unbuffered). */
  get cap(): number {
    return this.st.cap;
  }

  /**
   * Sends a value. Resolves when a receiver has taken it (unbuffered) or it is in the buffer;
   * until then it waits. Fails with ChannelClosed, ChannelAborted, MessageTooLarge (before
   * anything is sent) or ServerGone. Sends into a buffer's reserved slots (not on a durable
   * channel) that leave this process in one write may return the same promise: it resolves once
   * the server has stored the last of them, and rejects if any of them fails.
   */
  send(value: T, opts?: OpOptions): Promise<void> {
    return this.c.sendValue(this.st, value, opts?.signal);
  }

  /**
   * Receives the next value, waiting while the channel is empty and open. Fails with
   * ChannelClosed once it is closed and drained. A stream message arrives as a Readable.
   */
  recv(opts?: OpOptions): Promise<T> {
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      let rid = 0;
      const onAbort = () => {
        // Whatever the server handed us meanwhile goes back: the receive did not happen.
        this.c.closeRecv(rid, 0);
        reject(signal?.reason);
      };
      const settle = () => signal?.removeEventListener("abort", onAbort);
      rid = this.c.openRecv(this.st.handle, 1, {
        val: (frame, start, end) => {
          settle();
          this.c.closeRecv(rid, 1);
          try {
            resolve(decodeValue<T>(frame, start, end));
          } catch (err) {
            reject(err);
          }
        },
        stream: (r) => {
          settle();
          this.c.closeRecv(rid, 1);
          resolve(r as T);
        },
        end: (err) => {
          settle();
          reject(err ?? new ChannelClosed());
        },
        // Nothing arrived yet (else it would have resolved): ask again on the new connection.
        resume: () => 1,
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A receive, as a case of `select`. */
  recvCase(): SelectCase<T, "recv"> {
    return { conn: this.c, handle: this.st.handle, op: "recv" };
  }

  /** A send of `value`, as a case of `select`; encoding errors (MessageTooLarge) throw here. */
  sendCase(value: T): SelectCase<T, "send"> {
    return { conn: this.c, handle: this.st.handle, op: "send", bytes: this.c.encodeValue(value) };
  }

  /** Closes the channel: later sends fail, buffered values stay receivable. */
  async close(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "close", handle: this.st.handle }, opts?.signal);
  }

  async stat(opts?: OpOptions): Promise<ChanStat> {
    return (await this.c.request({ op: "stat", handle: this.st.handle }, opts?.signal)) as ChanStat;
  }

  /** Aborts the channel: blocked operations fail with ChannelAborted, the element is removed. */
  async scrub(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "scrub", handle: this.st.handle }, opts?.signal);
  }

  /** Receives values until the channel is closed and drained. */
  iterate(opts?: IterateOptions): AsyncIterableIterator<T> {
    const prefetch = prefetchOf(opts);
    const it = new RecvIterator<T>(this.c, this.st, prefetch, opts?.signal, () => this.iterations.delete(it));
    this.iterations.add(it);
    return it;
  }

  /**
   * Calls `fn` with each value, in the channel's order, until the channel is closed and drained;
   * resolves then. A value counts as taken once `fn` has been called with it. While a promise `fn`
   * returned is pending, the next values wait (prefetched, at most `prefetch`) and `fn` is not
   * called again. If `fn` throws or its promise rejects, or `signal` aborts, receiving stops and
   * the promise rejects with that error once the values prefetched and not handed to `fn` are back
   * at the head of the channel. Each value costs no promise when `fn` returns none (README,
   * Library).
   */
  consume(fn: (value: T) => unknown, opts?: IterateOptions): Promise<void> {
    if (typeof fn !== "function") return Promise.reject(new TypeError("consume needs a function"));
    let prefetch: number;
    try {
      prefetch = prefetchOf(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    if (opts?.signal?.aborted) return Promise.reject(opts.signal.reason);
    const each: RecvConsume<T> = new RecvConsume<T>(this.c, this.st, prefetch, fn, opts?.signal, () =>
      this.iterations.delete(each),
    );
    this.iterations.add(each);
    return each.done;
  }

  /**
   * `await using ch = await anchor.openChan(16)`: at the end of the scope, iterations started
   * through this handle end as a `break` would end them (values prefetched and not handed out go
   * back to the head of the channel). The channel itself stays as it is, for the other processes
   * that use it: close it with `close()`, remove it with `scrub()`.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.iterations].map((it) => it.return()));
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.iterate();
  }

  /**
   * Sends one message as a byte stream of any length. Write to the returned Writable and end it;
   * the receiver reads the same bytes, or an error (StreamBroken) if the writer is destroyed or
   * dies first — never a short message. `sent` settles as a send of the message would.
   */
  sendStream(opts?: OpOptions): MessageWriter {
    const { writer, sent } = this.c.sendStream(this.st.handle, opts?.signal);
    sent.catch(() => {});
    return Object.assign(writer, { sent });
  }

  /**
   * Receives the next message as a Readable. A stream message streams; a plain byte value arrives
   * as a one-chunk stream; any other value fails with WrongKind (and has been received).
   */
  async recvStream(opts?: OpOptions): Promise<Readable> {
    const v: unknown = await this.recv(opts);
    if (v instanceof Readable) return v;
    if (v instanceof Uint8Array) return Readable.from([Buffer.from(v)], { objectMode: false });
    throw new WrongKind("the message received is not a byte stream or byte value");
  }
}

/**
 * Values that arrived and were not handed out yet, each as a range of its frame (a stream message
 * as a Readable), kept in parallel rings so that an arrival allocates nothing.
 */
class Inbox {
  /** `tally.values` counts the items of every inbox sharing it (one connection's receive loops). */
  constructor(private readonly tally: { values: number }) {}

  private items: (Buffer | Readable | undefined)[] = new Array(64);
  private starts = new Int32Array(64);
  private ends = new Int32Array(64);
  private head = 0;
  length = 0;
  /** The range of the item shift() returned last. */
  start = 0;
  end = 0;

  push(item: Buffer | Readable, start: number, end: number): void {
    if (this.length === this.items.length) this.grow();
    const i = (this.head + this.length) & (this.items.length - 1);
    this.items[i] = item;
    this.starts[i] = start;
    this.ends[i] = end;
    this.length++;
    this.tally.values++;
  }

  /** Removes the head; its item is returned and its range is left in `start`/`end`. */
  shift(): Buffer | Readable {
    const i = this.head;
    const item = this.items[i] as Buffer | Readable;
    this.items[i] = undefined;
    this.start = this.starts[i] as number;
    this.end = this.ends[i] as number;
    this.head = (i + 1) & (this.items.length - 1);
    this.length--;
    this.tally.values--;
    return item;
  }

  /** Empties the inbox, destroying the stream messages in it. */
  clear(): void {
    while (this.length > 0) {
      const v = this.shift();
      if (v instanceof Readable) v.destroy();
    }
  }

  private grow(): void {
    const size = this.items.length * 2;
    const items: (Buffer | Readable | undefined)[] = new Array(size);
    const starts = new Int32Array(size);
    const ends = new Int32Array(size);
    for (let k = 0; k < this.length; k++) {
      const i = (this.head + k) & (this.items.length - 1);
      items[k] = this.items[i];
      starts[k] = this.starts[i] as number;
      ends[k] = this.ends[i] as number;
    }
    this.items = items;
    this.starts = starts;
    this.ends = ends;
    this.head = 0;
  }
}

/** What a receive loop (RecvIterator, RecvConsume) does with what its receiver gets. */
interface Receiving {
  /** A value (its bytes are frame[start, end)) or a stream message, in the channel's order. */
  arrive(v: Buffer | Readable, start: number, end: number): void;
  /** The channel ended (undefined or ChannelClosed: closed and drained). */
  ended(err?: CircuitError): void;
  /**
   * The connection was re-established and the old session put every value it had handed us and
   * we had not acknowledged back in the channel: drop the ones not handed out yet (they come
   * again); one handed out and not yet acknowledged comes again too: it is seen twice (the
   * documented window).
   */
  reset(): void;
}

/**
 * Opens a receiver keeping `prefetch` receives outstanding, held to the server's --max-credits
 * (here, and again on a new connection, whose server may say otherwise); returns its id and the
 * credit it hands back at a time (half the window).
 */
function openReceiver(c: Connection, st: ChanState, prefetch: number, r: Receiving): [number, number] {
  const window = () => Math.min(prefetch, c.creditBound);
  const rid = c.openRecv(st.handle, window(), {
    val: r.arrive,
    stream: (m) => r.arrive(m, 0, 0),
    end: (err) => r.ended(err),
    resume: () => {
      r.reset();
      return window();
    },
  });
  return [rid, Math.max(1, window() >> 1)];
}

class RecvIterator<T> implements AsyncIterableIterator<T> {
  private readonly queue: Inbox;
  private ended: CircuitError | undefined | null = null;
  private finished = false;
  /** Values handed to the caller and not yet acknowledged to the server. */
  private consumed = 0;
  private given = false;
  private readonly rid: number;
  private readonly batch: number;
  private waiter: { resolve(r: IteratorResult<T>): void; reject(e: unknown): void } | undefined;

  constructor(
    private readonly c: Connection,
    private readonly st: ChanState,
    prefetch: number,
    private readonly signal?: AbortSignal,
    private readonly onFinish?: () => void,
  ) {
    this.queue = new Inbox(c.inboxes);
    [this.rid, this.batch] = openReceiver(c, st, prefetch, {
      arrive: (v, start, end) => this.arrive(v, start, end),
      ended: (err) => {
        this.ended = err;
        this.wake();
      },
      reset: () => {
        this.queue.clear();
        this.consumed = 0;
        this.given = false;
      },
    });
    signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.finished) return Promise.resolve({ value: undefined, done: true });
    if (this.signal?.aborted) {
      this.finish();
      return Promise.reject(this.signal.reason);
    }
    if (this.given) {
      this.given = false;
      this.consumed++;
    }
    if (this.consumed > 0 && this.ended === null && (this.consumed >= this.batch || this.queue.length === 0)) {
      // Credit goes back when half the prefetch has been taken, or when the loop has run dry. At
      // half, with values still queued: at once if the connection's loops have more values left
      // to go through than this gives back (the server should not wait for them to be gone
      // through), else with the write of the turn's end, or of the loop running dry if that comes
      // first (a loop taking a read's values on microtasks: one write a read, not two).
      const flush: Flush = this.queue.length === 0 ? "soon" : this.c.inboxes.values > this.consumed ? "now" : "later";
      this.c.moreRecv(this.rid, this.st.handle, this.consumed, this.consumed, flush);
      this.consumed = 0;
    }
    if (this.queue.length > 0) return Promise.resolve(this.take());
    if (this.ended !== null) return this.end();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Leaving the loop early: resolves once unconsumed values are back in the channel. */
  async return(): Promise<IteratorResult<T>> {
    if (this.given) {
      this.given = false;
      this.consumed++;
    }
    if (!this.finished) {
      this.finished = true;
      this.onFinish?.();
      this.signal?.removeEventListener("abort", this.onAbort);
      this.queue.clear();
      if (this.ended === null) await this.c.closeRecvAndWait(this.rid, this.consumed);
      else this.c.closeRecv(this.rid, this.consumed);
    }
    return { value: undefined, done: true };
  }

  private take(): IteratorResult<T> {
    const q = this.queue;
    const v = q.shift();
    this.given = true;
    if (v instanceof Readable) return { value: v as T, done: false };
    return { value: decodeValue<T>(v, q.start, q.end), done: false };
  }

  private end(): Promise<IteratorResult<T>> {
    const err = this.ended;
    this.finish();
    if (!err || err instanceof ChannelClosed) return Promise.resolve({ value: undefined, done: true });
    return Promise.reject(err);
  }

  private arrive(v: Buffer | Readable, start: number, end: number): void {
    this.queue.push(v, start, end);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if (this.queue.length > 0) {
      try {
        w.resolve(this.take());
      } catch (err) {
        w.reject(err);
      }
    } else this.end().then(w.resolve, w.reject);
  }

  private readonly onAbort = (): void => {
    const w = this.waiter;
    this.waiter = undefined;
    this.finish();
    w?.reject(this.signal?.reason);
  };

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onFinish?.();
    this.signal?.removeEventListener("abort", this.onAbort);
    // Values that arrived but were never handed out go back to the channel.
    this.c.closeRecv(this.rid, this.consumed);
    this.queue.clear();
  }
}

/**
 * Chan.consume: hands each value to the caller's function as its frame is read, with no promise a
 * value; values wait in an inbox only while a promise the function returned is pending. Credit
 * goes back once the values handed out in one go have been (the microtasks after a read, one
 * write a read), or, while the function is pausing, at half the prefetch or when the inbox runs dry.
 */
class RecvConsume<T> {
  readonly done: Promise<void>;
  private settle!: { resolve(): void; reject(e: unknown): void };
  private readonly queue: Inbox;
  private ended: CircuitError | undefined | null = null;
  private finished = false;
  /** Values handed to the function and not yet acknowledged to the server. */
  private consumed = 0;
  /** A promise the function returned is pending: values wait in the queue. */
  private pausing = false;
  private creditQueued = false;
  private readonly rid: number;
  private readonly batch: number;

  constructor(
    private readonly c: Connection,
    private readonly st: ChanState,
    prefetch: number,
    private readonly fn: (value: T) => unknown,
    private readonly signal?: AbortSignal,
    private readonly onFinish?: () => void,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.queue = new Inbox(c.inboxes);
    [this.rid, this.batch] = openReceiver(c, st, prefetch, {
      arrive: (v, start, end) => this.arrive(v, start, end),
      ended: (err) => {
        this.ended = err;
        this.drained();
      },
      reset: () => {
        this.queue.clear();
        this.consumed = 0;
      },
    });
    signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Stops as a `break` out of iterate() would (Chan's asyncDispose): resolves the run. */
  async return(): Promise<void> {
    if (this.finished) return;
    await this.stop();
    this.settle.resolve();
  }

  private arrive(v: Buffer | Readable, start: number, end: number): void {
    if (this.finished) {
      if (v instanceof Readable) v.destroy();
      return;
    }
    if (this.pausing || this.queue.length > 0) this.queue.push(v, start, end);
    else this.hand(v, start, end);
  }

  /** Calls the function with one value; false if it paused (a pending promise) or failed. */
  private hand(v: Buffer | Readable, start: number, end: number): boolean {
    let value: T;
    if (v instanceof Readable) value = v as T;
    else {
      try {
        value = decodeValue<T>(v, start, end);
      } catch (err) {
        this.fail(err);
        return false;
      }
    }
    this.consumed++;
    if (!this.creditQueued) {
      this.creditQueued = true;
      afterMicrotasks(this.credit);
    }
    let r: unknown;
    try {
      r = this.fn(value);
    } catch (err) {
      this.fail(err);
      return false;
    }
    if (r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function") {
      this.pausing = true;
      (r as PromiseLike<unknown>).then(this.resumed, (err: unknown) => this.fail(err));
      return false;
    }
    return !this.finished;
  }

  private readonly resumed = (): void => {
    this.pausing = false;
    const q = this.queue;
    while (q.length > 0 && !this.finished) {
      const v = q.shift();
      if (!this.hand(v, q.start, q.end)) return;
    }
    this.drained();
  };

  /** Credit for the values handed out: all of them once the inbox is dry, else at half the prefetch. */
  private readonly credit = (): void => {
    this.creditQueued = false;
    if (this.finished || this.ended !== null || this.consumed === 0) return;
    if (this.consumed < this.batch && this.queue.length > 0) return;
    this.c.moreRecv(this.rid, this.st.handle, this.consumed, this.consumed, "soon");
    this.consumed = 0;
  };

  /** The channel has ended and every value it sent has been handed out: the run settles. */
  private drained(): void {
    if (this.ended === null || this.pausing || this.queue.length > 0 || this.finished) return;
    const err = this.ended;
    this.finish();
    this.c.closeRecv(this.rid, this.consumed);
    if (!err || err instanceof ChannelClosed) this.settle.resolve();
    else this.settle.reject(err);
  }

  private readonly onAbort = (): void => this.fail(this.signal?.reason);

  /** Stops, puts back what was not handed out, then rejects with err. */
  private fail(err: unknown): void {
    if (this.finished) return;
    void this.stop().then(() => this.settle.reject(err));
  }

  /** Stops receiving; settles once the values not handed out are back in the channel. */
  private stop(): Promise<void> {
    this.finish();
    if (this.ended !== null) {
      this.c.closeRecv(this.rid, this.consumed);
      return Promise.resolve();
    }
    return this.c.closeRecvAndWait(this.rid, this.consumed);
  }

  private finish(): void {
    this.finished = true;
    this.onFinish?.();
    this.signal?.removeEventListener("abort", this.onAbort);
    this.queue.clear();
  }
}
