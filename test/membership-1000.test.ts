// Membership (src/cluster/membership.ts) at 1,000 members, in the simulation (src/cluster/sim.ts):
// joins and failures spread within the bounds of DESIGN.md §6 and the message rate stays flat.
// Its own file: a thousand members' state makes it the slowest of the simulations, and it runs
// beside the rest of membership.test.ts rather than after it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFAULT_SWIM } from "../src/cluster/config.ts";
import { Sim } from "../src/cluster/sim.ts";

const PERIOD = DEFAULT_SWIM.periodMs;

// ---- 1,000 members -------------------------------------------------------------------------
// Issue #3: 1,000 members converge after a join or a failure within 10 protocol periods, with
// constant messages per member per period. The clusters start converged (Sim `joined`), rather
// than spending simulated (and real) time on a thousand joins first.

const isLive = (st: string | undefined) => st === "alive" || st === "suspect";

/** A converged cluster of `n`, run for a few periods so that nothing of its making is news. */
function joinedCluster(n: number, seed: number): Sim {
  const sim = new Sim({ n, seed, joined: true });
  assert.ok(sim.converged());
  sim.run(5 * PERIOD);
  assert.ok(sim.converged());
  return sim;
}

/** Index in eventLog (from `from` on) of the first leave of `member`, or -1. */
function firstLeave(sim: Sim, from: number, member: string): number {
  for (let i = from; i < sim.eventLog.length; i++) {
    const e = sim.eventLog[i]!;
    if (e.kind === "leave" && e.member.id === member) return i;
  }
  return -1;
}

describe("simulated cluster of 1,000", () => {
  const N = 1000;
  const BOUND = 10 * PERIOD;

  test("a member joining through any one member is known by all within 10 periods, and knows them all", () => {
    for (const [seed, via] of [
      [21, 617],
      [22, 0],
    ] as const) {
      const sim = joinedCluster(N, seed);
      const from = sim.eventLog.length;
      const joiner = sim.add({ via: sim.ids[via] });
      const t = sim.runUntil(() => sim.converged(), BOUND, 10);
      assert.ok(t >= 0, `seed ${seed}: converged within 10 periods`);
      const m = sim.member(joiner);
      assert.equal(m.liveCount(), N + 1);
      for (const id of sim.ids) assert.ok(isLive(m.get(id)?.state), `the joiner knows ${id}`);
      const joins = sim.eventLog.slice(from).filter((e) => e.member.id === joiner);
      assert.equal(joins.length, N, "one join event at each of the others");
      assert.deepEqual(
        sim.eventLog.slice(from).filter((e) => e.kind === "leave"),
        [],
        "no leave anywhere",
      );
    }
  });

  test("a crashed member is gone from every survivor's view within 10 periods", () => {
    const sim = joinedCluster(N, 23);
    // Connections reset: the transport tells every member that had one at once.
    const reset = sim.ids[400]!;
    sim.crash(reset, { reset: true });
    let t = sim.runUntil(() => sim.goneEverywhere(reset), BOUND, 10);
    assert.ok(t >= 0, "reset: gone everywhere within 10 periods");
    // Connections refused: found by whoever contacts it next, then pushed as a rumour.
    const refused = sim.ids[800]!;
    sim.crash(refused);
    t = sim.runUntil(() => sim.goneEverywhere(refused), BOUND, 10);
    assert.ok(t >= 0, "refused: gone everywhere within 10 periods");
    sim.run(5 * PERIOD);
    assert.ok(sim.converged());
  });

  test("a silent member, once declared dead by one member, is gone everywhere within 10 more periods", () => {
    const sim = joinedCluster(N, 24);
    const victim = sim.ids[321]!;
    const from = sim.eventLog.length;
    sim.silence(victim);
    // Suspicion lasts longer at 1,000 members (it scales with log10 n), so the first verdict
    // takes a while; the bound is on spreading it.
    const first = sim.runUntil(() => firstLeave(sim, from, victim) >= 0, 100 * PERIOD, 10);
    assert.ok(first >= 0, "declared dead by someone");
    const t = sim.runUntil(() => sim.goneEverywhere(victim), BOUND, 10);
    assert.ok(t >= 0, "gone everywhere within 10 periods of the first verdict");
    sim.run(5 * PERIOD);
    const leaves = sim.eventLog.slice(from).filter((e) => e.kind === "leave");
    assert.equal(leaves.length, N - 1, "one leave per survivor");
    assert.ok(leaves.every((e) => e.member.id === victim));
    assert.ok(sim.converged());
  });

  test("messages per member per period at 1,000 are within 2× of the figure at 10 and at 100", () => {
    const rate = (n: number) => {
      const sim = joinedCluster(n, 25);
      sim.resetStats();
      sim.run(50 * PERIOD);
      return sim.stats().perMemberPerPeriod;
    };
    const [r10, r100, r1000] = [rate(10), rate(100), rate(N)];
    assert.ok(r10 > 1 && r10 < 4, `10 members: ${r10}`);
    for (const r of [r10, r100]) {
      assert.ok(r1000 <= 2 * r && r <= 2 * r1000, `1,000 members: ${r1000} vs ${r} (10: ${r10}, 100: ${r100})`);
    }
  });
});
