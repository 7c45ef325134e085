// Cluster membership and failure detection: SWIM with the Lifeguard refinements, as a pure state
// machine. It never touches a socket, a timer or the wall clock: the driver feeds it messages and
// ticks, and pulls out the messages to send and the join/leave events. Time and randomness come
// from `env`, so a simulation (src/cluster/sim.ts) can run a thousand of these in one process.
//
// The protocol in brief:
//  - Each period one member is probed, round-robin over a shuffled list (a new member goes to a
//    random position), so every member is probed by everyone within n periods. No ack within the
//    probe timeout → k others are asked to probe it (ping-req); they answer with the forwarded ack
//    or a nack. No ack by the end of the period → the target is suspected.
//  - A suspicion expires into death after a window that starts long and shrinks as independent
//    suspicions from other members confirm it (Lifeguard). A suspected member that hears of it
//    refutes by raising its incarnation number; alive with a higher incarnation beats suspicion.
//  - Every change is gossiped by piggybacking on protocol messages, least-transmitted first;
//    a periodic full-state exchange (sync) with a random member repairs whatever gossip missed,
//    and a member whose peers count more live members than it does pulls a full state at once
//    (catch-up, for bursts of joins). A death the transport confirmed (connection refused) is
//    pushed as a rumour to k members, each of which passes it on once.
//  - Local health (Lifeguard): missed nacks, refutations and stalls of our own event loop make us
//    slower to judge others; successful probes bring us back.
//
// Message count per member per period is constant in cluster size: one ping and its ack, the acks
// to the (on average one) pings received, k ping-reqs with their pings and acks or nacks when a
// probe fails, and a sync every syncIntervalMs (whose size, unlike the others, grows with n).

import { Awareness } from "./awareness.js";
import type { SwimConfig } from "./config.js";
import { GossipQueue } from "./gossip-queue.js";
import { Suspicion } from "./suspicion.js";

export type MemberState = "alive" | "suspect" | "dead" | "left";

/** What this member believes about one member. */
export interface MemberView {
  id: string;
  /** The member's server URL, as it announced it. */
  addr: string;
  incarnation: number;
  state: MemberState;
  meta: Record<string, unknown>;
  /** env.now() when this member last became live (alive or suspect) in our view. */
  joinedAt: number;
}

/**
 * A change of the live set in our view. `join`: the member became live (alive or suspect) for the
 * first time, or again after being dead or left. `leave`: it became dead or left. Joins and leaves
 * of one member strictly alternate, starting with a join; suspect ↔ alive is not an event, and
 * there are no events about ourselves.
 */
export interface MembershipEvent {
  kind: "join" | "leave";
  member: MemberView;
}

/** A failure-detector decision worth a log line: a member suspected, or a suspicion refuted. */
export interface DetectorNote {
  kind: "suspect" | "refuted";
  id: string;
  addr: string;
  /** Who suspected (suspect), or who told us it is alive (refuted). */
  by: string;
}

/** One member's state as gossiped. `by` names who suspected it (suspect items only). */
export interface GossipItem {
  id: string;
  addr: string;
  inc: number;
  state: MemberState;
  meta?: Record<string, unknown>;
  by?: string;
}

/** Carried by every message. */
export interface SwimHeader {
  /** Sender's member id and address: a receiver learns about an unknown sender from these. */
  from: string;
  fromAddr: string;
  /** How many members the sender considers live: a receiver that knows fewer may be missing some. */
  live: number;
}

/** Plain data only, so that any MessagePack codec carries it unchanged. */
export type SwimMessage =
  | (SwimHeader & { t: "ping"; seq: number; gossip: GossipItem[] })
  | (SwimHeader & { t: "ack"; seq: number; gossip: GossipItem[] })
  /** An intermediary's "I asked, the target did not answer me either" (Lifeguard). */
  | (SwimHeader & { t: "nack"; seq: number; gossip: GossipItem[] })
  /** Probe `target` for me; answer `seq` with the target's ack or a nack. */
  | (SwimHeader & { t: "ping-req"; seq: number; target: string; targetAddr: string; gossip: GossipItem[] })
  /** Push-pull: the sender's whole state; `reply: false` asks for the receiver's in return. */
  | (SwimHeader & { t: "sync"; reply: boolean; members: GossipItem[] })
  /** One-way dissemination: a graceful leave, or a death the transport reported. */
  | (SwimHeader & { t: "gossip"; gossip: GossipItem[] });

/** A message for the driver to send. `to` is "" when the peer's id is not known yet (a join). */
export interface Outbound {
  to: string;
  addr: string;
  msg: SwimMessage;
}

export interface MembershipEnv {
  /** Milliseconds on any monotonic clock. */
  now(): number;
  /** Uniform in [0, 1). */
  random(): number;
}

