// An in-process simulation of a cluster of Membership instances: a simulated clock, a network with
// per-message delay and loss, partitions, and the ways a member can fail — silent (SIGSTOP, a cut
// cable), crashed (the process is gone; the transport's connection is refused), busy (the event
// loop is blocked for a while, then works through its backlog) — plus graceful leave and restart.
// Deterministic for a given seed. Used by the tests and by bench/membership.ts.

import { DEFAULT_SWIM, type SwimConfig } from "./config.js";
import { Membership, type MembershipEvent, type SwimMessage } from "./membership.js";

/** mulberry32: a small, fast, seedable PRNG; good enough for simulation, not for secrets. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimOptions {
  /** Members to start with; the first is the seed the others join. */
  n: number;
  /** Overrides of DEFAULT_SWIM. */
  config?: Partial<SwimConfig>;
  seed?: number;
  /** One-way delay of each message, uniform in [min, max] ms. Default [1, 5]. */
  delayMs?: [number, number];
  /** Probability that any one message is lost. Default 0. */
  loss?: number;
  /** How often each member's tick() runs. Default 25 ms. */
  tickMs?: number;
  /** Members 2…n join the seed at uniformly random times in [0, joinSpreadMs]. Default 0. */
  joinSpreadMs?: number;
  /**
   * Start from a converged cluster instead: before the clock starts every member already knows all
   * n as alive at incarnation 0, as after a completed join and a full-state sync (these initial
   * joins are not in eventLog). Costs O(n²) once, instead of simulating the joins. Default false.
   */
  joined?: boolean;
  /** How long a refused connection takes to be reported to the sender. Default 1 ms. */
  refuseDelayMs?: number;
}

export type NodeStatus = "running" | "silent" | "crashed" | "stopped";

export interface SimEvent extends MembershipEvent {
  at: number;
  observer: string;
}

export interface SimStats {
  /** Simulated milliseconds since the last resetStats(). */
  elapsedMs: number;
  periods: number;
  sent: number;
  lost: number;
  /** Mean messages sent per member per probe period, over members running the whole window. */
  perMemberPerPeriod: number;
  /** The busiest such member's rate. */
  maxPerMemberPerPeriod: number;
  /** Mean gossip items piggybacked per non-sync message. */
  itemsPerMessage: number;
  /** Sync (full-state) messages, and their mean size in items. */
  syncs: number;
  itemsPerSync: number;
}

interface Node {
  id: string;
  addr: string;
  m: Membership;
  status: NodeStatus;
  /** Bumped on crash/restart so that events scheduled for a previous life are ignored. */
  gen: number;
  busyUntil: number;
  backlog: { from: string; msg: SwimMessage }[];
  sent: number;
  startedAt: number;
}

type Ev =
  | { kind: "tick"; node: Node; gen: number }
  | { kind: "deliver"; node: Node; addr: string; to: string; msg: SwimMessage }
  | { kind: "refused"; node: Node; gen: number; target: string }
  | { kind: "reset"; node: Node; gen: number; target: string }
  | { kind: "resume"; node: Node; gen: number }
  | { kind: "join"; node: Node; gen: number; addr: string };

interface Scheduled {
  at: number;
  seq: number;
  ev: Ev;
}

