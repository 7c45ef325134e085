// Membership (src/cluster/membership.ts): the SWIM/Lifeguard rules checked on one instance fed
// literal messages and a hand-driven clock, then whole clusters in the simulation
// (src/cluster/sim.ts) — joins, silent, paused, crashed, restarted and leaving members,
// partitions, message loss — with the bounds of DESIGN.md §6.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { DEFAULT_SWIM, type SwimConfig } from "../src/cluster/config.ts";
import {
  type GossipItem,
  Membership,
  type MembershipEvent,
  type Outbound,
  type SwimMessage,
} from "../src/cluster/membership.ts";
import { mulberry32, Sim } from "../src/cluster/sim.ts";

const PERIOD = DEFAULT_SWIM.periodMs;

// ---- one instance --------------------------------------------------------------------------

const SELF = "X000000000000self";
const addrOf = (id: string) => `circuit://h/${id}`;

function item(id: string, inc: number, state: GossipItem["state"], extra: Partial<GossipItem> = {}): GossipItem {
  return { id, addr: addrOf(id), inc, state, meta: {}, ...extra };
}

/** One Membership with a clock the test moves by hand. */
function single(config: Partial<SwimConfig> = {}) {
  let t = 1000;
  const m = new Membership(
    { id: SELF, addr: addrOf(SELF), meta: { v: 1 } },
    { ...DEFAULT_SWIM, ...config },
    {
      now: () => t,
      random: mulberry32(42),
    },
  );
  return {
    m,
    advance(ms: number) {
      t += ms;
    },
    /** Gossip carried by an ack nobody waits for: applies `items` and nothing else. */
    hear(from: string, items: GossipItem[]) {
      m.receive(from, { t: "ack", from, fromAddr: addrOf(from), live: 1, seq: -1, gossip: items });
    },
    events(): string[] {
      return m.drainEvents().map((e: MembershipEvent) => `${e.kind} ${e.member.id}`);
    },
    out(): Outbound[] {
      return m.drainOutbox();
    },
    /** Lets `ms` pass, ticking every 25 ms as a driver would. */
    run(ms: number) {
      for (let left = ms; left > 0; left -= 25) {
        t += Math.min(25, left);
        m.tick();
      }
    },
  };
}

/** A Membership that knows `ids` as alive at incarnation 0, with events and outbox drained. */
function withMembers(ids: string[], config: Partial<SwimConfig> = {}) {
  const s = single(config);
  s.hear(
    ids[0] as string,
    ids.map((id) => item(id, 0, "alive")),
  );
  s.events();
  s.out();
  return s;
}

function gossipOf(msg: SwimMessage): GossipItem[] {
  return msg.t === "sync" ? msg.members : msg.gossip;
}