export interface MembershipSelf {
  id: string;
  addr: string;
  meta?: Record<string, unknown>;
  /** Start at this incarnation (a restart that remembers its last one); 0 by default. */
  incarnation?: number;
}

interface Rec {
  id: string;
  addr: string;
  inc: number;
  state: MemberState;
  meta: Record<string, unknown>;
  joinedAt: number;
  /** When the state last became dead or left, for forgetting tombstones. */
  goneAt: number;
  /** A join was reported and its leave not yet: keeps events strictly alternating. */
  reported: boolean;
  /** Learned only from a message header: addr and meta are guesses until real gossip arrives. */
  provisional: boolean;
}

interface Probe {
  seq: number;
  target: string;
  timeoutAt: number;
  endAt: number;
  indirect: boolean;
  expectedNacks: number;
  nacks: number;
}

interface Relay {
  requester: string;
  requesterAddr: string;
  seq: number;
  deadline: number;
}

const STATES: ReadonlySet<string> = new Set(["alive", "suspect", "dead", "left"]);
const MAX_GOSSIP_IN = 1024;
const MAX_MEMBERS_IN = 1 << 20;
/** A peer counting this many more live members than we do is pulled from at once. */
const CATCH_UP_GAP = 2;

const isLive = (r: Rec): boolean => r.state === "alive" || r.state === "suspect";

/**
 * One member's view of the cluster. Inputs: tick(), receive(), join(), leave() and the transport
 * hints unreachable() and connectionLost(); outputs: drainOutbox(), drainEvents(), members(),
 * get(). Nothing happens between calls, and every call returns at once.
 */
export class Membership {
  private readonly cfg: SwimConfig;
  private readonly env: MembershipEnv;
  private readonly me: Rec;
  private readonly recs = new Map<string, Rec>();
  private liveN = 1;
  /** Gossip waiting to be piggybacked (the broadcast queue). */
  private readonly queue = new GossipQueue<GossipItem>();
  private outbox: Outbound[] = [];
  private events: MembershipEvent[] = [];
  private notes: DetectorNote[] = [];
  /** Failure-detector decisions so far, for metrics (plain counters: read, never reset). */
  readonly detector = { suspicions: 0, refutations: 0, deaths: 0, probeFailures: 0 };
  /** Round-robin probe order; may hold ids that are no longer live (skipped) until reshuffled. */
  private order: string[] = [];
  private orderAt = 0;
  private readonly probes = new Map<number, Probe>();
  private readonly probed = new Set<string>();
  private readonly relays = new Map<number, Relay>();
  private readonly suspicions = new Map<string, Suspicion>();
  /** Seeds being joined: when to retry next, and the current retry delay. */
  private readonly joining = new Map<string, { at: number; delay: number }>();
  private seq = 0;
  /** Lifeguard local health: probe intervals and timeouts scale by its multiplier. */
  private readonly awareness: Awareness;
  private lastTick: number | undefined;
  private stalledBefore = false;
  /** We were quiet at the last tick: a driver may have stopped ticking since (not a stall). */
  private quietAtLastTick = false;
  private nextProbeAt: number;
  private nextSyncAt: number;
  private nextReconnectAt: number;
  private nextCatchUpAt = 0;
  /**
   * When a member last became live in our view (reset by a death): a gap within catchUpLagMs of it
   * is taken for more of a burst of joins.
   */
  private learnedAt = Number.NEGATIVE_INFINITY;
  /** Since when, and at which live count of ours, peers have been telling us they know more. */
  private behindAt = 0;
  private behindCount = -1;
  private best: { id: string; addr: string; live: number } | undefined;
  private leaving = false;
  /** Our newer records of what the message being handled said (see receive). */
  private fixes: GossipItem[] = [];

  constructor(self: MembershipSelf, config: SwimConfig, env: MembershipEnv) {
    if (typeof self.id !== "string" || self.id === "") throw new TypeError("self.id must be a non-empty string");
    if (typeof self.addr !== "string") throw new TypeError("self.addr must be a string");
    const inc = self.incarnation ?? 0;
    if (!Number.isSafeInteger(inc) || inc < 0) throw new RangeError("self.incarnation must be an integer ≥ 0");
    this.cfg = { ...config };
    this.awareness = new Awareness(this.cfg.maxLocalHealth);
    this.env = env;
    const now = env.now();
    this.me = {
      id: self.id,
      addr: self.addr,
      inc,
      state: "alive",
      meta: self.meta ?? {},
      joinedAt: now,
      goneAt: 0,
      reported: false,
      provisional: false,
    };
    this.recs.set(self.id, this.me);
    this.queue.put(this.item(this.me));
    this.nextProbeAt = now + this.cfg.periodMs * env.random();
    this.nextSyncAt = now + this.jitter(this.cfg.syncIntervalMs);
    this.nextReconnectAt = now + this.jitter(this.cfg.reconnectIntervalMs);
  }

