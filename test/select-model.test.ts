// Distributed select as a protocol, checked without sockets. The channels are the real state
// machines (src/element/channel.ts) and each host runs the real daemon SelectHost
// (src/daemon/select-host.ts) behind a simulated session that mirrors src/daemon/session.ts for
// plain sends and receives and for its cleanup when a connection drops. The clients are simulated:
// selectors run src/client/select.ts's decision algorithm (offers → one chosen uniformly → commit;
// DONE ok / pending / failed; SETTLED; withdraw; release everything on finish), plain senders and
// receivers do what Chan.send and Chan.recv put on the wire; a selecting client may run several
// selects in a row, as a loop does. Every client↔host connection is a pair of FIFO queues (TCP
// keeps order on one connection); the scheduler interleaves different connections at random, with
// per-connection weights standing in for delays. Clients abort, crash (unflushed frames lost, then
// the connection closes) and channels close at random steps.
//
// The invariants are checked against what the hosts did (the frames they emitted and the values
// the channels handed out), not against what the clients believe:
//   - a select completes at most one case; what a client reports is what its hosts did;
//   - a value is taken at most once; a value that entered a channel is taken exactly once by the
//     end (the channels are drained), and no value enters that a client was told did not; a value
//     a select recv case took counts as taken once the selector's DECIDE ALL (its acknowledgement)
//     reaches the host: if its connection closes first, exactly the unacknowledged values go back;
//   - after a receiver was told "closed and drained", no value leaves that channel any more;
//   - whenever nothing is in flight, no waiting sender and waiting receiver could match (a
//     select case on a closed channel is always ready);
//   - once every client has finished or died, no waiter, reservation or reserved slot is left.
// Plain sends ask for no credits here (want 0): credits are covered by channel-model.test.ts.
// To read a counterexample step by step, run it through `simulate` with SELECT_MODEL_TRACE=1.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { ChannelLike, Item } from "../src/daemon/elements.ts";
import { DEFAULT_LIMITS } from "../src/daemon/limits.ts";
import { SelectHost } from "../src/daemon/select-host.ts";
import {
  Channel,
  type Offer,
  type Outcome,
  type Receiver,
  type SelectCase,
  type SendWaiter,
} from "../src/element/channel.ts";
import { type CircuitError, toWire } from "../src/errors.ts";
import { ALL_CASES, DEFAULT_MAX_VALUE, decode, encode, F, T } from "../src/wire/protocol.ts";

// ---------------------------------------------------------------------------------------------
// Scenarios

type Op = "recv" | "send";

interface CaseSpec {
  ch: number;
  op: Op;
}

interface Timing {
  /** Step at which the client starts. */
  start: number;
  /** Step at which it aborts (selectors: the signal fires; plain ops: CANCEL / RCLOSE). */
  abort?: number;
  /** Step at which the process dies. */
  crash?: number;
  /** How many of its last frames per connection were never flushed when it died. */
  crashDrop: number;
  /** Relative speed of its connections. */
  weight: number;
}

interface SelectorSpec extends Timing {
  kind: "select";
  cases: CaseSpec[];
  /** `{ default: true }` */
  poll: boolean;
  /** How many selects with these cases the client runs, one after the other (default 1, up to MAX_ROUNDS). */
  rounds?: number;
}

const MAX_ROUNDS = 8;

interface PlainSpec extends Timing {
  kind: "send" | "recv";
  ch: number;
}

type ClientSpec = SelectorSpec | PlainSpec;

interface Scenario {
  chans: readonly { cap: number; host: number }[];
  clients: readonly ClientSpec[];
  /** Selector ids, unique; client i's round k uses ids[i * MAX_ROUNDS + k]. */
  ids: readonly number[];
  closes: readonly { ch: number; at: number }[];
  seed: number;
}

// ---------------------------------------------------------------------------------------------
// The network

/** A frame as it travels: u32 fields and a tail. CLOSED marks the end of a dropped connection. */
interface Frame {
  type: number;
  fields: number[];
  tail: Buffer;
}
const CLOSED = -1;

function body(fields: readonly number[], t: Buffer): Buffer {
  const b = Buffer.alloc(4 * fields.length + t.length);
  fields.forEach((f, i) => void b.writeUInt32BE(f >>> 0, 4 * i));
  t.copy(b, 4 * fields.length);
  return b;
}

const NONE = Buffer.alloc(0);
const hi = (sel: number) => Math.floor(sel / 2 ** 32);
const lo = (sel: number) => sel >>> 0;
const selOf = (fields: readonly number[]) => (fields[0] as number) * 2 ** 32 + (fields[1] as number);
const str = (b: Buffer) => decode(b) as string;
const codeOf = (b: Buffer) => (decode(b) as { code: string }).code;

/** SELECT_MODEL_TRACE=1 prints every step of every simulation (for reading a counterexample). */
const TRACE = process.env.SELECT_MODEL_TRACE === "1";
const NAMES = new Map<number, string>([
  ...Object.entries(T).map(([k, v]) => [v, k] as [number, string]),
  [CLOSED, "CLOSED"],
]);

function show(f: Frame): string {
  let t = "";
  if (f.tail.length > 0) {
    try {
      t = ` ${JSON.stringify(decode(f.tail))}`;
    } catch {
      t = ` <${f.tail.length} bytes>`;
    }
  }
  return `${NAMES.get(f.type) ?? f.type} [${f.fields.join(", ")}]${t}`;
}

/** mulberry32: a small seeded PRNG, so that a failing schedule replays exactly. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** One client↔host connection: two FIFO queues. */
class Link {
  readonly up: Frame[] = [];
  readonly down: Frame[] = [];
  readonly session: SimSession;
  constructor(
    readonly sim: Sim,
    readonly client: SimClient,
    readonly host: number,
    readonly weight: number,
  ) {
    this.session = new SimSession(sim, this, host);
  }
  sendUp(type: number, fields: number[], tail: Buffer = NONE): void {
    if (!this.client.dead) this.up.push({ type, fields, tail });
  }
  sendDown(type: number, fields: number[], tail: Buffer = NONE): void {
    if (!this.client.dead) this.down.push({ type, fields, tail });
  }
}

// ---------------------------------------------------------------------------------------------
// The host side: a session per connection, as src/daemon/session.ts does it

/** Mirrors SessionReceiver: values handed out stay unacked until the client acknowledges them. */
class SimReceiver implements Receiver<Item> {
  readonly unacked: Buffer[] = [];
  ended = false;
  constructor(
    readonly s: SimSession,
    readonly rid: number,
    readonly ch: number,
  ) {}
  take(v: Item): void {
    const b = v as Buffer;
    this.unacked.push(b);
    this.s.sim.took(str(b), this.ch);
    this.s.link.sendDown(T.VAL, [this.rid], b);
  }
  end(err: CircuitError): void {
    if (this.ended) return;
    this.ended = true;
    if (err.code === "ChannelClosed") this.s.sim.sawClosed(this.ch);
    this.s.link.sendDown(T.REND, [this.rid], encode(toWire(err)));
  }
}

