// Scenario `membership`: the SWIM/Lifeguard membership layer (src/cluster/membership.ts) at 10,
// 100 and 1,000 members, in the deterministic in-process simulation (src/cluster/sim.ts; 1–5 ms
// per message, no loss, default SwimConfig). Simulated time, so the figures do not depend on this
// machine; wall time only grows with the member count.
//
// For each cluster size it measures (issue #3: "1,000 members converge after a join or a failure
// within 10 protocol periods, with constant messages per member per period"):
//  - in a converged cluster (built directly, Sim `joined`), over SEEDS seeds, the worst case of:
//    - join: a new member joins through a random member; periods until every member knows it and
//      it knows every member;
//    - crash+reset: a member crashes with its open connections reset (what TCP does when a process
//      dies); periods until it is gone from every survivor's view;
//    - crash: a member crashes and its connections are refused when next contacted; likewise;
//    - silent: a member stops answering (SIGSTOP, a cut cable); periods until the first member
//      declares it dead (the suspicion window, which grows with log10 n), and from that first
//      verdict until it is gone everywhere;
//  - steady load in that cluster: messages sent per member per probe period (mean and busiest
//    member), gossip items per message, full-state syncs per member per period;
//  - storm: every member joins the one seed at the same instant; the share of (observer, member)
//    pairs known after each probe period, and the periods until everyone knows everyone (worst
//    of SEEDS seeds; the curve is the first seed's);
//  - staggered: members join at random times over n/2 periods (≈ 2 joins per period); periods from
//    the last join until everyone knows everyone.
//
// Run: `node --import tsx bench/membership.ts [sizes…]` (default 10 100 1000; 1,000 members take
// about 70 s of one core, most of it the staggered joins). `run(sizes)` returns the figures for a
// harness.

import { pathToFileURL } from "node:url";
import { DEFAULT_SWIM } from "../src/cluster/config.ts";
import { Sim } from "../src/cluster/sim.ts";

const PERIOD = DEFAULT_SWIM.periodMs;
/** Periods after which the storm curve is sampled. */
const CURVE_AT = [1, 2, 4, 6, 8, 10, 15, 20];
const SEEDS = [1, 2, 3];
/** How long each scenario may take before it counts as not converged (-1). */
const MAX_MS = 300 * PERIOD;
/** runUntil's step while timing one event: a twentieth of a period. */
const STEP = 10;

export interface MembershipFigures {
  n: number;
  /** Periods until a join into a converged cluster is known everywhere, worst of SEEDS (-1: never). */
  joinPeriods: number;
  /** Periods until a crashed member whose connections were reset is gone everywhere, worst of SEEDS. */
  crashResetPeriods: number;
  /** … a crashed member whose connections are refused when next contacted. */
  crashPeriods: number;
  /** Periods from silence until the first member declares the silent member dead, worst of SEEDS. */
  silentFirstPeriods: number;
  /** Periods from that first verdict until it is gone everywhere, worst of SEEDS. */
  silentSpreadPeriods: number;
  msgsPerMemberPerPeriod: number;
  maxMsgsPerMemberPerPeriod: number;
  itemsPerMessage: number;
  syncsPerMemberPerPeriod: number;
  /** Periods until everyone knows everyone, all joining at once, worst of SEEDS (-1: not within 100). */
  stormPeriods: number;
  /** The storm's periods for each seed. */
  stormBySeed: number[];
  /** Share of (observer, member) pairs known after CURVE_AT[i] periods of the first seed's storm. */
  stormCurve: number[];
  /** Periods from the last of the staggered joins until everyone knows everyone. */
  staggeredPeriods: number;
  /** Real time the measurements of this size took. */
  wallMs: number;
}

function storm(n: number, seed: number): { periods: number; curve: number[] } {
  const sim = new Sim({ n, seed });
  const curve: number[] = [];
  const pairs = n * n;
  let periods = -1;
  for (let p = 1; p <= 100; p++) {
    sim.run(PERIOD);
    if (CURVE_AT.includes(p)) {
      let known = 0;
      for (const id of sim.ids) known += sim.member(id).liveCount();
      curve.push(known / pairs);
    }
    if (periods < 0 && sim.converged()) periods = p;
    if (periods >= 0 && p >= CURVE_AT[CURVE_AT.length - 1]!) break;
  }
  while (curve.length < CURVE_AT.length) curve.push(1);
  return { periods, curve };
}

const inPeriods = (ms: number) => (ms < 0 ? -1 : ms / PERIOD);
/** The worst of several runs, where -1 (never) is worst of all. */
const worst = (xs: number[]) => (xs.some((x) => x < 0) ? -1 : Math.max(...xs));

interface Converged {
  join: number;
  crashReset: number;
  crash: number;
  silentFirst: number;
  silentSpread: number;
  load: ReturnType<Sim["stats"]>;
}