  get id(): string {
    return this.me.id;
  }

  get incarnation(): number {
    return this.me.inc;
  }

  /** The local health multiplier now in force (1 = healthy). */
  get healthMultiplier(): number {
    return this.awareness.multiplier;
  }

  // ---- outputs ------------------------------------------------------------------------------

  /** Messages to send since the last call, in order. Losing some is fine: the protocol expects loss. */
  drainOutbox(): Outbound[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** Suspicions and refutations since the last call (for the log; they are not membership events). */
  drainNotes(): DetectorNote[] {
    const out = this.notes;
    this.notes = [];
    return out;
  }

  /** Join and leave events since the last call, in the order they happened. */
  drainEvents(): MembershipEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  /** Every member we consider live (alive or suspect), ourselves included unless we left. */
  members(): MemberView[] {
    const out: MemberView[] = [];
    for (const r of this.recs.values()) if (isLive(r)) out.push(view(r));
    return out;
  }

  /** How many members(), without building them. */
  liveCount(): number {
    return this.liveN;
  }

  /** What we believe about `id`, dead and left members included while we remember them. */
  get(id: string): MemberView | undefined {
    const r = this.recs.get(id);
    return r ? view(r) : undefined;
  }

  /** What we believe of `id`'s state (get(id)?.state without building a view: simulations ask it n² times). */
  stateOf(id: string): MemberState | undefined {
    return this.recs.get(id)?.state;
  }

  // ---- inputs -------------------------------------------------------------------------------

  /**
   * Contacts a seed whose id we do not know: a full-state exchange, retried with capped
   * exponential backoff (joinRetryMs doubling up to joinRetryMaxMs) until some seed answers.
   */
  join(addr: string): void {
    if (this.leaving || addr === this.me.addr) return;
    this.joining.set(addr, { at: this.env.now() + this.cfg.joinRetryMs, delay: this.cfg.joinRetryMs });
    this.sendSync("", addr, false);
  }

  /**
   * Replaces our metadata (a server's load, say) and gossips it. Metadata changes only with an
   * incarnation, as memberlist's node updates do: the new item outbids the old one everywhere,
   * and a sync repairs whoever missed it. Callers bound the size and the rate: each call is one
   * gossip item retransmitted to O(log n) members.
   */
  updateMeta(meta: Record<string, unknown>): void {
    if (this.leaving) return;
    this.me.meta = meta;
    this.me.inc++;
    this.queue.put(this.item(this.me));
  }

  /** Stops retrying a join to `addr` (it failed for good, as the caller judges). */
  cancelJoin(addr: string): void {
    this.joining.delete(addr);
  }

  /** Seeds still being retried: none once any seed has answered. */
  pendingJoins(): string[] {
    return [...this.joining.keys()];
  }

  /** Graceful leave: we announce `left` to every live member at once and stop probing. */
  leave(): void {
    if (this.leaving) return;
    this.leaving = true;
    this.me.inc++;
    this.me.state = "left";
    this.me.goneAt = this.env.now();
    this.liveN--;
    const item = this.item(this.me);
    this.queue.put(item);
    // Leaving is rare and the process is about to go: tell everyone directly instead of waiting
    // for gossip, so the leave event is immediate everywhere.
    for (const r of this.recs.values()) {
      if (r !== this.me && isLive(r)) this.send(r.id, r.addr, { t: "gossip", ...this.header(), gossip: [item] });
    }
    this.probes.clear();
    this.probed.clear();
    this.relays.clear();
    this.suspicions.clear();
    this.joining.clear();
  }

  /**
   * Transport hint: a connection to `id` was refused, so its process is gone though its host
   * answers. It is dead at once, and a few members hear it directly; if it is in fact alive it
   * refutes with a higher incarnation the next time it hears of its death.
   */
  unreachable(id: string): void {
    const r = this.recs.get(id);
    if (this.leaving || !r || r === this.me || !isLive(r)) return;
    this.die(r, r.inc, "dead");
    this.pushDeaths([this.item(r)], id);
  }

  private pushDeaths(items: GossipItem[], except: string): void {
    for (const peer of this.randomLive(this.cfg.indirectProbes, except)) {
      this.send(peer.id, peer.addr, { t: "gossip", ...this.header(), gossip: this.piggyback(peer.id, items.slice()) });
    }
  }

  /** Transport hint: a connection to `id` was reset; probe it now rather than on its turn. */
  connectionLost(id: string): void {
    const r = this.recs.get(id);
    if (this.leaving || !r || r === this.me || !isLive(r) || this.probed.has(id)) return;
    this.startProbe(r, this.env.now());
  }

  /**
   * A message from the network. `from` is the sender's id as the transport knows it (from its
   * handshake; pass `msg.from` if it has none): a message whose `from` disagrees is dropped, as is
   * anything that is not a well-formed SwimMessage. Never throws on bad input.
   */
  receive(from: string, msg: SwimMessage): void {
    if (!isSwimMessage(msg) || msg.from !== from || from === this.me.id) return;
    if (this.leaving) {
      // Still answer pings, so a prober learns of our leave from the ack.
      if (msg.t === "ping") {
        this.send(from, msg.fromAddr, { t: "ack", ...this.header(), seq: msg.seq, gossip: [this.item(this.me)] });
      }
      return;
    }
    this.fixes = [];
    if (msg.t === "sync") {
      for (const it of msg.members) this.apply(it, true, from);
      this.fixes = [];
    } else if (msg.t === "gossip") {
      // A death the transport confirmed travels as a rumour: whoever learns it from one of these
      // passes it on to k others at once, so it reaches everyone in a few network hops rather
      // than a few probe periods. Each member forwards each death once.
      const fresh: GossipItem[] = [];
      for (const it of msg.gossip) {
        const before = this.recs.get(it.id);
        const wasLive = before !== undefined && isLive(before);
        this.apply(it, false, from);
        if (wasLive && it.state === "dead" && before.state === "dead") fresh.push(it);
      }
      if (fresh.length > 0) this.pushDeaths(fresh, from);
    } else {
      for (const it of msg.gossip) this.apply(it, false, from);
    }
    this.noteSender(from, msg.fromAddr);
    if (msg.t !== "sync") this.compareLive(from, msg.fromAddr, msg.live);
    // The sender gossiped something older than what we know (typically an accusation that has
    // since been refuted): correct it in our answer, or if we do not answer, gossip ours again.
    const fixes = this.fixes;
    this.fixes = [];
    if (msg.t !== "ping") for (const it of fixes) this.queue.put(it);
    switch (msg.t) {
      case "ping":
        this.send(from, msg.fromAddr, {
          t: "ack",
          ...this.header(),
          seq: msg.seq,
          gossip: this.piggyback(from, fixes.slice(0, this.cfg.maxPiggyback)),
        });
        return;
      case "ack":
        return this.onAck(msg.seq);
      case "nack": {
        const p = this.probes.get(msg.seq);
        if (p) p.nacks++;
        return;
      }
      case "ping-req":
        return this.onPingReq(from, msg.fromAddr, msg.seq, msg.target, msg.targetAddr);
      case "sync":
        if (msg.reply) this.joining.clear();
        else this.sendSync(from, msg.fromAddr, true);
        return;
      case "gossip":
        return;
    }
  }

  /**
   * True while tick() has nothing to do until an input comes: no other member known (not even a
   * dead one to reconnect to), no probe, relay, suspicion or join under way, not leaving. A driver
   * may stop ticking meanwhile (a server on its own then sleeps); the gap before its next tick is
   * not taken for a stall.
   */
  get quiet(): boolean {
    return (
      this.recs.size === 1 &&
      this.probes.size === 0 &&
      this.relays.size === 0 &&
      this.suspicions.size === 0 &&
      this.joining.size === 0 &&
      !this.leaving
    );
  }

  /**
   * Runs due protocol steps; call every 20–50 ms (stallMs must comfortably exceed the interval)
   * except while quiet.
   */
  tick(): void {
    const now = this.env.now();
    const stalled = this.lastTick !== undefined && !this.quietAtLastTick && now - this.lastTick > this.cfg.stallMs;
    this.quietAtLastTick = this.quiet;
    if (stalled) this.stalled(now - (this.lastTick as number) - this.cfg.stallMs);
    // The tick right after a stall decides nothing: the answers we are waiting for may be in the
    // input that piled up meanwhile, which the driver delivers before our next tick. (Only an
    // isolated stall: a driver that always ticks late must not switch judgement off.)
    const judge = !stalled || this.stalledBefore;
    this.stalledBefore = stalled;
    this.lastTick = now;
    if (this.leaving || !judge) return;

    for (const p of this.probes.values()) {
      if (!p.indirect && now >= p.timeoutAt) this.probeIndirectly(p);
      if (now >= p.endAt) this.probeFailed(p);
    }
    for (const [seq, r] of this.relays) {
      if (now < r.deadline) continue;
      this.relays.delete(seq);
      this.send(r.requester, r.requesterAddr, {
        t: "nack",
        ...this.header(),
        seq: r.seq,
        gossip: this.piggyback(r.requester),
      });
    }
    for (const [id, s] of this.suspicions) {
      const r = this.recs.get(id);
      if (r && now >= s.deadline) this.die(r, s.inc, "dead");
    }

    if (now >= this.nextProbeAt) {
      const period = this.cfg.periodMs * this.healthMultiplier;
      this.nextProbeAt = Math.max(this.nextProbeAt + period, now + period / 2);
      const target = this.nextTarget();
      if (target) this.startProbe(target, now);
    }
    if (now >= this.nextSyncAt) {
      this.nextSyncAt = now + this.jitter(this.cfg.syncIntervalMs);
      const [peer] = this.randomLive(1);
      if (peer) this.sendSync(peer.id, peer.addr, false);
    }
    if (now >= this.nextReconnectAt) {
      this.nextReconnectAt = now + this.jitter(this.cfg.reconnectIntervalMs);
      this.reconnect(now);
    }
    for (const [addr, j] of this.joining) {
      if (now < j.at) continue;
      j.delay = Math.min(j.delay * 2, Math.max(this.cfg.joinRetryMaxMs, this.cfg.joinRetryMs));
      j.at = now + j.delay;
      this.sendSync("", addr, false);
    }
  }

  // ---- probing ------------------------------------------------------------------------------

  private nextTarget(): Rec | undefined {
    for (let tries = 0; tries <= this.order.length + 1; tries++) {
      if (this.orderAt >= this.order.length) this.reshuffle();
      if (this.order.length === 0) return undefined;
      const r = this.recs.get(this.order[this.orderAt++] as string);
      if (r && r !== this.me && isLive(r) && !this.probed.has(r.id)) return r;
    }
    return undefined;
  }

  private reshuffle(): void {
    const ids: string[] = [];
    for (const r of this.recs.values()) if (r !== this.me && isLive(r)) ids.push(r.id);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = this.randInt(i + 1);
      const t = ids[i] as string;
      ids[i] = ids[j] as string;
      ids[j] = t;
    }
    this.order = ids;
    this.orderAt = 0;
  }