class SimSession {
  private readonly pendingSends = new Map<number, { ch: number; w: SendWaiter<Item> }>();
  private readonly receivers = new Map<number, SimReceiver>();
  private readonly selects: SelectHost;
  /** Values select recv cases took here, by selector id, until its DECIDE ALL arrives. */
  readonly selectUnacked = new Map<number, string>();
  /** What the select host put back when the connection dropped. */
  private readonly selectRequeued: string[] = [];
  gone = false;

  constructor(
    readonly sim: Sim,
    readonly link: Link,
    readonly host: number,
  ) {
    this.selects = new SelectHost({
      send: (type, fields, t) => {
        const tail = t ? Buffer.from(t) : NONE;
        sim.observe(type, fields, tail, this);
        link.sendDown(type, fields, tail);
      },
      sendParts: (type, fields, parts) => {
        const tail = Buffer.concat(parts);
        sim.observe(type, fields, tail, this);
        link.sendDown(type, fields, tail);
      },
      element: (handle) => sim.element(host, handle),
      requeue: (el, values) => {
        // The model's values are small: whole buffers, never pieces.
        const vals = values.map((v) => str(v as Buffer));
        this.selectRequeued.push(...vals);
        this.sim.requeued(vals, this.sim.indexOf(el));
        el.chan.requeue(values);
      },
      openInStream: () => {
        throw new Error("the model has no stream messages");
      },
      maxValue: DEFAULT_MAX_VALUE,
      maxCases: DEFAULT_LIMITS.selectCases,
      maxSelectors: DEFAULT_LIMITS.pending,
    });
  }

  frame(f: Frame): void {
    if (this.gone) return;
    const [a = 0, b = 0, c = 0, d = 0] = f.fields;
    switch (f.type) {
      case T.SEND: {
        const ch = b - 1;
        const chan = this.sim.element(this.host, b).chan;
        const w: SendWaiter<Item> = {
          value: f.tail,
          done: (err) => {
            this.pendingSends.delete(a);
            if (err) this.link.sendDown(T.ERR, [a], encode(toWire(err)));
            else {
              this.sim.entered(str(f.tail));
              this.link.sendDown(T.RES, [a]);
            }
          },
        };
        this.pendingSends.set(a, { ch, w });
        chan.send(w);
        return;
      }
      case T.CANCEL: {
        const p = this.pendingSends.get(a);
        if (p && this.sim.chans[p.ch]?.cancelSend(p.w)) {
          this.pendingSends.delete(a);
          this.link.sendDown(T.ERR, [a], encode({ code: "Cancelled", message: "cancelled" }));
        }
        return;
      }
      case T.RECV: {
        let r = this.receivers.get(a);
        if (!r) {
          this.sim.element(this.host, b);
          r = new SimReceiver(this, a, b - 1);
          this.receivers.set(a, r);
        }
        this.ack(r, c);
        if (d > 0 && !r.ended) this.sim.chan(r.ch).recv(r, d);
        return;
      }
      case T.RCLOSE: {
        const r = this.receivers.get(a);
        if (r) {
          this.receivers.delete(a);
          this.ack(r, b);
          this.sim.chan(r.ch).cancelRecv(r);
          this.requeue(r);
        }
        if (!c) this.link.sendDown(T.REND, [a]);
        return;
      }
      case T.DECIDE: {
        const v = this.selectUnacked.get(selOf(f.fields));
        if (c === ALL_CASES && v !== undefined) {
          this.selectUnacked.delete(selOf(f.fields));
          this.sim.final(v);
        }
        this.selects.frame(f.type, body(f.fields, f.tail));
        return;
      }
      case T.SELECT:
        this.selects.frame(f.type, body(f.fields, f.tail));
        return;
      case CLOSED:
        this.cleanup();
        return;
      default:
        throw new Error(`the model sends no frame 0x${f.type.toString(16)}`);
    }
  }

  private ack(r: SimReceiver, n: number): void {
    for (let i = 0; i < n && r.unacked.length > 0; i++) this.sim.final(str(r.unacked.shift() as Buffer));
  }

  private requeue(r: SimReceiver): void {
    const vals = r.unacked.splice(0);
    this.sim.requeued(vals.map(str), r.ch);
    this.sim.chan(r.ch).requeue(vals);
  }