/** A binary min-heap on (at, seq): events at the same instant run in the order scheduled. */
class EventQueue {
  private readonly heap: Scheduled[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  peekAt(): number {
    return this.heap[0]?.at ?? Number.POSITIVE_INFINITY;
  }

  push(at: number, ev: Ev): void {
    const h = this.heap;
    const item = { at, seq: this.seq++, ev };
    let i = h.length;
    h.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(item, h[p] as Scheduled)) break;
      h[i] = h[p] as Scheduled;
      i = p;
    }
    h[i] = item;
  }

  pop(): Scheduled | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (!top || !last || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r] as Scheduled, h[l] as Scheduled) ? r : l;
      if (!before(h[c] as Scheduled, last)) break;
      h[i] = h[c] as Scheduled;
      i = c;
    }
    h[i] = last;
    return top;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export class Sim {
  readonly config: SwimConfig;
  /** Member ids in creation order; ids[0] is the seed. */
  readonly ids: string[] = [];
  readonly eventLog: SimEvent[] = [];
  now = 0;
  delayMs: [number, number];
  loss: number;
  private readonly tickMs: number;
  private readonly refuseDelayMs: number;
  private readonly rng: () => number;
  private readonly q = new EventQueue();
  private readonly nodes = new Map<string, Node>();
  private readonly byAddr = new Map<string, Node>();
  private groups = new Map<string, number>();
  private statsSince = 0;
  private lost = 0;
  private items = 0;
  private gossipMsgs = 0;
  private syncs = 0;
  private syncItems = 0;

  constructor(opts: SimOptions) {
    this.config = { ...DEFAULT_SWIM, ...opts.config };
    this.rng = mulberry32(opts.seed ?? 1);
    this.delayMs = opts.delayMs ?? [1, 5];
    this.loss = opts.loss ?? 0;
    this.tickMs = opts.tickMs ?? 25;
    this.refuseDelayMs = opts.refuseDelayMs ?? 1;
    const spread = opts.joinSpreadMs ?? 0;
    for (let i = 0; i < opts.n; i++) {
      const id = this.add({ join: false });
      if (i > 0 && !opts.joined) this.scheduleJoin(id, this.ids[0] as string, spread * this.rng());
    }
    if (opts.joined) this.preJoin();
  }

  /** Every member receives everyone's record as a full state from another member; nothing is sent. */
  private preJoin(): void {
    const members = this.ids.map((id) => ({ id, addr: this.node(id).addr, inc: 0, state: "alive" as const, meta: {} }));
    for (const n of this.nodes.values()) {
      const from = this.ids.find((id) => id !== n.id);
      if (from === undefined) return;
      const fromAddr = this.node(from).addr;
      n.m.receive(from, { t: "sync", from, fromAddr, live: members.length, reply: true, members });
      n.m.drainOutbox();
      n.m.drainEvents();
    }
  }

  /** Creates a member (ids are `X` + 16 hex digits) and, unless `join: false`, has it join `via` now. */
  add(opts: { join?: boolean; via?: string } = {}): string {
    const id = `X${(this.ids.length + 1).toString(16).padStart(16, "0")}`;
    this.ids.push(id);
    const node = this.start(id, `sim://${id}`, 0);
    if (opts.join !== false) this.scheduleJoin(node.id, opts.via ?? this.anyRunning(node.id), 0);
    return id;
  }

  /** The Membership instance of a member (for direct inspection in tests). */
  member(id: string): Membership {
    return this.node(id).m;
  }

  status(id: string): NodeStatus {
    return this.node(id).status;
  }

  /** Runs the simulation for `ms` simulated milliseconds. */
  run(ms: number): void {
    const end = this.now + ms;
    while (this.q.size > 0 && this.q.peekAt() <= end) {
      const s = this.q.pop() as Scheduled;
      this.now = s.at;
      this.dispatch(s.ev);
    }
    this.now = end;
  }

  /**
   * Runs until `pred` holds (checked every `stepMs`) or `maxMs` passes; returns the simulated
   * time it took, or -1 if it never held.
   */
  runUntil(pred: () => boolean, maxMs: number, stepMs = this.config.periodMs): number {
    const start = this.now;
    for (;;) {
      if (pred()) return this.now - start;
      if (this.now - start >= maxMs) return -1;
      this.run(stepMs);
    }
  }

  /**
   * The process is gone: messages to it are refused, which the sender's transport reports. With
   * `reset`, every member that has it live also sees its connection reset (what TCP does when a
   * process dies with connections open, assuming a full mesh).
   */
  crash(id: string, opts: { reset?: boolean } = {}): void {
    const n = this.node(id);
    n.status = "crashed";
    n.gen++;
    n.backlog = [];
    if (!opts.reset) return;
    for (const peer of this.nodes.values()) {
      const st = peer.status === "running" && peer.id !== id ? peer.m.stateOf(id) : undefined;
      if (st === "alive" || st === "suspect") {
        this.q.push(this.now + this.refuseDelayMs, { kind: "reset", node: peer, gen: peer.gen, target: id });
      }
    }
  }

  /** Stops processing and answering for good, like SIGSTOP or a cut cable: messages vanish. */
  silence(id: string): void {
    const n = this.node(id);
    n.status = "silent";
    n.backlog = [];
  }

  /** Blocks the member's event loop for `ms`; it then ticks and works through its backlog. */
  pause(id: string, ms: number): void {
    const n = this.node(id);
    n.busyUntil = Math.max(n.busyUntil, this.now + ms);
    this.q.push(n.busyUntil, { kind: "resume", node: n, gen: n.gen });
  }

  /** Graceful leave; the process then exits (later connections to it are refused). */
  leave(id: string): void {
    const n = this.node(id);
    n.m.leave();
    this.flush(n);
    n.status = "stopped";
    n.gen++;
  }

  /**
   * Starts a member again under the same id and address with fresh state (or a remembered
   * incarnation), joining through `via` (any running member by default).
   */
  restart(id: string, opts: { incarnation?: number; via?: string } = {}): void {
    const old = this.node(id);
    const n = this.start(id, old.addr, old.gen + 1, opts.incarnation);
    this.scheduleJoin(n.id, opts.via ?? this.anyRunning(id), 0);
  }

  /** Members in different groups cannot exchange messages (silently lost); others are unaffected. */
  partition(...groups: string[][]): void {
    this.groups = new Map();
    groups.forEach((g, i) => {
      for (const id of g) this.groups.set(id, i);
    });
  }

  heal(): void {
    this.groups = new Map();
  }

  /** Members that are running (busy ones included): the live set every view should converge to. */
  running(): string[] {
    return [...this.nodes.values()].filter((n) => n.status === "running").map((n) => n.id);
  }

  /** Each running member's live set, sorted. */
  views(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const n of this.nodes.values()) {
      if (n.status !== "running") continue;
      out.set(
        n.id,
        n.m
          .members()
          .map((v) => v.id)
          .sort(),
      );
    }
    return out;
  }

  /** Every running member that is not busy sees exactly the running members as live. */
  converged(): boolean {
    const expect = this.running();
    const asked = [...this.nodes.values()].filter((n) => n.status === "running" && n.busyUntil <= this.now);
    // Counts first: while a change spreads, most calls end here in O(n) instead of O(n²).
    if (asked.some((n) => n.m.liveCount() !== expect.length)) return false;
    for (const n of asked) {
      for (const id of expect) {
        const st = n.m.stateOf(id);
        if (st !== "alive" && st !== "suspect") return false;
      }
    }
    return true;
  }

  /** Every running member other than `id` considers it dead, left, or does not know it. */
  goneEverywhere(id: string): boolean {
    for (const n of this.nodes.values()) {
      if (n.status !== "running" || n.id === id) continue;
      const st = n.m.stateOf(id);
      if (st === "alive" || st === "suspect") return false;
    }
    return true;
  }

  /** Events observed about `member` (by every observer, or one). */
  eventsAbout(member: string, observer?: string): SimEvent[] {
    return this.eventLog.filter((e) => e.member.id === member && (observer === undefined || e.observer === observer));
  }

  resetStats(): void {
    this.statsSince = this.now;
    this.lost = 0;
    this.items = 0;
    this.gossipMsgs = 0;
    this.syncs = 0;
    this.syncItems = 0;
    for (const n of this.nodes.values()) n.sent = 0;
  }

  stats(): SimStats {
    const elapsedMs = this.now - this.statsSince;
    const periods = elapsedMs / this.config.periodMs;
    let sent = 0;
    let count = 0;
    let max = 0;
    let total = 0;
    for (const n of this.nodes.values()) {
      total += n.sent;
      if (n.status !== "running" || n.startedAt > this.statsSince || periods === 0) continue;
      const rate = n.sent / periods;
      sent += rate;
      count++;
      max = Math.max(max, rate);
    }
    return {
      elapsedMs,
      periods,
      sent: total,
      lost: this.lost,
      perMemberPerPeriod: count ? sent / count : 0,
      maxPerMemberPerPeriod: max,
      itemsPerMessage: this.gossipMsgs ? this.items / this.gossipMsgs : 0,
      syncs: this.syncs,
      itemsPerSync: this.syncs ? this.syncItems / this.syncs : 0,
    };
  }

  // ---- internals ----------------------------------------------------------------------------

  private node(id: string): Node {
    const n = this.nodes.get(id);
    if (!n) throw new RangeError(`no simulated member ${id}`);
    return n;
  }

  private anyRunning(except: string): string {
    for (const n of this.nodes.values()) if (n.status === "running" && n.id !== except) return n.id;
    return except;
  }

  private start(id: string, addr: string, gen: number, incarnation?: number): Node {
    const random = mulberry32((this.rng() * 2 ** 32) >>> 0);
    const m = new Membership({ id, addr, incarnation }, this.config, { now: () => this.now, random });
    const node: Node = { id, addr, m, status: "running", gen, busyUntil: 0, backlog: [], sent: 0, startedAt: this.now };
    this.nodes.set(id, node);
    this.byAddr.set(addr, node);
    // Spread the members' tick phases so they do not all act at the same instant.
    this.q.push(this.now + this.tickMs * this.rng(), { kind: "tick", node, gen });
    return node;
  }

  private scheduleJoin(id: string, via: string, delay: number): void {
    const node = this.node(id);
    this.q.push(this.now + delay, { kind: "join", node, gen: node.gen, addr: this.node(via).addr });
  }

  private dispatch(ev: Ev): void {
    const n = ev.node;
    switch (ev.kind) {
      case "tick":
        if (ev.gen !== n.gen || n.status === "crashed" || n.status === "stopped") return;
        this.q.push(this.now + this.tickMs, ev);
        if (n.status !== "running" || n.busyUntil > this.now) return;
        n.m.tick();
        this.flush(n);
        return;
      case "join":
        if (ev.gen !== n.gen || n.status !== "running") return;
        n.m.join(ev.addr);
        this.flush(n);
        return;
      case "resume":
        if (ev.gen !== n.gen || n.status !== "running" || n.busyUntil > this.now) return;
        // A blocked event loop wakes to overdue timers first, then the input that piled up.
        n.m.tick();
        for (const { from, msg } of n.backlog.splice(0)) n.m.receive(from, msg);
        this.flush(n);
        return;
      case "refused":
      case "reset":
        if (ev.gen !== n.gen || n.status !== "running") return;
        if (n.busyUntil > this.now) return; // a busy member would see it later; rare enough to drop
        if (ev.kind === "refused") n.m.unreachable(ev.target);
        else n.m.connectionLost(ev.target);
        this.flush(n);
        return;
      case "deliver":
        return this.deliver(n, ev.addr, ev.to, ev.msg);
    }
  }

  /** `sender` is the sending node; `addr` and `to` are where and to whom it sent. */
  private deliver(sender: Node, addr: string, to: string, msg: SwimMessage): void {
    const n = this.byAddr.get(addr);
    if (!n) return;
    const from = sender.id;
    if (n.status === "crashed" || n.status === "stopped") {
      // The transport reports the refusal under the id it meant to reach; a join knows none.
      if (to !== "")
        this.q.push(this.now + this.refuseDelayMs, { kind: "refused", node: sender, gen: sender.gen, target: to });
      return;
    }
    if (n.status === "silent") return;
    if (n.busyUntil > this.now) {
      n.backlog.push({ from, msg });
      return;
    }
    n.m.receive(from, msg);
    this.flush(n);
  }

  private flush(n: Node): void {
    for (const out of n.m.drainOutbox()) {
      n.sent++;
      if (out.msg.t === "sync") {
        this.syncs++;
        this.syncItems += out.msg.members.length;
      } else {
        this.gossipMsgs++;
        this.items += out.msg.gossip.length;
      }
      const to = this.byAddr.get(out.addr);
      if (!to) continue;
      const ga = this.groups.get(n.id);
      const gb = this.groups.get(to.id);
      if ((ga !== undefined && gb !== undefined && ga !== gb) || this.rng() < this.loss) {
        this.lost++;
        continue;
      }
      const [lo, hi] = this.delayMs;
      this.q.push(this.now + lo + (hi - lo) * this.rng(), {
        kind: "deliver",
        node: n,
        addr: out.addr,
        to: out.to,
        msg: out.msg,
      });
    }
    for (const e of n.m.drainEvents()) this.eventLog.push({ ...e, at: this.now, observer: n.id });
  }
}