  /** A new member takes a random slot and the slot's occupant moves to the end: O(1), still fair. */
  private addToOrder(id: string): void {
    const j = this.randInt(this.order.length + 1);
    if (j === this.order.length) this.order.push(id);
    else {
      this.order.push(this.order[j] as string);
      this.order[j] = id;
    }
  }

  private startProbe(r: Rec, now: number): void {
    const m = this.healthMultiplier;
    const p: Probe = {
      seq: ++this.seq,
      target: r.id,
      timeoutAt: now + this.cfg.probeTimeoutMs * m,
      endAt: now + this.cfg.periodMs * m,
      indirect: false,
      expectedNacks: 0,
      nacks: 0,
    };
    this.probes.set(p.seq, p);
    this.probed.add(r.id);
    this.send(r.id, r.addr, { t: "ping", ...this.header(), seq: p.seq, gossip: this.piggyback(r.id) });
  }

  private probeIndirectly(p: Probe): void {
    p.indirect = true;
    const r = this.recs.get(p.target);
    if (!r) return;
    for (const peer of this.randomLive(this.cfg.indirectProbes, p.target)) {
      p.expectedNacks++;
      this.send(peer.id, peer.addr, {
        t: "ping-req",
        ...this.header(),
        seq: p.seq,
        target: r.id,
        targetAddr: r.addr,
        gossip: this.piggyback(peer.id),
      });
    }
  }