  /** The connection dropped: exactly what Session.cleanup does (there are no credit holders). */
  private cleanup(): void {
    this.gone = true;
    for (const { ch, w } of this.pendingSends.values()) this.sim.chan(ch).cancelSend(w);
    this.pendingSends.clear();
    for (const r of this.receivers.values()) {
      this.sim.chan(r.ch).cancelRecv(r);
      this.requeue(r);
    }
    this.receivers.clear();
    this.selects.cleanup();
    const unacked = [...this.selectUnacked.values()].sort();
    assert.deepEqual(
      [...this.selectRequeued].sort(),
      unacked,
      "the select host put back other values than those its selectors had not acknowledged",
    );
    this.selectUnacked.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// The clients

type Result = { ok: true; index?: number; value?: string; closed?: boolean } | { ok: false; code: string } | undefined;

abstract class SimClient {
  dead = false;
  started = false;
  result: Result;
  readonly links = new Map<number, Link>();
  constructor(
    readonly sim: Sim,
    readonly n: number,
    readonly spec: ClientSpec,
  ) {}
  get finished(): boolean {
    return this.result !== undefined;
  }
  link(host: number): Link {
    let l = this.links.get(host);
    if (!l) {
      l = new Link(this.sim, this, host, this.spec.weight);
      this.links.set(host, l);
      this.sim.links.push(l);
    }
    return l;
  }
  abstract start(): void;
  abstract abort(): void;
  abstract frame(host: number, f: Frame): void;
  /** The process dies: frames not yet flushed are lost, then every connection closes. */
  crash(): void {
    if (this.dead) return;
    this.dead = true;
    for (const l of this.links.values()) {
      l.up.splice(Math.max(0, l.up.length - this.spec.crashDrop));
      l.up.push({ type: CLOSED, fields: [], tail: NONE });
      l.down.length = 0;
    }
  }
}

type State = "open" | "committing" | "locked" | "done";

/** src/client/select.ts's Selection (one select call), driven by simulated frames and a seeded choice. */
class Selection {
  state: State = "open";
  readonly offers = new Map<number, number>();
  chosen = -1;
  aborted = false;
  unpolled = 0;
  readonly polled = new Set<number>();
  scheduled = false;
  result: Result;

  constructor(
    readonly client: Selector,
    readonly round: number,
    readonly id: number,
  ) {}

  get cases(): CaseSpec[] {
    return this.client.spec.cases;
  }

  get who(): string {
    return `selector ${this.client.n}${(this.client.spec.rounds ?? 1) > 1 ? ` round ${this.round}` : ""}`;
  }

  value(idx: number): string {
    return `s${this.client.n}.${this.round}.${idx}`;
  }

  private link(idx: number): Link {
    return this.client.link(this.client.sim.hostOf((this.cases[idx] as CaseSpec).ch));
  }

  start(): void {
    const byHost = new Map<number, unknown[]>();
    this.cases.forEach((c, i) => {
      const h = this.client.sim.hostOf(c.ch);
      const list = byHost.get(h) ?? [];
      list.push(c.op === "send" ? [i, c.ch + 1, 1, encode(this.value(i))] : [i, c.ch + 1, 0]);
      byHost.set(h, list);
    });
    // Every host reports POLLED once it has made the offers it could at once; the first decision
    // waits for all of them (fairness across hosts; `default` knows nothing is ready).
    this.unpolled = byHost.size;
    for (const [h, cases] of byHost) {
      this.client.link(h).sendUp(T.SELECT, [hi(this.id), lo(this.id), 1], encode({ cases }));
    }
  }

  frame(host: number, f: Frame): void {
    // After finish the real client has removed its sink: later frames for the selector are dropped.
    if (this.state === "done") return;
    const [, , idx = 0, flags = 0] = f.fields;
    switch (f.type) {
      case T.OFFER:
        this.offers.set(idx, flags);
        this.schedule();
        return;
      case T.WITHDRAW:
        this.offers.delete(idx);
        return;
      case T.DONE:
      case T.SETTLED:
        this.answer(idx, flags, f.tail);
        return;
      case T.POLLED:
        if (this.polled.has(host)) return;
        this.polled.add(host);
        this.unpolled--;
        this.schedule();
        return;
    }
  }

  private schedule(): void {
    if (this.scheduled || this.state !== "open") return;
    this.scheduled = true;
    this.client.sim.tasks.add(this);
  }

  /** The setImmediate callback. */
  runTask(): void {
    this.scheduled = false;
    this.decide();
  }

  private decide(): void {
    if (this.state !== "open") return;
    if (this.aborted) return this.finish({ ok: false, code: "AbortError" });
    if (this.unpolled > 0) return;
    const ready = [...this.offers.keys()];
    if (ready.length === 0) {
      if (this.client.spec.poll) this.finish({ ok: true, index: -1 });
      return;
    }
    const idx = ready[this.client.sim.random(ready.length)] as number;
    this.state = "committing";
    this.chosen = idx;
    this.link(idx).sendUp(T.DECIDE, [hi(this.id), lo(this.id), idx]);
  }

  private answer(idx: number, flags: number, t: Buffer): void {
    if (flags & F.ERROR && this.state === "open" && this.chosen === -1) this.chosen = idx;
    // The real client ignores this; the model says why the select then goes wrong.
    assert.ok(
      idx === this.chosen || !(flags & F.OK),
      `a host completed case ${idx} of ${this.who}, which is ${this.state} on case ${this.chosen}`,
    );
    if (idx !== this.chosen) return;
    if (flags & F.PENDING) {
      this.state = "locked";
      return;
    }
    if (flags & F.FAILED) {
      this.offers.delete(idx);
      this.state = "open";
      this.chosen = -1;
      if (this.aborted) return this.finish({ ok: false, code: "AbortError" });
      this.decide();
      if (this.state === "open" && this.client.spec.poll && this.offers.size === 0)
        this.finish({ ok: true, index: -1 });
      return;
    }
    if (flags & F.ERROR) return this.finish({ ok: false, code: codeOf(t) });
    if (flags & F.CLOSED) return this.finish({ ok: true, index: idx, closed: true });
    if (flags & F.VALUE) return this.finish({ ok: true, index: idx, value: str(t) });
    this.finish({ ok: true, index: idx });
  }

  abort(): void {
    this.aborted = true;
    if (this.state === "open") this.finish({ ok: false, code: "AbortError" });
  }

  private finish(r: Result): void {
    if (this.state === "done") return;
    this.state = "done";
    this.result = r;
    for (const l of this.client.links.values()) l.sendUp(T.DECIDE, [hi(this.id), lo(this.id), ALL_CASES]);
    this.client.roundEnded(this);
  }
}

/** A client process that runs `rounds` selects one after the other (stopping at a failure). */
class Selector extends SimClient {
  declare readonly spec: SelectorSpec;
  readonly selections: Selection[] = [];

  constructor(
    sim: Sim,
    n: number,
    spec: SelectorSpec,
    readonly ids: number[],
  ) {
    super(sim, n, spec);
  }

  get current(): Selection | undefined {
    return this.selections[this.selections.length - 1];
  }

  start(): void {
    this.started = true;
    this.next();
  }

  private next(): void {
    const s = new Selection(this, this.selections.length, this.ids[this.selections.length] as number);
    this.selections.push(s);
    this.sim.selections.set(s.id, s);
    s.start();
  }

  /** The select resolved or rejected: the next one starts at once, as a loop's next iteration would. */
  roundEnded(s: Selection): void {
    if (s.result?.ok && this.selections.length < (this.spec.rounds ?? 1)) this.next();
    else this.result = s.result;
  }

  frame(host: number, f: Frame): void {
    const c = this.current;
    if (c && selOf(f.fields) === c.id) c.frame(host, f);
  }

  abort(): void {
    if (!this.started) this.result = { ok: false, code: "AbortError" };
    else this.current?.abort();
  }
}

/** Chan.send: one SEND without credits; an abort sends CANCEL and the server's answer decides. */
class PlainSender extends SimClient {
  declare readonly spec: PlainSpec;
  private cancelled = false;
  get value(): string {
    return `p${this.n}`;
  }
  start(): void {
    this.started = true;
    this.link(this.sim.hostOf(this.spec.ch)).sendUp(T.SEND, [1, this.spec.ch + 1, 0], encode(this.value));
  }
  frame(_host: number, f: Frame): void {
    if (this.finished) return;
    if (f.type === T.RES) this.result = { ok: true };
    else if (f.type === T.ERR) {
      const code = codeOf(f.tail);
      this.result = { ok: false, code: code === "Cancelled" ? "AbortError" : code };
    }
  }
  abort(): void {
    if (!this.started) this.result = { ok: false, code: "AbortError" };
    else if (!this.finished && !this.cancelled) {
      this.cancelled = true;
      this.link(this.sim.hostOf(this.spec.ch)).sendUp(T.CANCEL, [1]);
    }
  }
}

/** Chan.recv: a receiver with one credit, acknowledged and closed when its value arrives. */
class PlainReceiver extends SimClient {
  declare readonly spec: PlainSpec;
  active = false;
  start(): void {
    this.started = true;
    this.active = true;
    this.link(this.sim.hostOf(this.spec.ch)).sendUp(T.RECV, [1, this.spec.ch + 1, 0, 1]);
  }
  frame(_host: number, f: Frame): void {
    if (!this.active) return;
    if (f.type === T.VAL) {
      this.active = false;
      this.link(this.sim.hostOf(this.spec.ch)).sendUp(T.RCLOSE, [1, 1, 1]);
      this.result = { ok: true, value: str(f.tail) };
    } else if (f.type === T.REND) {
      this.active = false;
      this.result = { ok: false, code: f.tail.length > 0 ? codeOf(f.tail) : "ChannelClosed" };
    }
  }
  abort(): void {
    if (!this.started) this.result = { ok: false, code: "AbortError" };
    else if (this.active) {
      // Whatever the server handed us meanwhile goes back: the receive did not happen.
      this.active = false;
      this.link(this.sim.hostOf(this.spec.ch)).sendUp(T.RCLOSE, [1, 0, 1]);
      this.result = { ok: false, code: "AbortError" };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The simulation and its ground truth

interface Scripted {
  at: number;
  what: string;
  run(): void;
}

class Sim {
  step = 0;
  readonly random: (n: number) => number;
  readonly chans: Channel<Item>[];
  private readonly els: ChannelLike[];
  readonly links: Link[] = [];
  readonly clients: SimClient[] = [];
  readonly tasks = new Set<Selection>();
  private readonly script: Scripted[] = [];
  /** The next scripted event to run. */
  private next = 0;
  readonly selections = new Map<number, Selection>();

  // What the hosts did.
  /** Per selector id: the cases its hosts reported as happened (DONE/SETTLED with OK). */
  readonly happened = new Map<number, { idx: number; flags: number; value?: string }[]>();
  readonly enteredValues = new Set<string>();
  /** Values taken for good (acknowledged, committed to a select, or drained) and how often. */
  readonly finals = new Map<string, number>();
  /** Every time a value left a channel: [value, channel, step]. */
  readonly takes: [string, number, number][] = [];
  readonly requeues = new Map<string, number[]>();
  readonly requeuedOn: number[];
  /** The first step at which a receiver was told the channel is closed and drained. */
  readonly closedSeen: number[];

  constructor(readonly sc: Scenario) {
    this.random = prng(sc.seed);
    this.chans = sc.chans.map((c) => new Channel<Item>(c.cap));
    this.els = this.chans.map((chan) => ({ kind: "chan", chan, names: [] }));
    this.requeuedOn = sc.chans.map(() => 0);
    this.closedSeen = sc.chans.map(() => Number.POSITIVE_INFINITY);
    sc.clients.forEach((spec, n) => {
      let c: SimClient;
      if (spec.kind === "select") {
        c = new Selector(this, n, spec, sc.ids.slice(n * MAX_ROUNDS, (n + 1) * MAX_ROUNDS));
      } else c = spec.kind === "send" ? new PlainSender(this, n, spec) : new PlainReceiver(this, n, spec);
      this.clients.push(c);
      const id =
        c instanceof Selector
          ? ` (selector ids ${c.ids.slice(0, spec.kind === "select" ? (spec.rounds ?? 1) : 0)})`
          : ` (${spec.kind})`;
      this.script.push({
        at: spec.start,
        what: `client ${n}${id} starts`,
        run: () => !c.dead && !c.finished && c.start(),
      });
      if (spec.abort !== undefined) {
        this.script.push({ at: spec.abort, what: `client ${n} aborts`, run: () => !c.dead && c.abort() });
      }
      if (spec.crash !== undefined)
        this.script.push({ at: spec.crash, what: `client ${n} dies`, run: () => c.crash() });
    });
    for (const cl of sc.closes) {
      this.script.push({
        at: cl.at,
        what: `channel ${cl.ch} closes`,
        run: () => {
          if (this.chan(cl.ch).stat().closed) return;
          this.chan(cl.ch).close(() => {});
        },
      });
    }
    // Stable: at one step, starts before aborts before crashes, in client order.
    this.script.sort((a, b) => a.at - b.at);
  }

  chan(i: number): Channel<Item> {
    return this.chans[i] as Channel<Item>;
  }

  hostOf(ch: number): number {
    return (this.sc.chans[ch] as { host: number }).host;
  }

  indexOf(el: ChannelLike): number {
    return this.els.indexOf(el);
  }

  element(host: number, handle: number): ChannelLike {
    const el = this.els[handle - 1];
    if (!el || this.hostOf(handle - 1) !== host) throw new Error(`no channel handle ${handle} on host ${host}`);
    return el;
  }

  // --- ground truth, recorded as the hosts act

  entered(v: string): void {
    assert.ok(!this.enteredValues.has(v), `value ${v} entered a channel twice`);
    this.enteredValues.add(v);
  }

  took(v: string, ch: number): void {
    this.takes.push([v, ch, this.step]);
  }

  final(v: string): void {
    this.finals.set(v, (this.finals.get(v) ?? 0) + 1);
  }

  requeued(vals: string[], ch: number): void {
    for (const v of vals) {
      const l = this.requeues.get(v) ?? [];
      l.push(this.step);
      this.requeues.set(v, l);
    }
    this.requeuedOn[ch] = (this.requeuedOn[ch] as number) + vals.length;
  }

  sawClosed(ch: number): void {
    this.closedSeen[ch] = Math.min(this.closedSeen[ch] as number, this.step);
  }

  /** Every frame a SelectHost sends passes here. */
  observe(type: number, fields: number[], tail: Buffer, session: SimSession): void {
    if (type !== T.DONE && type !== T.SETTLED) return;
    const flags = fields[3] as number;
    if (!(flags & F.OK)) return;
    const sel = selOf(fields);
    const idx = fields[2] as number;
    const s = this.selections.get(sel);
    assert.ok(s, `a host completed a case of unknown selector ${sel}`);
    const c = s.cases[idx];
    assert.ok(c, `a host completed unknown case ${idx} of selector ${sel}`);
    const rec: { idx: number; flags: number; value?: string } = { idx, flags };
    if (c.op === "recv" && flags & F.VALUE) {
      rec.value = str(tail);
      this.took(rec.value, c.ch);
      // Taken for good once acknowledged (SimSession sees the DECIDE ALL), else handed back.
      session.selectUnacked.set(sel, rec.value);
    }
    if (c.op === "recv" && flags & F.CLOSED) this.sawClosed(c.ch);
    if (c.op === "send" && !(flags & F.ERROR)) this.entered(s.value(idx));
    const l = this.happened.get(sel) ?? [];
    l.push(rec);
    this.happened.set(sel, l);
    assert.ok(l.length <= 1, `${s.who} completed ${l.length} cases: ${JSON.stringify(l)}`);
  }

  // --- the scheduler

  /** Runs until nothing is in flight and the script is done, or maxSteps; true if it went quiet. */
  run(maxSteps: number): boolean {
    for (;;) {
      while (this.next < this.script.length && (this.script[this.next] as Scripted).at <= this.step) {
        const sc = this.script[this.next++] as Scripted;
        if (TRACE) console.log(`${this.step} ${sc.what}`);
        sc.run();
      }
      const events: { w: number; run: () => void; what: () => string }[] = [];
      for (const l of this.links) {
        const who = `client ${l.client.n} host ${l.host}`;
        if (l.up.length > 0) {
          events.push({
            w: l.weight,
            run: () => l.session.frame(l.up.shift() as Frame),
            what: () => `${who} ↑ ${show(l.up[0] as Frame)}`,
          });
        }
        if (l.down.length > 0) {
          events.push({
            w: l.weight,
            run: () => l.client.frame(l.host, l.down.shift() as Frame),
            what: () => `${who} ↓ ${show(l.down[0] as Frame)}${l.client.dead ? " (dead)" : ""}`,
          });
        }
      }
      for (const t of this.tasks) {
        const run = () => {
          this.tasks.delete(t);
          t.runTask();
        };
        events.push({ w: 4, run, what: () => `${t.who} decides` });
      }
      if (events.length === 0) {
        if (this.next >= this.script.length) return true;
        this.step = (this.script[this.next] as Scripted).at;
        continue;
      }
      if (this.step >= maxSteps) return false;
      let r = this.random(events.reduce((a, e) => a + e.w, 0));
      const e = events.find((x) => (r -= x.w) < 0) as { run: () => void; what: () => string };
      if (TRACE) console.log(`${this.step} ${e.what()}`);
      e.run();
      this.step++;
      this.chans.forEach((c, i) => {
        const st = c.stat();
        // Only values handed back by a receiver that dropped may overfill a buffer (DESIGN §3.1).
        assert.ok(
          st.len <= st.cap + (this.requeuedOn[i] as number),
          `channel ${i} holds ${st.len} values with cap ${st.cap} (step ${this.step})`,
        );
      });
    }
  }

  /** Aborts every live client that has not finished (a select's abort, a plain op's cancel). */
  abortAll(): void {
    for (const c of this.clients) if (!c.dead && !c.finished) c.abort();
  }

  /** Nothing in flight: no waiting sender could have been matched with a waiting receiver. */
  checkNoMissedMatch(): void {
    const live = this.clients.filter((c) => !c.dead && c.started && !c.finished);
    for (const c of live) {
      const s = c instanceof Selector ? c.current : undefined;
      if (s) {
        assert.equal(s.state, "open", `${s.who} is ${s.state} with nothing in flight`);
        assert.equal(s.offers.size, 0, `${s.who} holds offers ${[...s.offers.keys()]} nobody answers`);
      }
    }
    this.chans.forEach((chan, ch) => {
      const senders: number[] = [];
      const receivers: number[] = [];
      for (const c of live) {
        if (c instanceof Selector) {
          if (c.spec.cases.some((k) => k.ch === ch && k.op === "send")) senders.push(c.n);
          if (c.spec.cases.some((k) => k.ch === ch && k.op === "recv")) receivers.push(c.n);
        } else if ((c.spec as PlainSpec).ch === ch) (c.spec.kind === "send" ? senders : receivers).push(c.n);
      }
      const st = chan.stat();
      const who = `channel ${ch} (cap ${st.cap}, len ${st.len}, closed ${st.closed}), senders ${senders}, receivers ${receivers}`;
      if (st.closed) assert.ok(senders.length + receivers.length === 0, `waiting on a closed channel: ${who}`);
      if (st.len > 0) assert.equal(receivers.length, 0, `receivers wait beside buffered values: ${who}`);
      if (st.len < st.cap) assert.equal(senders.length, 0, `senders wait beside free slots: ${who}`);
      const match = senders.some((s) => receivers.some((r) => r !== s));
      assert.ok(!match, `a sender and a receiver wait on the same channel: ${who}`);
    });
  }

  /** The end: what the clients saw agrees with what the hosts did, and nothing is left behind. */
  checkFinal(): void {
    // Every client that lives has finished.
    for (const c of this.clients) {
      if (!c.dead && c.started) assert.ok(c.finished, `client ${c.n} (${c.spec.kind}) never finished`);
    }
    // Drain, then nothing may be waiting or reserved, and the capacity is whole again.
    this.step++;
    this.chans.forEach((chan, ch) => {
      const drain: Receiver<Item> = {
        take: (v) => {
          this.took(str(v as Buffer), ch);
          this.final(str(v as Buffer));
        },
        end: () => {},
      };
      chan.recv(drain, 1_000_000);
      chan.cancelRecv(drain);
      const st = chan.stat();
      assert.equal(st.len, 0, `channel ${ch} still holds values after a drain`);
      assert.equal(st.waitingSenders, 0, `channel ${ch} has ${st.waitingSenders} waiting senders at the end`);
      assert.equal(st.waitingReceivers, 0, `channel ${ch} has ${st.waitingReceivers} waiting receivers at the end`);
      // White box: the reservation table is private, and a leaked pair would show nowhere else.
      const reservations = (chan as unknown as { reservations: Map<unknown, unknown> }).reservations;
      assert.equal(reservations.size, 0, `channel ${ch} keeps ${reservations.size} reservations`);
      if (!st.closed) {
        let completed = 0;
        for (let i = 0; i < st.cap; i++) chan.send({ value: encode("fill"), done: (e) => void (e || completed++) });
        assert.equal(completed, st.cap, `channel ${ch} lost buffer slots: only ${completed} of ${st.cap} sends fit`);
      }
    });

    // Values: taken at most once; taken exactly once if they entered; never taken if they did not.
    const values: string[] = [];
    for (const s of this.selections.values()) {
      s.cases.forEach((k, i) => void (k.op === "send" && values.push(s.value(i))));
    }
    for (const c of this.clients) if (c instanceof PlainSender) values.push(c.value);
    for (const v of values) {
      const n = this.finals.get(v) ?? 0;
      if (this.enteredValues.has(v)) assert.equal(n, 1, `value ${v} entered a channel and was taken ${n} times`);
      else assert.equal(n, 0, `value ${v} never entered a channel but was taken ${n} times`);
    }

    // After a receiver learnt that a channel is closed and drained, nothing more leaves it, except
    // a value that a dropped receiver handed back since.
    for (const [v, ch, at] of this.takes) {
      const seen = this.closedSeen[ch] as number;
      if (at <= seen) continue;
      const back = (this.requeues.get(v) ?? []).some((r) => r >= seen && r <= at);
      assert.ok(
        back,
        `value ${v} left channel ${ch} at step ${at}, after a receiver was told at ${seen} it was closed`,
      );
    }

    // What each client reports (before it died, if it did) is what its hosts did.
    for (const s of this.selections.values()) {
      const r = s.result;
      if (!r) continue;
      const h = this.happened.get(s.id) ?? [];
      const what = `${s.who} reports ${JSON.stringify(r)}; its hosts completed ${JSON.stringify(h)}`;
      const sent = s.cases.map((k, i) => k.op === "send" && this.enteredValues.has(s.value(i)));
      if (r.ok && r.index !== -1) {
        const i = r.index as number;
        assert.equal(h.length, 1, what);
        assert.equal(h[0]?.idx, i, what);
        if (s.cases[i]?.op === "recv") {
          assert.equal(r.value, h[0]?.value, what);
          assert.equal(r.closed === true, ((h[0]?.flags ?? 0) & F.CLOSED) !== 0, what);
        }
        sent.forEach((x, j) => {
          if (s.cases[j]?.op === "send") assert.equal(x, j === i, `${what}; send case ${j} entered: ${x}`);
        });
      } else if (r.ok || r.code === "AbortError") {
        // The default, or an abort: nothing happened.
        assert.deepEqual(h, [], what);
        assert.ok(!sent.includes(true), what);
      } else {
        // A send case on a closed channel: the case happened, as a failure.
        assert.equal(h.length, 1, what);
        assert.ok(((h[0]?.flags ?? 0) & F.ERROR) !== 0, what);
        assert.equal(r.code, "ChannelClosed", what);
        assert.ok(!sent.includes(true), what);
      }
    }
    for (const c of this.clients) {
      const r = c.result;
      if (c.dead || !r || c instanceof Selector) continue;
      if (c instanceof PlainSender) {
        assert.equal(this.enteredValues.has(c.value), r.ok, `plain send ${c.value}: ${JSON.stringify(r)}`);
      } else if (r.ok) {
        assert.equal(this.finals.get(r.value as string), 1, `plain receiver ${c.n} got ${r.value}`);
      }
    }
  }
}

/** Runs a scenario to the end: the script, then abort what is left, then the final checks. */
function simulate(sc: Scenario, maxSteps = 30_000): Sim {
  const sim = new Sim(sc);
  const quiet = sim.run(maxSteps);
  assert.ok(quiet, `still busy after ${maxSteps} steps`);
  sim.checkNoMissedMatch();
  sim.abortAll();
  assert.ok(sim.run(sim.step + maxSteps), `aborting everything did not end within ${maxSteps} steps`);
  sim.checkFinal();
  return sim;
}

// ---------------------------------------------------------------------------------------------
// Generators

const timing = (crashes: boolean, aborts: boolean) =>
  fc.record({
    start: fc.nat(60),
    abort: aborts
      ? fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat(400) })
      : fc.constant(undefined),
    crash: crashes
      ? fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat(400) })
      : fc.constant(undefined),
    crashDrop: fc.nat(2),
    weight: fc.integer({ min: 1, max: 8 }),
  });

const ids = fc.uniqueArray(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), {
  minLength: 16 * MAX_ROUNDS,
  maxLength: 16 * MAX_ROUNDS,
});

