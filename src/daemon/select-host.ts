// The daemon's side of select (docs/select.md): it registers a selector's cases on its channels,
// passes the channels' offers to the client, and carries out the client's decision.

import type { CommitResult, Offer, Outcome, SelectCase } from "../element/channel.js";
import { ProtocolError, toWire } from "../errors.js";
import { ALL_CASES, decode, encode, F, T, tail, u32 } from "../wire/protocol.js";
import type { ChannelLike, Item } from "./elements.js";
import { Pieces, type Value } from "./pieces.js";
import { StreamPipe } from "./stream-pipe.js";

/** What the select host needs from its session. */
export interface SelectSession {
  send(type: number, fields: number[], tail?: Uint8Array): void;
  /** Sends a frame whose tail is `parts` one after another. */
  sendParts(type: number, fields: number[], parts: readonly Buffer[]): void;
  element(handle: number): ChannelLike;
  /** Starts streaming a stream message to this client under its pipe id. */
  openInStream(pipe: StreamPipe): void;
  /** Puts values this client never acknowledged back at the head of `el`, in their order. */
  requeue(el: ChannelLike, values: Value[]): void;
  /** The client acknowledged a value a recv case took (a durable channel forgets it then). */
  ack?(el: ChannelLike, value: Value): void;
  /** A pipe reading out a durable channel's stored stream message, if `value` is one's marker. */
  storedStream?(el: ChannelLike, value: Buffer): StreamPipe | undefined;
  maxValue: number;
  maxCases: number;
  maxSelectors: number;
}

class HostCase implements SelectCase<Item> {
  constructor(
    private readonly h: SelectHost,
    readonly key: [number, number],
    readonly selector: number,
    readonly idx: number,
    readonly op: "recv" | "send",
    readonly el: ChannelLike,
    readonly value: Item | undefined,
  ) {}
  offer(o: Offer<Item>): void {
    // The offer only says what kind of outcome it is; the value travels once, with DONE.
    let flags = o.pair ? F.PAIR : 0;
    if (o.error) flags |= F.ERROR;
    else if (o.closed) flags |= F.CLOSED;
    else if (o.value instanceof StreamPipe) flags |= F.STREAM;
    else if (o.value !== undefined) flags |= F.VALUE;
    this.h.send(T.OFFER, [...this.key, this.idx, flags]);
  }
  withdraw(): void {
    this.h.send(T.WITHDRAW, [...this.key, this.idx]);
  }
  settled(o: Outcome<Item> | undefined): void {
    if (!o) this.h.send(T.SETTLED, [...this.key, this.idx, F.FAILED, 0]);
    else {
      this.h.forget(this);
      this.h.outcome(T.SETTLED, this, o, F.OK);
    }
  }
}

export class SelectHost {
  private readonly selectors = new Map<number, Map<number, HostCase>>();
  /**
   * The value each selector's recv case took, until the client acknowledges it (its DECIDE ALL,
   * sent once the select has resolved): if the connection drops first, it goes back to its channel.
   */
  private readonly unacked = new Map<number, { el: ChannelLike; value: Value }>();

  constructor(private readonly s: SelectSession) {}

  send(type: number, fields: number[], t?: Uint8Array): void {
    this.s.send(type, fields, t);
  }

  /** SELECT and DECIDE frames. */
  frame(type: number, body: Buffer): void {
    const key: [number, number] = [u32(body, 0), u32(body, 1)];
    const sel = key[0] * 2 ** 32 + key[1];
    if (type === T.SELECT) return this.open(key, sel, u32(body, 2) === 1, tail(body, 3));
    if (type === T.DECIDE) return this.decide(key, sel, u32(body, 2));
  }

  private open(key: [number, number], sel: number, poll: boolean, t: Buffer): void {
    if (this.selectors.has(sel)) throw new ProtocolError("selector id in use");
    if (this.selectors.size + this.unacked.size >= this.s.maxSelectors)
      throw new ProtocolError("too many open selects on this connection");
    let spec: unknown;
    try {
      spec = decode(t);
    } catch {
      throw new ProtocolError("undecodable SELECT");
    }
    const list = (spec as { cases?: unknown })?.cases;
    if (!Array.isArray(list) || list.length === 0 || list.length > this.s.maxCases) {
      throw new ProtocolError(`a select has 1 to ${this.s.maxCases} cases`);
    }
    const cases = new Map<number, HostCase>();
    for (const c of list) {
      if (!Array.isArray(c) || typeof c[0] !== "number" || typeof c[1] !== "number" || (c[2] !== 0 && c[2] !== 1)) {
        throw new ProtocolError("a select case is [idx, handle, op, value?]");
      }
      const el = this.s.element(c[1]);
      let value: Item | undefined;
      if (c[2] === 1) {
        if (!(c[3] instanceof Uint8Array)) throw new ProtocolError("a send case carries its encoded value");
        if (c[3].length > this.s.maxValue) throw new ProtocolError("value exceeds the limit");
        value = Buffer.from(c[3]);
      }
      cases.set(c[0], new HostCase(this, key, sel, c[0], c[2] === 1 ? "send" : "recv", el, value));
    }
    this.selectors.set(sel, cases);
    for (const c of cases.values()) {
      if (c.op === "send" && c.el.kind !== "chan") {
        const err = { code: "WrongKind", message: `${c.el.kind} subscriptions are receive-only` };
        // Not an offer: the select fails at once, as a wrong use would.
        this.send(T.DONE, [...key, c.idx, F.ERROR, 0], encode(err));
        cases.delete(c.idx);
        continue;
      }
      c.el.chan.selectCase(c);
    }
    if (poll) this.send(T.POLLED, key);
  }