describe("Membership rules", () => {
  test("a stranger's alive gossip is a join; suspect ↔ alive is not an event", () => {
    const s = single();
    s.hear("XA", [item("XA", 0, "alive"), item("XB", 0, "alive")]);
    assert.deepEqual(s.events(), ["join XA", "join XB"]);
    s.hear("XA", [item("XB", 0, "suspect", { by: "XA" })]);
    assert.equal(s.m.get("XB")?.state, "suspect");
    s.hear("XA", [item("XB", 0, "alive")]);
    assert.equal(s.m.get("XB")?.state, "suspect", "alive at the same incarnation does not clear suspicion");
    s.hear("XA", [item("XB", 1, "alive")]);
    assert.equal(s.m.get("XB")?.state, "alive");
    assert.equal(s.m.get("XB")?.incarnation, 1);
    assert.deepEqual(s.events(), []);
    assert.deepEqual(
      s.m
        .members()
        .map((v) => v.id)
        .sort(),
      [SELF, "XA", "XB"].sort(),
    );
  });

  test("dead overrides alive and suspect at an equal or higher incarnation only; a higher alive revives", () => {
    const s = withMembers(["XA", "XB"]);
    s.hear("XA", [item("XB", 2, "alive")]);
    s.hear("XA", [item("XB", 1, "dead")]);
    assert.equal(s.m.get("XB")?.state, "alive", "a stale death is ignored");
    s.hear("XA", [item("XB", 2, "suspect", { by: "XA" })]);
    s.hear("XA", [item("XB", 2, "dead")]);
    assert.equal(s.m.get("XB")?.state, "dead");
    assert.deepEqual(s.events(), ["leave XB"]);
    s.hear("XA", [item("XB", 2, "alive"), item("XB", 2, "suspect")]);
    assert.equal(s.m.get("XB")?.state, "dead", "nothing at the same incarnation revives the dead");
    s.hear("XA", [item("XB", 3, "alive")]);
    assert.equal(s.m.get("XB")?.state, "alive");
    s.hear("XA", [item("XB", 3, "alive")]);
    assert.deepEqual(s.events(), ["join XB"], "exactly one join when it comes back");
    assert.ok(!s.m.members().some((v) => v.state === "dead"));
  });

  test("left drops a member at once; dead after left is no second leave", () => {
    const s = withMembers(["XA", "XB"]);
    s.hear("XA", [item("XB", 1, "left")]);
    assert.equal(s.m.get("XB")?.state, "left");
    s.hear("XA", [item("XB", 1, "dead"), item("XB", 1, "suspect"), item("XB", 1, "alive")]);
    assert.deepEqual(s.events(), ["leave XB"]);
    assert.equal(s.m.liveCount(), 2);
  });

  test("gossip about strangers that are dead or left is not kept", () => {
    const s = withMembers(["XA"]);
    s.hear("XA", [item("XZ", 4, "dead"), item("XY", 1, "left")]);
    assert.equal(s.m.get("XZ"), undefined);
    assert.equal(s.m.get("XY"), undefined);
    assert.deepEqual(s.events(), []);
  });

  test("refutes its own suspicion or death with a higher incarnation and gossips it", () => {
    const s = withMembers(["XA"]);
    s.hear("XA", [item(SELF, 0, "suspect", { by: "XA" })]);
    assert.equal(s.m.incarnation, 1);
    s.hear("XA", [item(SELF, 5, "dead")]);
    assert.equal(s.m.incarnation, 6);
    s.hear("XA", [item(SELF, 3, "suspect"), item(SELF, 6, "alive")]);
    assert.equal(s.m.incarnation, 6, "stale accusations and our own alive change nothing");
    s.hear("XA", [item(SELF, 9, "alive")]);
    assert.equal(s.m.incarnation, 10, "a later life of ours we do not remember is outbid");
    assert.deepEqual(s.events(), [], "no events about ourselves");
    s.m.receive("XA", { t: "ping", from: "XA", fromAddr: addrOf("XA"), live: 2, seq: 7, gossip: [] });
    const [ack] = s.out();
    assert.equal(ack?.msg.t, "ack");
    const mine = gossipOf(ack!.msg).find((g) => g.id === SELF);
    assert.deepEqual(
      { inc: mine?.inc, state: mine?.state, meta: mine?.meta },
      { inc: 10, state: "alive", meta: { v: 1 } },
    );
  });

  test("answers a ping with an ack to its sender, and tells a sender it thinks dead so", () => {
    const s = withMembers(["XA", "XB"]);
    s.hear("XA", [item("XB", 0, "dead")]);
    s.out();
    s.m.receive("XB", { t: "ping", from: "XB", fromAddr: addrOf("XB"), live: 3, seq: 11, gossip: [] });
    const out = s.out();
    assert.equal(out.length, 1);
    const ack = out[0]!;
    assert.equal(ack.to, "XB");
    assert.equal(ack.addr, addrOf("XB"));
    assert.equal(ack.msg.t, "ack");
    assert.equal((ack.msg as { seq: number }).seq, 11);
    assert.equal(ack.msg.from, SELF);
    const about = gossipOf(ack.msg).find((g) => g.id === "XB");
    assert.equal(about?.state, "dead", "the ack carries our verdict so that XB can refute");
  });

  test("a ping carrying outdated gossip is answered with the newer record (a refutation it missed)", () => {
    const s = withMembers(["XA", "XB"]);
    s.hear("XA", [item(SELF, 0, "suspect", { by: "XA" }), item("XB", 3, "alive")]);
    s.out();
    s.m.receive("XA", {
      t: "ping",
      from: "XA",
      fromAddr: addrOf("XA"),
      live: 3,
      seq: 5,
      gossip: [item(SELF, 0, "suspect", { by: "XA" }), item("XB", 1, "suspect", { by: "XA" })],
    });
    const ack = s.out().find((o) => o.msg.t === "ack");
    assert.ok(ack);
    const g = gossipOf(ack.msg);
    assert.deepEqual(
      g.filter((i) => i.id === SELF || i.id === "XB").map((i) => `${i.id} ${i.state} ${i.inc}`),
      [`${SELF} alive 1`, "XB alive 3"],
    );
    assert.equal(s.m.incarnation, 1, "an old accusation is corrected, not refuted again");
  });

  test("a sender it never heard of becomes a member; its real record fills in the details", () => {
    const s = single();
    s.m.receive("XN", { t: "ping", from: "XN", fromAddr: addrOf("XN"), live: 5, seq: 1, gossip: [] });
    assert.deepEqual(s.events(), ["join XN"]);
    assert.equal(s.m.get("XN")?.state, "alive");
    s.hear("XN", [item("XN", 0, "alive", { meta: { role: "worker" } })]);
    assert.deepEqual(s.m.get("XN")?.meta, { role: "worker" });
    assert.deepEqual(s.events(), []);
  });

  test("a silent target gets a ping, then k ping-reqs, then is suspected, then dies", () => {
    const s = withMembers(["XA", "XB", "XC", "XD", "XE"]);
    let pinged: Outbound | undefined;
    for (let i = 0; i < 20 && !pinged; i++) {
      s.advance(25);
      s.m.tick();
      pinged = s.out().find((o) => o.msg.t === "ping");
    }
    assert.ok(pinged, "a probe within the first period");
    const target = pinged.to;
    s.advance(DEFAULT_SWIM.probeTimeoutMs);
    s.m.tick();
    const reqs = s.out().filter((o) => o.msg.t === "ping-req");
    assert.equal(reqs.length, DEFAULT_SWIM.indirectProbes);
    for (const r of reqs) {
      assert.notEqual(r.to, target);
      assert.equal((r.msg as { target: string }).target, target);
    }
    // Helpers that answer with nacks: the failure is the target's, not ours.
    for (const r of reqs) {
      s.m.receive(r.to, {
        t: "nack",
        from: r.to,
        fromAddr: r.addr,
        live: 6,
        seq: (r.msg as { seq: number }).seq,
        gossip: [],
      });
    }
    s.advance(PERIOD - DEFAULT_SWIM.probeTimeoutMs);
    s.m.tick();
    assert.equal(s.m.get(target)?.state, "suspect");
    assert.equal(s.m.healthMultiplier, 1, "all nacks arrived, so our local health is untouched");
    assert.deepEqual(s.events(), []);
    // Unconfirmed, the suspicion lasts suspicionMaxMs (6 members: the log10 scale is 1). Our own
    // later probes of the others go unanswered too here, so those are answered by hand.
    const answer = () => {
      for (const o of s.out()) {
        if (o.msg.t === "ping" && o.to !== target) {
          s.m.receive(o.to, { t: "ack", from: o.to, fromAddr: o.addr, live: 6, seq: o.msg.seq, gossip: [] });
        }
      }
    };
    for (let left = DEFAULT_SWIM.suspicionMaxMs - 50; left > 0; left -= 25) {
      s.run(25);
      answer();
    }
    assert.equal(s.m.get(target)?.state, "suspect");
    s.run(75);
    assert.equal(s.m.get(target)?.state, "dead");
    assert.deepEqual(s.events(), [`leave ${target}`]);
  });

  test("a forwarded ack (through a helper) or a direct one ends the probe without suspicion", () => {
    const s = withMembers(["XA", "XB", "XC"]);
    let ping: Outbound | undefined;
    for (let i = 0; i < 20 && !ping; i++) {
      s.advance(25);
      s.m.tick();
      ping = s.out().find((o) => o.msg.t === "ping");
    }
    assert.ok(ping);
    s.advance(DEFAULT_SWIM.probeTimeoutMs);
    s.m.tick();
    const req = s.out().find((o) => o.msg.t === "ping-req");
    assert.ok(req);
    s.m.receive(req.to, {
      t: "ack",
      from: req.to,
      fromAddr: req.addr,
      live: 4,
      seq: (ping.msg as { seq: number }).seq,
      gossip: [],
    });
    s.advance(PERIOD);
    s.m.tick();
    assert.equal(s.m.get(ping.to)?.state, "alive");
  });

  test("independent confirmations shorten a suspicion toward suspicionMinMs", () => {
    const s = withMembers(["XA", "XB", "XC", "XD", "XE"]);
    s.hear("XA", [item("XE", 0, "suspect", { by: "XA" })]);
    s.hear("XB", [item("XE", 0, "suspect", { by: "XB" })]);
    s.hear("XC", [item("XE", 0, "suspect", { by: "XC" })]);
    s.hear("XD", [item("XE", 0, "suspect", { by: "XD" })]);
    s.hear("XD", [item("XE", 0, "suspect", { by: "XD" })]); // the same confirmer twice counts once
    s.run(DEFAULT_SWIM.suspicionMinMs - 25);
    assert.equal(s.m.get("XE")?.state, "suspect");
    s.run(50);
    assert.equal(s.m.get("XE")?.state, "dead");
  });

  test("a refutation (alive at a higher incarnation) cancels the suspicion timer", () => {
    const s = withMembers(["XA", "XB", "XC"]);
    s.hear("XA", [item("XC", 0, "suspect", { by: "XA" })]);
    s.run(1000);
    s.hear("XB", [item("XC", 1, "alive")]);
    s.advance(DEFAULT_SWIM.suspicionMaxMs * 2);
    s.m.tick();
    assert.equal(s.m.get("XC")?.state, "alive");
    assert.deepEqual(s.events(), []);
  });

  test("unreachable: dead at once, and k members hear it directly", () => {
    const s = withMembers(["XA", "XB", "XC", "XD", "XE"]);
    s.m.unreachable("XC");
    assert.equal(s.m.get("XC")?.state, "dead");
    assert.deepEqual(s.events(), ["leave XC"]);
    const pushes = s.out().filter((o) => o.msg.t === "gossip");
    assert.equal(pushes.length, DEFAULT_SWIM.indirectProbes);
    for (const p of pushes) {
      assert.notEqual(p.to, "XC");
      assert.ok(gossipOf(p.msg).some((g) => g.id === "XC" && g.state === "dead"));
    }
    s.m.unreachable("XC");
    s.m.unreachable("Xunknown");
    assert.deepEqual(s.out(), []);
  });

  test("a death heard in a pushed rumour is passed on once", () => {
    const s = withMembers(["XA", "XB", "XC", "XD", "XE"]);
    const rumour: SwimMessage = {
      t: "gossip",
      from: "XA",
      fromAddr: addrOf("XA"),
      live: 5,
      gossip: [item("XC", 0, "dead")],
    };
    s.m.receive("XA", rumour);
    const fwd = s.out().filter((o) => o.msg.t === "gossip");
    assert.ok(fwd.length > 0 && fwd.length <= DEFAULT_SWIM.indirectProbes);
    assert.ok(fwd.every((o) => o.to !== "XA" && o.to !== "XC"));
    s.m.receive("XB", { ...rumour, from: "XB", fromAddr: addrOf("XB") });
    assert.deepEqual(
      s.out().filter((o) => o.msg.t === "gossip"),
      [],
    );
  });

  test("connectionLost probes the member at once", () => {
    const s = withMembers(["XA", "XB", "XC"]);
    s.m.connectionLost("XB");
    const [ping] = s.out();
    assert.equal(ping?.to, "XB");
    assert.equal(ping?.msg.t, "ping");
  });

  test("join sends our state to the seed, retries until a sync reply, and a seed answers in full", () => {
    const s = single();
    s.m.join("circuit://seed:7711");
    let [req] = s.out();
    assert.equal(req?.to, "");
    assert.equal(req?.addr, "circuit://seed:7711");
    assert.equal(req?.msg.t, "sync");
    assert.deepEqual(
      gossipOf(req!.msg).map((g) => g.id),
      [SELF],
    );
    s.advance(DEFAULT_SWIM.joinRetryMs);
    s.m.tick();
    [req] = s.out().filter((o) => o.msg.t === "sync");
    assert.equal(req?.addr, "circuit://seed:7711", "retried");
    s.m.receive("XS", {
      t: "sync",
      from: "XS",
      fromAddr: addrOf("XS"),
      live: 3,
      reply: true,
      members: [item("XS", 0, "alive"), item("XT", 2, "suspect", { by: "XS" }), item("XU", 1, "dead")],
    });
    assert.deepEqual(s.events(), ["join XS", "join XT"]);
    s.advance(DEFAULT_SWIM.joinRetryMs * 2);
    s.m.tick();
    assert.ok(!s.out().some((o) => o.msg.t === "sync" && o.to === ""), "no more retries once answered");

    // As a seed: a sync request is answered with everything we know.
    s.m.receive("XJ", {
      t: "sync",
      from: "XJ",
      fromAddr: addrOf("XJ"),
      live: 1,
      reply: false,
      members: [item("XJ", 0, "alive")],
    });
    const reply = s.out().find((o) => o.msg.t === "sync");
    assert.equal(reply?.to, "XJ");
    assert.ok(reply && reply.msg.t === "sync" && reply.msg.reply);
    assert.deepEqual(
      gossipOf(reply.msg)
        .map((g) => g.id)
        .sort(),
      [SELF, "XJ", "XS", "XT"].sort(),
    );
  });

  test("a death heard in a sync is only a suspicion, so a live member can refute", () => {
    const s = withMembers(["XA", "XB"]);
    s.m.receive("XA", {
      t: "sync",
      from: "XA",
      fromAddr: addrOf("XA"),
      live: 2,
      reply: true,
      members: [item("XB", 0, "dead")],
    });
    assert.equal(s.m.get("XB")?.state, "suspect");
    assert.deepEqual(s.events(), []);
  });

  test("leave tells every live member at once and stops probing", () => {
    const s = withMembers(["XA", "XB", "XC"]);
    s.m.leave();
    const out = s.out();
    assert.deepEqual(out.map((o) => o.to).sort(), ["XA", "XB", "XC"]);
    for (const o of out) {
      const me = gossipOf(o.msg).find((g) => g.id === SELF);
      assert.equal(me?.state, "left");
      assert.equal(me?.inc, 1);
    }
    assert.ok(!s.m.members().some((v) => v.id === SELF));
    s.advance(PERIOD * 10);
    s.m.tick();
    assert.deepEqual(s.out(), []);
  });

  test("a long gap between ticks (our own stall) does not turn overdue acks into suspicion", () => {
    const s = withMembers(["XA", "XB", "XC"]);
    let ping: Outbound | undefined;
    for (let i = 0; i < 20 && !ping; i++) {
      s.advance(25);
      s.m.tick();
      ping = s.out().find((o) => o.msg.t === "ping");
    }
    assert.ok(ping);
    s.advance(2000); // blocked; the ack sits unread in our input
    s.m.tick();
    assert.equal(s.m.healthMultiplier, 2, "a stall worsens our local health");
    s.m.receive(ping.to, {
      t: "ack",
      from: ping.to,
      fromAddr: ping.addr,
      live: 4,
      seq: (ping.msg as { seq: number }).seq,
      gossip: [],
    });
    for (let i = 0; i < 8; i++) {
      s.advance(25);
      s.m.tick();
    }
    assert.equal(s.m.get(ping.to)?.state, "alive");
  });

  test("alone and quiet it may go unticked: the gap is no stall, and a member heard of is probed at once", () => {
    const s = single();
    assert.equal(s.m.quiet, true, "on its own with nothing under way");
    s.run(100);
    s.advance(60_000); // its driver stopped ticking while it was quiet
    s.hear("XA", [item("XA", 0, "alive")]);
    assert.equal(s.m.quiet, false, "a member to probe");
    s.out();
    let ping: Outbound | undefined;
    for (let i = 0; i < 20 && !ping; i++) {
      s.advance(25);
      s.m.tick();
      ping = s.out().find((o) => o.msg.t === "ping");
    }
    assert.equal(ping?.to, "XA", "probed within 500 ms");
    assert.equal(s.m.healthMultiplier, 1, "no stall counted");
    const j = single();
    j.m.join(addrOf("XB"));
    assert.equal(j.m.quiet, false, "a join under way needs the ticks");
  });

  test("malformed input is ignored, not thrown", () => {
    const s = withMembers(["XA"]);
    const bad: unknown[] = [
      null,
      42,
      { t: "ping" },
      { t: "ping", from: "XA", fromAddr: "a", live: 1, seq: 1, gossip: [{ id: 1 }] },
      { t: "ping", from: "XA", fromAddr: "a", live: 1, seq: "1", gossip: [] },
      { t: "sync", from: "XA", fromAddr: "a", live: 1, reply: "yes", members: [] },
      { t: "nope", from: "XA", fromAddr: "a", live: 1 },
      { t: "ping", from: "XB", fromAddr: "a", live: 1, seq: 1, gossip: [] }, // claims another sender
    ];
    for (const msg of bad) s.m.receive("XA", msg as SwimMessage);
    assert.deepEqual(s.out(), []);
    assert.deepEqual(s.events(), []);
  });

  test("messages are plain data (no class instances, Maps or undefined-only fields needed)", () => {
    const s = withMembers(["XA", "XB"]);
    s.m.join("circuit://seed");
    s.m.connectionLost("XA");
    for (const o of s.out()) assert.deepEqual(JSON.parse(JSON.stringify(o.msg)), stripUndefined(o.msg));
  });
});