function randomScenario(o: { closes: boolean }): fc.Arbitrary<Scenario> {
  return fc.integer({ min: 1, max: 3 }).chain((nch) => {
    const ch = fc.nat(nch - 1);
    const selector = fc
      .record({
        cases: fc.array(fc.record({ ch, op: fc.constantFrom<Op>("recv", "send") }), { minLength: 1, maxLength: 4 }),
        poll: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
        rounds: fc.oneof(
          { weight: 3, arbitrary: fc.constant(1) },
          { weight: 1, arbitrary: fc.integer({ min: 2, max: 3 }) },
        ),
        t: timing(true, true),
      })
      .map(({ cases, poll, rounds, t }): ClientSpec => ({ kind: "select", cases, poll, rounds, ...t }));
    const plain = fc
      .record({ kind: fc.constantFrom<"send" | "recv">("send", "recv"), ch, t: timing(true, true) })
      .map(({ kind, ch, t }): ClientSpec => ({ kind, ch, ...t }));
    return fc.record({
      chans: fc.array(fc.record({ cap: fc.integer({ min: 0, max: 2 }), host: fc.nat(2) }), {
        minLength: nch,
        maxLength: nch,
      }),
      clients: fc
        .tuple(fc.array(selector, { minLength: 2, maxLength: 6 }), fc.array(plain, { maxLength: 4 }))
        .chain(([s, p]) => fc.shuffledSubarray([...s, ...p], { minLength: s.length + p.length })),
      ids,
      closes: o.closes ? fc.array(fc.record({ ch, at: fc.nat(300) }), { minLength: 1, maxLength: 2 }) : fc.constant([]),
      seed: fc.integer(),
    });
  });
}