  private onAck(seq: number): void {
    const p = this.probes.get(seq);
    if (p) {
      this.probes.delete(seq);
      this.probed.delete(p.target);
      this.awareness.apply(-1);
      return;
    }
    const relay = this.relays.get(seq);
    if (relay) {
      this.relays.delete(seq);
      this.send(relay.requester, relay.requesterAddr, {
        t: "ack",
        ...this.header(),
        seq: relay.seq,
        gossip: this.piggyback(relay.requester),
      });
    }
  }

  private probeFailed(p: Probe): void {
    this.probes.delete(p.seq);
    this.probed.delete(p.target);
    // Lifeguard: helpers that did not even nack suggest our own links or event loop are the
    // problem, so we slow down; with no helpers at all we cannot tell, so we slow down a little too.
    if (p.expectedNacks === 0) this.awareness.apply(1);
    else if (p.nacks < p.expectedNacks) this.awareness.apply(p.expectedNacks - p.nacks);
    const r = this.recs.get(p.target);
    if (!r || !isLive(r)) return;
    this.detector.probeFailures++;
    if (r.state === "alive") this.suspect(r, r.inc, this.me.id);
    else this.confirm(r, this.me.id);
  }

  private onPingReq(requester: string, requesterAddr: string, seq: number, target: string, targetAddr: string): void {
    if (target === this.me.id) {
      this.send(requester, requesterAddr, { t: "ack", ...this.header(), seq, gossip: this.piggyback(requester) });
      return;
    }
    const mine = ++this.seq;
    // The nack must reach the requester before its period ends.
    this.relays.set(mine, {
      requester,
      requesterAddr,
      seq,
      deadline: this.env.now() + this.cfg.probeTimeoutMs * 0.8,
    });
    const addr = this.recs.get(target)?.addr ?? targetAddr;
    this.send(target, addr, { t: "ping", ...this.header(), seq: mine, gossip: this.piggyback(target) });
  }