function stripUndefined(x: unknown): unknown {
  return JSON.parse(JSON.stringify(x));
}

// ---- simulated clusters --------------------------------------------------------------------

/** A cluster whose members joined the seed over `n × 20` ms and have converged, plus 2 s. */
function cluster(n: number, seed: number, opts: { loss?: number; delayMs?: [number, number] } = {}): Sim {
  const sim = new Sim({ n, seed, joinSpreadMs: n * 20, ...opts });
  sim.run(n * 20);
  const t = sim.runUntil(() => sim.converged(), 60_000);
  assert.ok(t >= 0, `cluster of ${n} converged`);
  sim.run(2000);
  return sim;
}

function leavesSince(sim: Sim, from: number): string[] {
  return sim.eventLog
    .slice(from)
    .filter((e) => e.kind === "leave")
    .map((e) => `${e.observer} saw ${e.member.id} leave at ${e.at.toFixed(0)}`);
}

describe("simulated cluster", () => {
  for (const [n, bound] of [
    [10, 5],
    [100, 10],
    [1000, 10],
  ] as const) {
    test(`${n} members joining one seed at once converge within ${bound} periods, one join each`, () => {
      const sim = new Sim({ n, seed: 11 });
      const t = sim.runUntil(() => sim.converged(), bound * PERIOD);
      assert.ok(t >= 0, `converged (after ${t} ms)`);
      const joins = new Map<string, { count: number; members: Set<string> }>();
      for (const e of sim.eventLog) {
        if (e.kind !== "join") continue;
        const j = joins.get(e.observer) ?? { count: 0, members: new Set<string>() };
        j.count++;
        j.members.add(e.member.id);
        joins.set(e.observer, j);
      }
      for (const id of sim.ids) {
        assert.equal(joins.get(id)?.count, n - 1, `${id}: one join per other member`);
        assert.equal(joins.get(id)?.members.size, n - 1);
      }
      assert.deepEqual(leavesSince(sim, 0), []);
    });
  }

  test("300 members joining one per period: everyone knows everyone within 10 periods of the last join", () => {
    const n = 300;
    const sim = new Sim({ n, seed: 5, joinSpreadMs: n * PERIOD });
    sim.run(n * PERIOD);
    const t = sim.runUntil(() => sim.converged(), 10 * PERIOD);
    assert.ok(t >= 0, "converged within 10 periods");
    assert.deepEqual(leavesSince(sim, 0), []);
  });

  test("a silent member is declared dead by every member within 5 s", () => {
    for (const seed of [1, 2, 3]) {
      const sim = cluster(10, seed);
      const victim = sim.ids[7] as string;
      const from = sim.eventLog.length;
      sim.silence(victim);
      const t = sim.runUntil(() => sim.goneEverywhere(victim), 5000, 25);
      assert.ok(t >= 0, `seed ${seed}: dead everywhere within 5 s`);
      sim.run(5000);
      const leaves = sim.eventLog.slice(from).filter((e) => e.kind === "leave");
      assert.equal(leaves.length, 9, "one leave per survivor");
      assert.ok(leaves.every((e) => e.member.id === victim));
      assert.ok(sim.converged());
    }
  });

  test("a member paused for 2 s is not declared dead by anyone", () => {
    for (const seed of [1, 2, 3, 4]) {
      for (const n of [10, 30]) {
        const sim = cluster(n, seed);
        const victim = sim.ids[n - 3] as string;
        const from = sim.eventLog.length;
        sim.pause(victim, 2000);
        sim.run(12_000);
        assert.deepEqual(leavesSince(sim, from), [], `seed ${seed}, n ${n}`);
        assert.ok(sim.member(victim).incarnation > 0, "it had to refute");
        assert.ok(sim.converged());
      }
    }
  });

  test("a crashed member (connections refused) is dead everywhere within 1 s", () => {
    for (const [n, seed] of [
      [10, 1],
      [10, 2],
      [100, 3],
    ] as const) {
      const sim = cluster(n, seed);
      const victim = sim.ids[n - 4] as string;
      sim.crash(victim);
      const t = sim.runUntil(() => sim.goneEverywhere(victim), 1000, 10);
      assert.ok(t >= 0, `n ${n}: dead everywhere within 1 s`);
    }
  });

  test("a crashed member whose connections are reset is dead everywhere within a few network hops", () => {
    const sim = cluster(100, 12);
    const victim = sim.ids[40] as string;
    sim.crash(victim, { reset: true });
    const t = sim.runUntil(() => sim.goneEverywhere(victim), 100, 5);
    assert.ok(t >= 0, "dead everywhere within 100 ms");
  });

  test("a crashed member restarted under the same id yields exactly one leave and one join per observer", () => {
    for (const incarnation of [undefined, 7]) {
      const sim = cluster(10, 4);
      const victim = sim.ids[5] as string;
      const from = sim.eventLog.length;
      sim.crash(victim);
      sim.run(3000);
      assert.ok(sim.goneEverywhere(victim));
      sim.restart(victim, { incarnation });
      const t = sim.runUntil(() => sim.converged(), 10_000);
      assert.ok(t >= 0, "the restarted member is back everywhere");
      sim.run(20_000); // long enough for any flapping to show
      for (const observer of sim.ids.filter((id) => id !== victim)) {
        const kinds = sim.eventLog
          .slice(from)
          .filter((e) => e.observer === observer && e.member.id === victim)
          .map((e) => e.kind);
        assert.deepEqual(kinds, ["leave", "join"], `${observer} (incarnation ${incarnation})`);
      }
      assert.ok(sim.converged());
    }
  });

  test("a graceful leave is seen by everyone at once and never undone", () => {
    const sim = cluster(10, 6);
    const leaver = sim.ids[3] as string;
    const from = sim.eventLog.length;
    const t0 = sim.now;
    sim.leave(leaver);
    sim.run(20);
    const leaves = sim.eventLog.slice(from).filter((e) => e.kind === "leave");
    assert.equal(leaves.length, 9);
    assert.ok(leaves.every((e) => e.member.id === leaver && e.at - t0 <= 10));
    sim.run(20_000);
    assert.equal(sim.eventLog.length - from, 9, "no further events");
    for (const id of sim.running()) assert.equal(sim.member(id).get(leaver)?.state, "left");
    assert.ok(sim.converged());
  });

  test("a partition into two groups, then healing, converges back to one view", () => {
    const sim = cluster(20, 8);
    const a = sim.ids.slice(0, 12);
    const b = sim.ids.slice(12);
    sim.partition(a, b);
    sim.run(15_000);
    for (const id of a) assert.deepEqual(sim.views().get(id), [...a].sort(), "side A sees only itself");
    for (const id of b) assert.deepEqual(sim.views().get(id), [...b].sort(), "side B sees only itself");
    const from = sim.eventLog.length;
    sim.heal();
    const t = sim.runUntil(() => sim.converged(), 60_000);
    assert.ok(t >= 0, `healed (after ${t} ms)`);
    sim.run(20_000);
    assert.ok(sim.converged());
    // After the heal each member sees each member of the other side join exactly once.
    for (const id of a) {
      const joins = sim.eventLog.slice(from).filter((e) => e.observer === id);
      assert.deepEqual(
        joins.map((e) => e.kind).sort(),
        b.map(() => "join"),
      );
    }
  });

  test("messages per member per period stay constant from 10 to 100 members", () => {
    const rate = (n: number) => {
      const sim = cluster(n, 9);
      sim.run(10_000);
      sim.resetStats();
      sim.run(20_000);
      return sim.stats().perMemberPerPeriod;
    };
    const r10 = rate(10);
    const r100 = rate(100);
    assert.ok(r10 > 1 && r10 < 4, `10 members: ${r10}`);
    assert.ok(r100 / r10 <= 2, `100 members: ${r100} vs ${r10}`);
  });

  test("with 5% message loss no member of 20 is declared dead over 60 s", () => {
    const sim = cluster(20, 10, { loss: 0.05 });
    const from = sim.eventLog.length;
    sim.run(60_000);
    assert.deepEqual(leavesSince(sim, from), []);
    assert.ok(sim.converged());
  });

  test("property: random loss ≤ 2% and random delays never kill a healthy member", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 12 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.double({ min: 0, max: 0.02, noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 30 }),
        (n, seed, loss, lo, span) => {
          const sim = new Sim({ n, seed, loss, delayMs: [lo, lo + span], joinSpreadMs: n * 20 });
          sim.run(n * 20);
          const t = sim.runUntil(() => sim.converged(), 30_000);
          assert.ok(t >= 0, "converged");
          sim.run(20_000);
          assert.deepEqual(leavesSince(sim, 0), []);
          assert.ok(sim.converged());
        },
      ),
      { numRuns: 20 },
    );
  });
});