/**
 * Runs a scenario in which every select has a counterpart: with no help from aborts, every select
 * completes and only `stuck` plain ops (whose counterpart a select took) are left waiting.
 */
function runLive(sc: Scenario, maxSteps: number, stuck = 0): void {
  const sim = new Sim(sc);
  assert.ok(sim.run(maxSteps), `no quiet within ${maxSteps} steps: a livelock`);
  const waiting = sim.clients.filter((c) => !c.finished);
  const selects = waiting.filter((c) => c instanceof Selector).map((c) => c.n);
  assert.deepEqual(selects, [], `deadlock: selectors ${selects} wait with nothing in flight`);
  assert.equal(waiting.length, stuck, `clients ${waiting.map((c) => c.n)} wait`);
  for (const c of sim.clients) {
    if (!(c instanceof Selector)) continue;
    assert.equal(
      c.selections.length,
      c.spec.rounds ?? 1,
      `selector ${c.n} stopped after ${c.selections.length} rounds`,
    );
    for (const s of c.selections) {
      assert.ok(s.result?.ok && (s.result.index ?? 0) >= 0, `${s.who} ended with ${JSON.stringify(s.result)}`);
    }
  }
  sim.checkNoMissedMatch();
  sim.abortAll();
  assert.ok(sim.run(sim.step + maxSteps));
  sim.checkFinal();
}

