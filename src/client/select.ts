// select: perform exactly one of several channel operations, on channels anywhere in the circuit.
// The protocol and its invariants are in docs/select.md; in short: servers reserve and offer, this
// client commits one offer and releases the rest, and a selector that committed to the first half
// of a select-vs-select pair decides nothing else until the other selector has answered.

import { randomInt } from "node:crypto";
import type { Readable } from "node:stream";
import { ChannelClosed, type CircuitError, fromWire, ProtocolError, ServerGone } from "../errors.js";
import { ALL_CASES, decode, F } from "../wire/protocol.js";
import type { Connection, SelectSink } from "./connection.js";

/** Type-level only: the value type a case carries. Never set at run time. */
declare const valueType: unique symbol;

/**
 * One operation of a select; make them with `chan.recvCase()` and `chan.sendCase(value)`. `T` is
 * the channel's value type, `Op` the operation, so that `select` can type its result.
 */
export interface SelectCase<T = unknown, Op extends "recv" | "send" = "recv" | "send"> {
  /** @internal the server connection the case's channel lives on (unless `target`) */
  readonly conn?: Connection;
  /**
   * @internal for a case that is not on one server's connection (a /@ replicated channel): makes
   * the per-select party that runs the case's side of the protocol (src/client/replicated-select.ts)
   */
  readonly target?: () => SelectTarget;
  /** @internal */
  readonly handle: number;
  readonly op: Op;
  /** @internal the encoded value of a send case */
  readonly bytes?: Buffer;
  /** Type-level only (never set): the channel's value type. */
  readonly [valueType]?: T;
}

export interface SelectOptions {
  /** Gives up with `signal.reason` when aborted; nothing has happened then. */
  signal?: AbortSignal;
  /** Never block: if no case is ready at once, resolve `{ index: -1 }`. */
  default?: boolean;
}

/** What happened when case `I` (of type C) was the one: a received value, a closed channel, or a send. */
type Happened<C, I extends number> =
  C extends SelectCase<infer T, infer Op>
    ? Op extends "recv"
      ? { index: I; value: T; closed?: false } | { index: I; value?: undefined; closed: true }
      : { index: I; value?: undefined; closed?: false }
    : never;

type IndexOf<K> = K extends `${infer N extends number}` ? N : never;

/** `{ index: -1 }`: with `default: true`, nothing was ready. */
export interface SelectDefault {
  index: -1;
  value?: undefined;
  closed?: false;
}

/**
 * Which case happened. For a tuple of cases it is a union by index, so that checking `index`
 * narrows `value` to that case's type: `value` for a recv case (a Readable for a stream message),
 * `closed: true` for a recv case on a closed, drained channel, nothing for a send case. For an
 * array of cases `index` is a number. `SelectResult<T>` with a value type (not cases) is the loose
 * form `{ index: number; value?: T; closed?: boolean }`.
 */
export type SelectResult<C = unknown> = C extends readonly SelectCase[]
  ? number extends C["length"]
    ? Happened<C[number], number>
    : { [K in keyof C]: Happened<C[K], IndexOf<K>> }[number]
  : { index: number; value?: C; closed?: boolean };

type State = "open" | "committing" | "locked" | "done";

/**
 * @internal Where some of a select's cases are registered and decided: a server connection (all
 * of the select's cases on that server), or one case on a /@ replicated channel. It answers
 * through the sink exactly as a server does (docs/select.md).
 */
export interface SelectTarget {
  /** `once`: the select has a `default`, so a case not ready at registration is not kept. */
  openSelect(sel: number, poll: boolean, cases: unknown[], sink: SelectSink, once?: boolean): void;
  decide(sel: number, idx: number): void;
  closeSelect(sel: number): void;
  streamReader?(pid: number): Readable;
}

/**
 * Waits until one of the cases can happen, performs exactly that one and returns its index. Every
 * other case has not happened: no value consumed, none delivered. Ready cases are chosen uniformly
 * at random. A case on a closed channel is ready: a recv reports `closed`, a send fails with
 * ChannelClosed. Cases on a server that dies disappear; when none are left, ServerGone.
 */