  private forgetProbes(id: string): void {
    if (!this.probed.delete(id)) return;
    for (const [seq, p] of this.probes) if (p.target === id) this.probes.delete(seq);
  }

  /** Our own event loop was blocked: time we could not listen does not count against others. */
  private stalled(excess: number): void {
    for (const p of this.probes.values()) {
      p.timeoutAt += excess;
      p.endAt += excess;
    }
    for (const r of this.relays.values()) r.deadline += excess;
    for (const s of this.suspicions.values()) s.postpone(excess);
    this.nextProbeAt += excess;
    this.awareness.apply(1);
  }

  // ---- state changes ------------------------------------------------------------------------

  /**
   * Merges one item of gossip (or of a sync, where a death is only hearsay of uncertain age and is
   * downgraded to suspicion, giving a member that is alive after all the chance to refute).
   */
  private apply(it: GossipItem, viaSync: boolean, sender: string): void {
    const r = this.recs.get(it.id);
    // Only refutations are worth correcting on the spot; passing on deaths this way would spread
    // stale verdicts, e.g. across a healed partition, where a sync's softer rule applies instead.
    if (r && it.inc < r.inc && isLive(r)) this.fixes.push(this.item(r));
    if (r === this.me) return this.aboutMe(it);
    const state = viaSync && it.state === "dead" && r ? "suspect" : it.state;
    if (!r) {
      // Strangers are only worth knowing if live; tombstones of members we never met are not kept.
      if (state !== "alive" && state !== "suspect") return;
      const rec: Rec = {
        id: it.id,
        addr: it.addr,
        inc: it.inc,
        state: "alive",
        meta: it.meta ?? {},
        joinedAt: 0,
        goneAt: 0,
        reported: false,
        provisional: false,
      };
      this.recs.set(rec.id, rec);
      this.becomeLive(rec);
      if (state === "suspect") this.suspect(rec, it.inc, it.by ?? sender);
      // A stranger from someone's full state is old news to the sender, who gossips it already;
      // re-gossiping a whole state would flood the piggyback queue and delay real news. A joiner's
      // own record in its sync is news, though.
      else if (!viaSync || it.id === sender) this.queue.put(this.item(rec));
      return;
    }
    switch (state) {
      case "alive":
        if (it.inc > r.inc || (it.inc === r.inc && r.provisional && r.state === "alive")) {
          r.addr = it.addr;
          if (it.meta) r.meta = it.meta;
          r.provisional = false;
          r.inc = it.inc;
          const was = r.state;
          r.state = "alive";
          if (was === "suspect") {
            this.detector.refutations++;
            this.notes.push({ kind: "refuted", id: r.id, addr: r.addr, by: sender });
          }
          this.suspicions.delete(r.id);
          if (was === "dead" || was === "left") this.becomeLive(r);
          this.queue.put(this.item(r));
        }
        return;
      case "suspect":
        if (r.state === "alive" && it.inc >= r.inc) this.suspect(r, it.inc, it.by ?? sender);
        else if (r.state === "suspect" && it.inc > r.inc) this.suspect(r, it.inc, it.by ?? sender);
        else if (r.state === "suspect" && it.inc === r.inc) this.confirm(r, it.by ?? sender);
        return;
      case "dead":
        if (isLive(r) && it.inc >= r.inc) this.die(r, it.inc, "dead");
        return;
      case "left":
        if ((isLive(r) || r.state === "dead") && it.inc >= r.inc) this.die(r, it.inc, "left");
        return;
    }
  }

  /** Gossip about ourselves: anything that says we are not alive at our incarnation is refuted. */
  private aboutMe(it: GossipItem): void {
    if (it.state === "alive") {
      // A higher incarnation than ours, or our incarnation with another address, is a previous
      // life of ours (we restarted without remembering): outbid it.
      if (it.inc > this.me.inc || (it.inc === this.me.inc && it.addr !== this.me.addr)) this.refute(it.inc, false);
      return;
    }
    if (it.inc >= this.me.inc) this.refute(it.inc, true);
  }