const quick = (c: Omit<Timing, "weight" | "crashDrop"> & { weight?: number }) => ({ crashDrop: 0, weight: 1, ...c });

const liveTiming = fc.record({ start: fc.nat(40), weight: fc.integer({ min: 1, max: 8 }) });

/**
 * Each property stops after a few seconds, searching or shrinking (a failure found by then is still
 * reported, with the smallest counterexample so far), so the file stays within its time.
 */
const BOUNDED = { interruptAfterTimeLimit: 4000 };

// ---------------------------------------------------------------------------------------------

describe("select protocol model", () => {
  test("random selects, plain ops, aborts and crashes keep every invariant", () => {
    fc.assert(
      fc.property(randomScenario({ closes: false }), (sc) => void simulate(sc)),
      { numRuns: 1500, ...BOUNDED },
    );
  });

  test("with channels closing under them too", () => {
    fc.assert(
      fc.property(randomScenario({ closes: true }), (sc) => void simulate(sc)),
      { numRuns: 1500, ...BOUNDED },
    );
  });

  test("N select-senders and N select-receivers over unbuffered channels all complete, round after round", () => {
    const sc = fc.integer({ min: 1, max: 3 }).chain((nch) =>
      fc.record({
        chans: fc.array(fc.record({ cap: fc.constant(0), host: fc.nat(2) }), { minLength: nch, maxLength: nch }),
        clients: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })).chain(([n, rounds]) =>
          fc.array(liveTiming, { minLength: 2 * n, maxLength: 2 * n }).map((ts) =>
            ts.map(
              (t, i): ClientSpec => ({
                kind: "select",
                poll: false,
                rounds,
                cases: Array.from({ length: nch }, (_, ch) => ({ ch, op: i < n ? "send" : "recv" })),
                ...quick(t),
              }),
            ),
          ),
        ),
        ids,
        closes: fc.constant([]),
        seed: fc.integer(),
      }),
    );
    fc.assert(
      fc.property(sc, (s) => runLive(s, 20_000)),
      { numRuns: 800, ...BOUNDED },
    );
  });

  test("selects sending on one channel and receiving on another, both ways, all complete", () => {
    // select([a.sendCase(x), b.recvCase()]) against select([a.recvCase(), b.sendCase(y)]), in
    // rounds: each client starts its next select as soon as the last one resolved.
    const sc = fc.record({
      chans: fc.array(fc.record({ cap: fc.constant(0), host: fc.nat(2) }), { minLength: 2, maxLength: 2 }),
      clients: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 })).chain(([n, rounds]) =>
        fc.array(fc.tuple(liveTiming, fc.boolean()), { minLength: 2 * n, maxLength: 2 * n }).map((ts) =>
          ts.map(([t, flip], i): ClientSpec => {
            const cases: CaseSpec[] =
              i < n
                ? [
                    { ch: 0, op: "send" },
                    { ch: 1, op: "recv" },
                  ]
                : [
                    { ch: 0, op: "recv" },
                    { ch: 1, op: "send" },
                  ];
            return { kind: "select", poll: false, rounds, cases: flip ? cases.reverse() : cases, ...quick(t) };
          }),
        ),
      ),
      ids,
      closes: fc.constant([]),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(sc, (s) => runLive(s, 20_000)),
      { numRuns: 800, ...BOUNDED },
    );
  });

  test("selects that each send and receive on one unbuffered channel pair up and all complete", () => {
    // Go: two goroutines each running `select { case ch <- v: case x := <-ch: }` meet.
    const sc = fc.record({
      chans: fc.constant([{ cap: 0, host: 0 }]),
      clients: fc.integer({ min: 1, max: 3 }).chain((n) =>
        fc.array(fc.tuple(liveTiming, fc.boolean()), { minLength: 2 * n, maxLength: 2 * n }).map((ts) =>
          ts.map(
            ([t, flip]): ClientSpec => ({
              kind: "select",
              poll: false,
              cases: flip
                ? [
                    { ch: 0, op: "recv" },
                    { ch: 0, op: "send" },
                  ]
                : [
                    { ch: 0, op: "send" },
                    { ch: 0, op: "recv" },
                  ],
              ...quick(t),
            }),
          ),
        ),
      ),
      ids,
      closes: fc.constant([]),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(sc, (s) => runLive(s, 20_000)),
      { numRuns: 500, ...BOUNDED },
    );
  });

  test("a select meets plain ops behind its own cases on three hosts", () => {
    // One select with a send and a recv case on each of three unbuffered channels, registered
    // first; then a plain receiver and a plain sender on each channel. The select takes one plain
    // op's place; every other plain op finds its plain counterpart.
    const sc = fc.record({
      chans: fc.constant([
        { cap: 0, host: 0 },
        { cap: 0, host: 1 },
        { cap: 0, host: 2 },
      ]),
      clients: fc.array(liveTiming, { minLength: 7, maxLength: 7 }).map((ts) => {
        const t = (i: number) => quick({ ...(ts[i] as { start: number; weight: number }) });
        return [
          {
            kind: "select" as const,
            poll: false,
            cases: [0, 1, 2].flatMap((ch) => [
              { ch, op: "recv" as const },
              { ch, op: "send" as const },
            ]),
            ...t(0),
            start: 0,
          },
          ...[0, 1, 2].flatMap((ch): ClientSpec[] => [
            { kind: "recv", ch, ...t(1 + 2 * ch), start: 10 + t(1 + 2 * ch).start },
            { kind: "send", ch, ...t(2 + 2 * ch), start: 10 + t(2 + 2 * ch).start },
          ]),
        ];
      }),
      ids,
      closes: fc.constant([]),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(sc, (s) => runLive(s, 20_000, 1)),
      { numRuns: 800, ...BOUNDED },
    );
  });

  test("a value a selector took and died before acknowledging goes back to the channel", () => {
    // A selector receives from a buffered channel and dies at every possible step; whatever the
    // step, the value is taken for good exactly once (by the select, or by the drain after the
    // crash). Where the selector had the value but its acknowledgement was lost, it was handed back.
    let handedBack = 0;
    for (let crash = 0; crash < 12; crash++) {
      for (let drop = 0; drop <= 1; drop++) {
        const sim = simulate({
          chans: [{ cap: 1, host: 0 }],
          clients: [
            { kind: "send", ch: 0, ...quick({ start: 0 }) },
            {
              kind: "select",
              poll: false,
              cases: [{ ch: 0, op: "recv" }],
              ...quick({ start: 0, crash }),
              crashDrop: drop,
            },
          ],
          ids: Array.from({ length: 2 * MAX_ROUNDS }, (_, i) => i + 1),
          closes: [],
          seed: crash * 7 + drop,
        });
        assert.equal(sim.finals.get("p0"), 1);
        const took = sim.takes.filter(([v]) => v === "p0").length;
        const back = sim.requeues.get("p0")?.length ?? 0;
        assert.equal(took, 1 + back, `crash at ${crash}, drop ${drop}: taken ${took} times, handed back ${back}`);
        handedBack += back;
      }
    }
    assert.ok(handedBack > 0, "no crash fell between a select taking the value and acknowledging it");
  });
});