export function select<const C extends readonly SelectCase[]>(
  cases: C,
  opts: SelectOptions & { default: true },
): Promise<SelectResult<C> | SelectDefault>;
export function select<const C extends readonly SelectCase[]>(cases: C, opts?: SelectOptions): Promise<SelectResult<C>>;
/** With the value type given (`select<string>([...])`): the loose result `{ index, value?, closed? }`. */
export function select<T>(cases: readonly SelectCase<T>[], opts?: SelectOptions): Promise<SelectResult<T>>;
export function select(cases: readonly SelectCase[], opts: SelectOptions = {}): Promise<Outcome> {
  if (!Array.isArray(cases) || cases.length === 0)
    return Promise.reject(new TypeError("select needs at least one case"));
  if (cases.length > 1024) return Promise.reject(new RangeError("select takes at most 1024 cases"));
  // A server takes --max-select-cases cases of one select; more would cost the whole connection.
  const onServer = new Map<Connection, number>();
  for (const c of cases) if (c?.conn) onServer.set(c.conn, (onServer.get(c.conn) ?? 0) + 1);
  for (const [conn, n] of onServer) {
    if (n > conn.selectCaseBound) {
      return Promise.reject(
        new RangeError(
          `${n} cases of this select are on server ${conn.serverId}, which takes at most ${conn.selectCaseBound} (its --max-select-cases)`,
        ),
      );
    }
  }
  if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
  return new Promise<Outcome>((resolve, reject) => new Selection(cases, opts, resolve, reject).start());
}

/** The run-time shape of every SelectResult. */
interface Outcome {
  index: number;
  value?: unknown;
  closed?: boolean;
}

class Selection {
  private readonly id = randomInt(1, 2 ** 48) * 32 + randomInt(0, 32);
  private readonly conns = new Map<SelectTarget, number[]>();
  private readonly connOf: SelectTarget[] = [];
  /** Cases with an offer out for us, and its flags. */
  private readonly offers = new Map<number, number>();
  private state: State = "open";
  private chosen = -1;
  private aborted = false;
  private unpolled = 0;
  private readonly polled = new Set<SelectTarget>();
  private scheduled = false;
  private live: Set<SelectTarget>;
  /** A case that failed while we were committing to another one: it fails the select if that commit does not happen. */
  private failedCase: { conn: SelectTarget; idx: number; flags: number; t: Buffer } | undefined;

  constructor(
    private readonly cases: readonly SelectCase[],
    private readonly opts: SelectOptions,
    private readonly resolve: (r: Outcome) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    for (const [i, c] of cases.entries()) {
      // A /@ case is its own target (its channel's host is found and followed per case).
      const target = c.target ? c.target() : (c.conn as Connection);
      this.connOf[i] = target;
      const list = this.conns.get(target) ?? [];
      list.push(i);
      this.conns.set(target, list);
    }
    this.live = new Set(this.conns.keys());
  }