  private refute(inc: number, accused: boolean): void {
    this.me.inc = inc + 1;
    if (accused) this.awareness.apply(1);
    this.queue.put(this.item(this.me));
  }

  private becomeLive(r: Rec): void {
    this.liveN++;
    this.behindCount = -1;
    r.joinedAt = this.env.now();
    this.learnedAt = r.joinedAt;
    this.addToOrder(r.id);
    if (!r.reported) {
      r.reported = true;
      this.events.push({ kind: "join", member: view(r) });
    }
  }

  private suspect(r: Rec, inc: number, by: string): void {
    const n = this.liveN;
    const scale = Math.max(1, Math.log10(n));
    const min = this.cfg.suspicionMinMs * scale;
    const max = Math.max(min, this.cfg.suspicionMaxMs * scale);
    // Members other than the suspect, the suspecter and us that could independently confirm.
    const k = Math.max(0, Math.min(this.cfg.suspicionConfirmations, n - 2));
    const s = new Suspicion(inc, by, { min, max, k }, this.env.now());
    if (r.state !== "suspect") {
      this.detector.suspicions++;
      this.notes.push({ kind: "suspect", id: r.id, addr: r.addr, by });
    }
    r.state = "suspect";
    r.inc = inc;
    this.suspicions.set(r.id, s);
    this.queue.put({ ...this.item(r), by });
  }

  /** An independent suspicion of an already suspected member shortens the window (Lifeguard). */
  private confirm(r: Rec, by: string): void {
    const s = this.suspicions.get(r.id);
    if (!s?.confirm(by)) return;
    // Pass the confirmation on so that others can count it too.
    this.queue.put({ ...this.item(r), by });
  }

  private die(r: Rec, inc: number, state: "dead" | "left"): void {
    const wasLive = isLive(r);
    if (state === "dead" && r.state !== "dead") this.detector.deaths++;
    r.state = state;
    r.inc = inc;
    r.goneAt = this.env.now();
    this.suspicions.delete(r.id);
    this.forgetProbes(r.id);
    if (wasLive) {
      this.liveN--;
      this.behindCount = -1;
      // A peer counting one more than us now may just not have heard of this death: no burst.
      this.learnedAt = Number.NEGATIVE_INFINITY;
      if (r.reported) {
        r.reported = false;
        this.events.push({ kind: "leave", member: view(r) });
      }
    }
    this.queue.put(this.item(r));
  }

  /** A message from a member we never heard of makes it known; its real record follows by gossip. */
  private noteSender(id: string, addr: string): void {
    if (this.recs.has(id)) return;
    const r: Rec = {
      id,
      addr,
      inc: 0,
      state: "alive",
      meta: {},
      joinedAt: 0,
      goneAt: 0,
      reported: false,
      provisional: true,
    };
    this.recs.set(id, r);
    this.becomeLive(r);
  }

  /**
   * Anti-entropy trigger: a peer that counts more live members than we do probably knows members
   * we do not. Several more (a burst of joins) → pull its full state now; one more → only if
   * gossip has not closed the gap within catchUpLagMs (the usual single join or death needs no
   * sync) — unless we ourselves learned of a new member within catchUpLagMs: joins are then coming
   * in a burst, whose members spread by full states (which are not re-gossiped), so gossip would
   * not close the gap and waiting for it would only add catchUpLagMs to the burst's convergence.
   */
  private compareLive(from: string, addr: string, live: number): void {
    const mine = this.liveN;
    if (live <= mine) return;
    const now = this.env.now();
    if (this.behindCount !== mine) {
      this.behindCount = mine;
      this.behindAt = now;
    }
    // Pull from the best-informed peer heard since the last pull (in a burst of joins, the latest
    // joiners and the seed know nearly everyone).
    if (!this.best || live > this.best.live) this.best = { id: from, addr, live };
    const burst = now - this.learnedAt < this.cfg.catchUpLagMs;
    if (live < mine + CATCH_UP_GAP && now - this.behindAt < this.cfg.catchUpLagMs && !burst) return;
    if (now < this.nextCatchUpAt) return;
    this.nextCatchUpAt = now + this.cfg.catchUpMs;
    this.sendSync(this.best.id, this.best.addr, false);
    this.best = undefined;
  }

  // ---- sync ---------------------------------------------------------------------------------

  private sendSync(to: string, addr: string, reply: boolean): void {
    const members: GossipItem[] = [];
    for (const r of this.recs.values()) {
      const it = this.item(r, true);
      if (r.state === "suspect") it.by = this.suspicions.get(r.id)?.by;
      members.push(it);
    }
    this.send(to, addr, { t: "sync", ...this.header(), reply, members });
  }