/** One converged cluster of n: steady load, then a join, two crashes and a silent member, in turn. */
function converged(n: number, seed: number): Converged {
  const sim = new Sim({ n, seed, joined: true });
  sim.run(10 * PERIOD);
  sim.resetStats();
  sim.run(25 * PERIOD);
  const load = sim.stats();

  // Distinct random members for each role; the joiner enters through `via`.
  let r = seed * 7919;
  const pick = new Set<string>();
  while (pick.size < Math.min(n, 4)) pick.add(sim.ids[(r = (r * 48271) % 2147483647) % n]!);
  const [via, reset, crashed, silent] = [...pick] as string[];

  sim.add({ via });
  const join = inPeriods(sim.runUntil(() => sim.converged(), MAX_MS, STEP));
  sim.run(5 * PERIOD);

  sim.crash(reset!, { reset: true });
  const crashReset = inPeriods(sim.runUntil(() => sim.goneEverywhere(reset!), MAX_MS, STEP));
  sim.run(5 * PERIOD);

  sim.crash(crashed!);
  const crash = inPeriods(sim.runUntil(() => sim.goneEverywhere(crashed!), MAX_MS, STEP));
  sim.run(5 * PERIOD);

  const from = sim.eventLog.length;
  sim.silence(silent!);
  const declared = () => {
    for (let i = from; i < sim.eventLog.length; i++) {
      const e = sim.eventLog[i]!;
      if (e.kind === "leave" && e.member.id === silent) return true;
    }
    return false;
  };
  const silentFirst = inPeriods(sim.runUntil(declared, MAX_MS, STEP));
  const silentSpread = silentFirst < 0 ? -1 : inPeriods(sim.runUntil(() => sim.goneEverywhere(silent!), MAX_MS, STEP));
  return { join, crashReset, crash, silentFirst, silentSpread, load };
}

export function measure(n: number): MembershipFigures {
  const started = performance.now();
  const runs = SEEDS.map((seed) => converged(n, seed));
  const load = runs[0]!.load;
  const storms = SEEDS.map((seed) => storm(n, seed));

  const spread = (n / 2) * PERIOD;
  const sim = new Sim({ n, seed: SEEDS[0]! + 1, joinSpreadMs: spread });
  sim.run(spread);
  const staggered = sim.runUntil(() => sim.converged(), 100 * PERIOD);

  return {
    n,
    joinPeriods: worst(runs.map((r) => r.join)),
    crashResetPeriods: worst(runs.map((r) => r.crashReset)),
    crashPeriods: worst(runs.map((r) => r.crash)),
    silentFirstPeriods: worst(runs.map((r) => r.silentFirst)),
    silentSpreadPeriods: worst(runs.map((r) => r.silentSpread)),
    msgsPerMemberPerPeriod: load.perMemberPerPeriod,
    maxMsgsPerMemberPerPeriod: load.maxPerMemberPerPeriod,
    itemsPerMessage: load.itemsPerMessage,
    syncsPerMemberPerPeriod: load.syncs / n / load.periods,
    stormPeriods: worst(storms.map((s) => s.periods)),
    stormBySeed: storms.map((s) => s.periods),
    stormCurve: storms[0]!.curve,
    staggeredPeriods: inPeriods(staggered),
    wallMs: performance.now() - started,
  };
}

export function run(sizes: number[] = [10, 100, 1000], log: (line: string) => void = () => {}): MembershipFigures[] {
  return sizes.map((n) => {
    const f = measure(n);
    log(`membership: ${n} members measured in ${(f.wallMs / 1000).toFixed(1)} s`);
    return f;
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "))
    .join("\n");
}

/** 100% only when complete: 99.99% is not everyone. */
const pct = (x: number) => (x >= 1 ? "100%" : `${Math.min(99.99, x * 100).toFixed(x >= 0.99 ? 2 : 1)}%`);
const p = (x: number, digits = 2) => (x < 0 ? "never" : x.toFixed(digits));

export function main(argv: string[] = process.argv.slice(2)): MembershipFigures[] {
  const sizes = argv.length > 0 ? argv.map(Number) : [10, 100, 1000];
  if (sizes.some((n) => !Number.isInteger(n) || n < 2)) {
    console.error("usage: node --import tsx bench/membership.ts [sizes…]   (each an integer ≥ 2)");
    process.exitCode = 2;
    return [];
  }
  const figures = run(sizes, (l) => console.error(l));
  console.log(`\nMembership (SWIM + Lifeguard), simulated; probe period ${PERIOD} ms, delay 1–5 ms, no loss`);
  console.log(`\nConverged cluster; periods until known everywhere / gone everywhere, worst of ${SEEDS.length} seeds`);
  console.log(
    table([
      [
        "members",
        "join",
        "crash+reset",
        "crash",
        "silent: 1st verdict",
        "→ gone everywhere",
        "mass join",
        "msgs/member/period",
        "busiest",
        "gossip items/msg",
        "syncs/member/period",
      ],
      ...figures.map((f) => [
        String(f.n),
        p(f.joinPeriods),
        p(f.crashResetPeriods),
        p(f.crashPeriods),
        p(f.silentFirstPeriods, 1),
        p(f.silentSpreadPeriods),
        f.stormPeriods < 0 ? "> 100" : String(f.stormPeriods),
        f.msgsPerMemberPerPeriod.toFixed(2),
        f.maxMsgsPerMemberPerPeriod.toFixed(2),
        f.itemsPerMessage.toFixed(2),
        f.syncsPerMemberPerPeriod.toFixed(3),
      ]),
    ]),
  );
  console.log("\nMass join: every member joins the one seed at once; share of member pairs known (first seed)");
  console.log(
    table([
      ["members", ...CURVE_AT.map((c) => `p${c}`), "all known at (per seed)"],
      ...figures.map((f) => [
        String(f.n),
        ...f.stormCurve.map(pct),
        f.stormBySeed.map((s) => (s < 0 ? "> 100" : String(s))).join(" / "),
      ]),
    ]),
  );
  console.log("\nJoins staggered over n/2 periods (≈ 2 per period): periods after the last join until all known");
  console.log(table([["members", "periods"], ...figures.map((f) => [String(f.n), p(f.staggeredPeriods, 0)])]));
  return figures;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