  start(): void {
    // Every server reports when it has made all the offers it could at once (POLLED); the first
    // decision waits for all of them, so that cases ready on different servers are chosen among
    // fairly, and `default` knows when nothing is ready.
    const poll = true;
    this.unpolled = this.conns.size;
    for (const [conn, idxs] of this.conns) {
      const spec = idxs.map((i) => {
        const c = this.cases[i] as SelectCase;
        return c.op === "send" ? [i, c.handle, 1, c.bytes] : [i, c.handle, 0];
      });
      conn.openSelect(this.id, poll, spec, this.sink(conn), this.opts.default === true);
    }
    this.opts.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  private sink(conn: SelectTarget): SelectSink {
    return {
      offer: (idx, flags) => {
        if (this.state === "done") return;
        this.offers.set(idx, flags);
        this.schedule();
      },
      withdraw: (idx) => {
        this.offers.delete(idx);
      },
      done: (idx, flags, pid, t) => this.answer(conn, idx, flags, pid, t),
      settled: (idx, flags, pid, t) => this.answer(conn, idx, flags, pid, t),
      polled: () => {
        if (this.polled.has(conn)) return;
        this.polled.add(conn);
        this.unpolled--;
        this.schedule();
      },
      gone: (err) => this.serverGone(conn, err),
    };
  }

  /** Decides after the current turn, so that offers arriving together are chosen among fairly. */
  private schedule(): void {
    if (this.scheduled || this.state !== "open") return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.decide();
    });
  }

  private decide(): void {
    if (this.state !== "open") return;
    if (this.aborted) return this.finish(undefined, this.opts.signal?.reason);
    if (this.unpolled > 0) return;
    const ready = [...this.offers.keys()];
    if (ready.length === 0) {
      if (this.opts.default) this.finish({ index: -1 });
      return;
    }
    const idx = ready[randomInt(0, ready.length)] as number;
    this.state = "committing";
    this.chosen = idx;
    this.connOf[idx]?.decide(this.id, idx);
  }

  /** The answer to our commit (DONE), or the outcome of a pair we committed to (SETTLED). */
  private answer(conn: SelectTarget, idx: number, flags: number, pid: number, t: Buffer): void {
    // A case refused at registration (a send to a subscription) fails the select at once.
    if (flags & F.ERROR && this.state === "open" && this.chosen === -1) this.chosen = idx;
    else if (flags & F.ERROR && idx !== this.chosen && (this.state === "committing" || this.state === "locked")) {
      this.failedCase ??= { conn, idx, flags, t };
      return;
    }
    if (idx !== this.chosen || this.state === "done") return;
    if (flags & F.PENDING) {
      this.state = "locked";
      return;
    }
    if (flags & F.FAILED) {
      this.offers.delete(idx);
      this.state = "open";
      this.chosen = -1;
      if (this.aborted) return this.finish(undefined, this.opts.signal?.reason);
      const f = this.failedCase;
      if (f) return this.answer(f.conn, f.idx, f.flags, 0, f.t);
      this.decide();
      if (this.state === "open" && this.opts.default && this.offers.size === 0) this.finish({ index: -1 });
      return;
    }
    // It happened.
    let result: Outcome = { index: idx };
    let error: unknown;
    try {
      if (flags & F.ERROR) error = fromWire(decode(t));
      else if (flags & F.CLOSED) result = { index: idx, closed: true };
      else if (flags & F.STREAM && conn.streamReader) result = { index: idx, value: conn.streamReader(pid) };
      else if (flags & F.VALUE) result = { index: idx, value: decode(t) };
    } catch (err) {
      error = new ProtocolError("received a value that is not valid MessagePack", { cause: err });
    }
    this.finish(error ? undefined : result, error);
  }

  private serverGone(conn: SelectTarget, err: CircuitError): void {
    if (this.state === "done" || !this.live.delete(conn)) return;
    const mine = this.conns.get(conn) ?? [];
    for (const i of mine) this.offers.delete(i);
    if (!this.polled.has(conn)) this.unpolled--;
    // Committed there, the outcome is unknown: the select fails. Otherwise its cases just vanish.
    if ((this.state === "committing" || this.state === "locked") && mine.includes(this.chosen)) {
      return this.finish(undefined, err);
    }
    if (this.live.size === 0) {
      return this.finish(
        undefined,
        new ServerGone(`every server of this select is gone (the last: ${err.message})`, { cause: err }),
      );
    }
    this.schedule();
  }

  private readonly onAbort = (): void => {
    this.aborted = true;
    // An offer we committed to may already have happened: its answer decides.
    if (this.state === "open") this.finish(undefined, this.opts.signal?.reason);
  };

  private finish(result: Outcome | undefined, error?: unknown): void {
    if (this.state === "done") return;
    this.state = "done";
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    // DECIDE ALL also acknowledges a value we took: it leaves at the end of this turn, after the
    // program has resumed with the value; if we die before, the server puts the value back.
    for (const conn of this.live) {
      conn.decide(this.id, ALL_CASES);
      conn.closeSelect(this.id);
    }
    if (result && !error) {
      this.resolve(result);
      return;
    }
    this.reject(error ?? new ChannelClosed());
  }
}