  /** Tries one member we believe dead (a healed partition is found this way) and drops old tombstones. */
  private reconnect(now: number): void {
    const dead: Rec[] = [];
    for (const [id, r] of this.recs) {
      if (isLive(r) || r === this.me) continue;
      if (now - r.goneAt > this.cfg.deadRetainMs) this.recs.delete(id);
      else if (r.state === "dead") dead.push(r);
    }
    const r = dead[this.randInt(dead.length)];
    if (r) this.sendSync(r.id, r.addr, false);
  }

  // ---- sending ------------------------------------------------------------------------------

  private header(): SwimHeader {
    return { from: this.me.id, fromAddr: this.me.addr, live: this.liveN };
  }

  private send(to: string, addr: string, msg: SwimMessage): void {
    this.outbox.push({ to, addr, msg });
  }

  /**
   * Gossip for a message to `to`: if we think `to` is suspect or dead we say so first (so it can
   * refute at once), then the least-sent items of the queue.
   */
  private piggyback(to: string, first: GossipItem[] = []): GossipItem[] {
    const out = first;
    const r = this.recs.get(to);
    if (r && r.state !== "alive" && out.length < this.cfg.maxPiggyback) out.push(this.item(r));
    const limit = this.cfg.retransmitMult * Math.ceil(Math.log10(this.liveN + 1));
    this.queue.take(this.cfg.maxPiggyback - out.length, limit, out);
    return out;
  }

  /** Metadata rides only on alive items (and full state): it changes only with an incarnation. */
  private item(r: Rec, withMeta = r.state === "alive"): GossipItem {
    const it: GossipItem = { id: r.id, addr: r.addr, inc: r.inc, state: r.state };
    if (withMeta) it.meta = r.meta;
    return it;
  }

  // ---- randomness ---------------------------------------------------------------------------

  private randInt(n: number): number {
    return Math.min(n - 1, Math.floor(this.env.random() * n));
  }

  private jitter(ms: number): number {
    return ms * (0.5 + this.env.random());
  }

  /** Up to `k` distinct alive members other than us and `except`, drawn at random. */
  private randomLive(k: number, except?: string): Rec[] {
    const out: Rec[] = [];
    if (k <= 0 || this.order.length === 0) return out;
    // Sampling the probe order is O(k) in the common case; it may hold stale ids, so we retry.
    const seen = new Set<string>();
    for (let tries = 0; tries < 4 * k + 8 && out.length < k; tries++) {
      const id = this.order[this.randInt(this.order.length)] as string;
      if (seen.has(id)) continue;
      seen.add(id);
      const r = this.recs.get(id);
      if (r && r !== this.me && r.state === "alive" && id !== except) out.push(r);
    }
    return out;
  }
}

function view(r: Rec): MemberView {
  return { id: r.id, addr: r.addr, incarnation: r.inc, state: r.state, meta: r.meta, joinedAt: r.joinedAt };
}

function isItem(x: unknown): x is GossipItem {
  if (typeof x !== "object" || x === null) return false;
  const it = x as Record<string, unknown>;
  return (
    typeof it.id === "string" &&
    typeof it.addr === "string" &&
    Number.isSafeInteger(it.inc) &&
    (it.inc as number) >= 0 &&
    typeof it.state === "string" &&
    STATES.has(it.state) &&
    (it.meta === undefined || (typeof it.meta === "object" && it.meta !== null)) &&
    (it.by === undefined || typeof it.by === "string")
  );
}

function isItems(x: unknown, max: number): x is GossipItem[] {
  return Array.isArray(x) && x.length <= max && x.every(isItem);
}

/** Shape check for a decoded message from the network; anything else is dropped unread. */
export function isSwimMessage(x: unknown): x is SwimMessage {
  if (typeof x !== "object" || x === null) return false;
  const m = x as Record<string, unknown>;
  if (typeof m.from !== "string" || typeof m.fromAddr !== "string" || !Number.isSafeInteger(m.live)) return false;
  switch (m.t) {
    case "ping":
    case "ack":
    case "nack":
      return Number.isSafeInteger(m.seq) && isItems(m.gossip, MAX_GOSSIP_IN);
    case "ping-req":
      return (
        Number.isSafeInteger(m.seq) &&
        typeof m.target === "string" &&
        typeof m.targetAddr === "string" &&
        isItems(m.gossip, MAX_GOSSIP_IN)
      );
    case "sync":
      return typeof m.reply === "boolean" && isItems(m.members, MAX_MEMBERS_IN);
    case "gossip":
      return isItems(m.gossip, MAX_GOSSIP_IN);
    default:
      return false;
  }
}