  private decide(key: [number, number], sel: number, idx: number): void {
    // The selector is done with this server: a value it took here is its program's now.
    if (idx === ALL_CASES) {
      const u = this.unacked.get(sel);
      if (u) {
        this.unacked.delete(sel);
        this.s.ack?.(u.el, u.value);
      }
    }
    const cases = this.selectors.get(sel);
    if (!cases) {
      // Nothing to commit (already finished or released): say so, never leave a committer waiting.
      if (idx !== ALL_CASES) this.send(T.DONE, [...key, idx, F.FAILED, 0]);
      return;
    }
    if (idx === ALL_CASES) {
      this.releaseAll(sel);
      return;
    }
    const c = cases.get(idx);
    if (!c) {
      this.send(T.DONE, [...key, idx, F.FAILED, 0]);
      return;
    }
    const r: CommitResult<Item> = c.el.chan.commitCase(c);
    if (r.status === "failed") this.send(T.DONE, [...key, idx, F.FAILED, 0]);
    else if (r.status === "pending") this.send(T.DONE, [...key, idx, F.PENDING, 0]);
    else {
      cases.delete(idx);
      this.releaseAll(sel);
      this.outcome(T.DONE, c, r.outcome, F.OK);
    }
  }

  /** Sends an outcome (DONE or SETTLED): value bytes, a stream's pipe id, closed, or an error. */
  outcome(type: number, c: HostCase, o: Outcome<Item>, flags: number): void {
    // Durable channels (DESIGN §3.6): a send case has happened once its value is stored (capacity
    // 0: once its receiver acknowledged it); a recv case may have taken a stored stream message.
    const durable = c.el.kind === "chan" ? c.el.durable : undefined;
    if (durable && c.op === "send" && !o.error && !o.closed) {
      durable.whenSent(c.value as Buffer).then(
        () => this.outcomeNow(type, c, o, flags),
        (error) => this.outcomeNow(type, c, { error }, flags),
      );
      return;
    }
    const pipe = durable && Buffer.isBuffer(o.value) ? this.s.storedStream?.(c.el, o.value) : undefined;
    if (pipe) {
      this.unacked.set(c.selector, { el: c.el, value: o.value as Buffer });
      this.send(type, [...c.key, c.idx, flags | F.STREAM, pipe.id]);
      this.s.openInStream(pipe);
      return;
    }
    this.outcomeNow(type, c, o, flags);
  }

  private outcomeNow(type: number, c: HostCase, o: Outcome<Item>, flags: number): void {
    const head = [...c.key, c.idx];
    if (o.error) this.send(type, [...head, flags | F.ERROR, 0], encode(toWire(o.error)));
    else if (o.closed) this.send(type, [...head, flags | F.CLOSED, 0]);
    else if (o.value instanceof StreamPipe) {
      this.send(type, [...head, flags | F.STREAM, o.value.id]);
      this.s.openInStream(o.value);
    } else if (o.value !== undefined) {
      if (c.op === "recv") this.unacked.set(c.selector, { el: c.el, value: o.value });
      if (o.value instanceof Pieces) this.s.sendParts(type, [...head, flags | F.VALUE, 0], o.value.parts);
      else this.send(type, [...head, flags | F.VALUE, 0], o.value);
    } else this.send(type, [...head, flags, 0]);
  }

  forget(c: HostCase): void {
    const cases = this.selectors.get(c.selector);
    if (!cases) return;
    cases.delete(c.idx);
    if (cases.size === 0) this.selectors.delete(c.selector);
  }

  private releaseAll(sel: number): void {
    const cases = this.selectors.get(sel);
    if (!cases) return;
    this.selectors.delete(sel);
    for (const c of cases.values()) c.el.chan.releaseCase(c);
  }

  /**
   * The connection is gone: every reservation goes back to its channel, and so does every value
   * a recv case took that the client had not acknowledged (at the head, in the order taken).
   */
  cleanup(): void {
    for (const sel of [...this.selectors.keys()]) this.releaseAll(sel);
    const back = new Map<ChannelLike, Value[]>();
    for (const { el, value } of this.unacked.values()) {
      const list = back.get(el);
      if (list) list.push(value);
      else back.set(el, [value]);
    }
    this.unacked.clear();
    for (const [el, values] of back) this.s.requeue(el, values);
  }
}