// ---------------------------------------------------------------------------------------------
// Examples on the channel alone: each pins one defect found by the model (see the report).

interface LoggedCase extends SelectCase<string> {
  log: string[];
}

function kase(selector: number, op: Op, value?: string): LoggedCase {
  const log: string[] = [];
  return {
    selector,
    op,
    value,
    log,
    offer: (o: Offer<string>) => void log.push(`offer ${JSON.stringify(o)}`),
    withdraw: () => void log.push("withdraw"),
    settled: (o: Outcome<string> | undefined) => void log.push(`settled ${JSON.stringify(o ?? null)}`),
  };
}

/**
 * A closed channel of capacity 0 whose recv case `a` was offered "closed", then a value "v" that a
 * receiver had not acknowledged handed back into it (its connection closed).
 */
function closedThenHandedBack(): { ch: Channel<string>; a: LoggedCase } {
  const ch = new Channel<string>(0);
  ch.close(() => {});
  const a = kase(1, "recv");
  ch.selectCase(a);
  assert.deepEqual(a.log, ['offer {"closed":true}']);
  ch.requeue(["v"]);
  return { ch, a };
}

describe("select on one channel, by example", () => {
  test("a commit on an offer whose pair is gone cannot complete another selector's unasked half", () => {
    const ch = new Channel<string>(0);
    const a = kase(5, "recv");
    const b = kase(9, "send", "b");
    ch.selectCase(a);
    ch.selectCase(b);
    assert.deepEqual(a.log, ['offer {"value":"b","pair":true}']);
    // b's selector chose another case: a's pair is void. a must hear of it, or its offer is stale.
    ch.releaseCase(b);
    const c = kase(1, "send", "c");
    ch.selectCase(c);
    // c (the lower id) has been offered the new pair and has not committed to it.
    assert.deepEqual(c.log, ['offer {"pair":true}']);
    // a's selector acts on the offer it still holds.
    const r = ch.commitCase(a);
    assert.deepEqual(
      c.log,
      ['offer {"pair":true}'],
      "c's send happened although c's selector never committed to it (it may have completed another case)",
    );
    assert.equal(r.status, "failed", "the second half of a pair committed before the first half did");
  });

  test("the first half of a pair hears when the other half goes away", () => {
    const ch = new Channel<string>(0);
    const a = kase(5, "recv");
    const b = kase(9, "send", "b");
    ch.selectCase(a);
    ch.selectCase(b);
    ch.releaseCase(b);
    assert.deepEqual(a.log, ['offer {"value":"b","pair":true}', "withdraw"], "a still holds a void offer");
  });

  test("a select with a send and a recv case on one unbuffered channel meets another such select", () => {
    const ch = new Channel<string>(0);
    const a1 = kase(1, "send", "a");
    const a2 = kase(1, "recv");
    const b1 = kase(2, "send", "b");
    const b2 = kase(2, "recv");
    for (const c of [a1, a2, b1, b2]) ch.selectCase(c);
    const offered = [a1, a2, b1, b2].filter((c) => c.log.length > 0).length;
    assert.ok(offered > 0, "neither select was offered anything: they wait forever though they match");
  });

  test("a plain receiver behind a select's own recv case still meets that select's send case", () => {
    const ch = new Channel<string>(0);
    const recv = kase(1, "recv");
    const send = kase(1, "send", "x");
    ch.selectCase(recv);
    ch.selectCase(send);
    ch.recv({ take: () => {}, end: () => {} }, 1);
    assert.deepEqual(send.log, ["offer {}"], "the send case was not offered the waiting receiver");
  });

  test("a value reserved by a select still occupies its buffer slot", () => {
    const ch = new Channel<string>(1);
    ch.send({ value: "v1", done: () => {} });
    const a = kase(1, "recv");
    ch.selectCase(a);
    let v2 = false;
    ch.send({ value: "v2", done: () => (v2 = true) });
    ch.releaseCase(a);
    assert.ok(ch.stat().len <= 1, `cap 1 but ${ch.stat().len} values buffered after the select let go`);
    assert.equal(v2, false, "a send completed into a full buffer");
  });

  test("a receive on a closed channel reports closed only when no value is left, reserved ones included", () => {
    const ch = new Channel<string>(1);
    ch.send({ value: "v", done: () => {} });
    const a = kase(1, "recv");
    ch.selectCase(a);
    let got = "";
    ch.recv({ take: (v) => (got = `value ${v}`), end: (e) => (got = e.code) }, 1);
    ch.close(() => {});
    ch.releaseCase(a);
    assert.equal(got, "value v", "the receiver was told 'closed and drained' while v was still in the channel");
  });

  test("a recv case offered 'closed' takes a value handed back before it commits", () => {
    // Found by the random model (seed -1854412192): a receiver's connection closed after the
    // channel did, its unacknowledged value went back, and a select that had been offered
    // "closed" committed afterwards; it was told "closed" while the value sat in the channel.
    const { ch, a } = closedThenHandedBack();
    const r = ch.commitCase(a);
    assert.deepEqual(r, { status: "done", outcome: { value: "v" } });
    assert.equal(ch.stat().len, 0);
  });

  test("a recv case offered 'closed' is not told so while a value handed back is held for another case", () => {
    // Found by the random model (seed -485409326): the value handed back went to a later select's
    // offer, the select offered "closed" committed and was told "closed", then the later select
    // died, its value went back once more and left the channel after "closed and drained".
    const { ch, a } = closedThenHandedBack();
    const b = kase(2, "recv");
    ch.selectCase(b);
    assert.deepEqual(b.log, ['offer {"value":"v"}']);
    assert.deepEqual(ch.commitCase(a), { status: "failed" }, "a was told 'closed' while v was held for b");
    // b's selector gives the case up (it chose another, or died): v is a's now.
    ch.releaseCase(b);
    assert.deepEqual(a.log, ['offer {"closed":true}', 'offer {"value":"v"}']);
    assert.deepEqual(ch.commitCase(a), { status: "done", outcome: { value: "v" } });
    // Or b takes v: then a hears "closed" again, and may commit to it.
    const c = kase(3, "recv");
    ch.selectCase(c);
    ch.requeue(["w"]);
    const d = kase(4, "recv");
    ch.selectCase(d);
    assert.deepEqual(c.log, ['offer {"closed":true}']);
    assert.deepEqual(ch.commitCase(c), { status: "failed" });
    assert.deepEqual(ch.commitCase(d), { status: "done", outcome: { value: "w" } });
    assert.deepEqual(c.log, ['offer {"closed":true}', 'offer {"closed":true}']);
    assert.deepEqual(ch.commitCase(c), { status: "done", outcome: { closed: true } });
  });

  test("a plain sender held by a select case fails when the channel closes", () => {
    const ch = new Channel<string>(0);
    let res = "pending";
    ch.send({ value: "v", done: (e) => (res = e ? e.code : "ok") });
    const a = kase(1, "recv");
    ch.selectCase(a);
    ch.close(() => {});
    ch.releaseCase(a);
    assert.equal(res, "ChannelClosed", `a send blocked across close is ${res}; stat ${JSON.stringify(ch.stat())}`);
  });

  test("a send case on a closed buffered channel is offered the failure, not a slot", () => {
    const ch = new Channel<string>(1);
    ch.close(() => {});
    const a = kase(1, "send", "late");
    ch.selectCase(a);
    const r = ch.commitCase(a);
    assert.equal(ch.stat().len, 0, "a value entered a closed channel");
    assert.equal(r.status === "done" && r.outcome.error?.code, "ChannelClosed", `offers ${JSON.stringify(a.log)}`);
  });

  test("a select case whose reservation a scrub voids still ends", () => {
    const ch = new Channel<string>(1);
    ch.send({ value: "v", done: () => {} });
    const a = kase(1, "recv");
    ch.selectCase(a);
    ch.scrub(() => {});
    // Either a final (failing) offer after the withdraw, or the commit itself fails the select.
    const r = ch.commitCase(a);
    const ended = a.log.slice(1).some((l) => l.startsWith("offer")) || r.status === "done";
    assert.ok(ended, `the case was withdrawn and then forgotten: ${JSON.stringify(a.log)}, commit ${r.status}`);
  });
});
