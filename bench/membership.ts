// Scenario `membership`: the SWIM/Lifeguard membership layer (src/cluster/membership.ts) at 10,
// 100 and 1,000 members, in the deterministic in-process simulation (src/cluster/sim.ts; 1–5 ms
// per message, no loss, default SwimConfig). Simulated time, so the figures do not depend on this
// machine; wall time only grows with the member count.
//
// For each cluster size it measures:
//  - storm: every member joins the one seed at the same instant; the share of (observer, member)
//    pairs known after each probe period, and the periods until everyone knows everyone;
//  - staggered: members join at random times over n/2 periods (≈ 2 joins per period); periods from
//    the last join until everyone knows everyone;
//  - steady load: messages sent per member per probe period (mean and busiest member), gossip
//    items per message (0 once the cluster is stable: there is no news), full-state syncs per
//    member per period;
//  - failures: time until every survivor has declared dead a member that went silent, one that
//    crashed (connections refused when next contacted), and one that crashed with its open
//    connections reset (what TCP does when a process dies).
//
// Run: `node --import tsx bench/membership.ts [sizes…]` (default 10 100 1000; 1,000 members take
// about 40 s of one core, most of it the staggered joins). `run(sizes)` returns the figures for a harness.

import { pathToFileURL } from "node:url";
import { DEFAULT_SWIM } from "../src/cluster/config.ts";
import { Sim } from "../src/cluster/sim.ts";

const PERIOD = DEFAULT_SWIM.periodMs;
/** Periods after which the storm curve is sampled. */
const CURVE_AT = [1, 2, 4, 6, 8, 10, 15, 20];

export interface MembershipFigures {
  n: number;
  /** Periods until everyone knows everyone, all joining at once (-1: not within 100 periods). */
  stormPeriods: number;
  /** Share of (observer, member) pairs known after CURVE_AT[i] periods of the storm. */
  stormCurve: number[];
  /** Periods from the last of the staggered joins until everyone knows everyone. */
  staggeredPeriods: number;
  msgsPerMemberPerPeriod: number;
  maxMsgsPerMemberPerPeriod: number;
  itemsPerMessage: number;
  syncsPerMemberPerPeriod: number;
  /** Milliseconds until every survivor has declared a silent member dead. */
  silentDeadMs: number;
  /** … a crashed member (refused when next contacted). */
  crashDeadMs: number;
  /** … a crashed member whose open connections were reset. */
  crashResetDeadMs: number;
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

function timeToGone(sim: Sim, id: string, maxMs: number): number {
  return sim.runUntil(() => sim.goneEverywhere(id), maxMs, 10);
}

export function measure(n: number, seed = 1): MembershipFigures {
  const started = performance.now();
  const s = storm(n, seed);

  const spread = (n / 2) * PERIOD;
  const sim = new Sim({ n, seed: seed + 1, joinSpreadMs: spread });
  sim.run(spread);
  const staggered = sim.runUntil(() => sim.converged(), 100 * PERIOD);

  sim.run(10 * PERIOD);
  sim.resetStats();
  sim.run(25 * PERIOD);
  const st = sim.stats();

  const [silent, crashed, reset] = [sim.ids[n - 1], sim.ids[n - 2], sim.ids[n - 3]] as string[];
  sim.silence(silent!);
  const silentDeadMs = timeToGone(sim, silent!, 60_000);
  sim.run(5000);
  sim.crash(crashed!);
  const crashDeadMs = timeToGone(sim, crashed!, 60_000);
  sim.run(5000);
  sim.crash(reset!, { reset: true });
  const crashResetDeadMs = timeToGone(sim, reset!, 60_000);

  return {
    n,
    stormPeriods: s.periods,
    stormCurve: s.curve,
    staggeredPeriods: staggered < 0 ? -1 : staggered / PERIOD,
    msgsPerMemberPerPeriod: st.perMemberPerPeriod,
    maxMsgsPerMemberPerPeriod: st.maxPerMemberPerPeriod,
    itemsPerMessage: st.itemsPerMessage,
    syncsPerMemberPerPeriod: st.syncs / n / st.periods,
    silentDeadMs,
    crashDeadMs,
    crashResetDeadMs,
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
const periods = (ms: number) => (ms < 0 ? "—" : `${(ms / PERIOD).toFixed(1)}`);

export function main(argv: string[] = process.argv.slice(2)): MembershipFigures[] {
  const sizes = argv.length > 0 ? argv.map(Number) : [10, 100, 1000];
  if (sizes.some((n) => !Number.isInteger(n) || n < 2)) {
    console.error("usage: node --import tsx bench/membership.ts [sizes…]   (each an integer ≥ 2)");
    process.exitCode = 2;
    return [];
  }
  const figures = run(sizes, (l) => console.error(l));
  console.log(`\nMembership (SWIM + Lifeguard), simulated; probe period ${PERIOD} ms, delay 1–5 ms, no loss\n`);
  console.log("Convergence when every member joins the seed at once: share of member pairs known");
  console.log(
    table([
      ["members", ...CURVE_AT.map((p) => `p${p}`), "all known at"],
      ...figures.map((f) => [
        String(f.n),
        ...f.stormCurve.map(pct),
        f.stormPeriods < 0 ? "> 100 periods" : `${f.stormPeriods} periods`,
      ]),
    ]),
  );
  console.log("\nJoins staggered over n/2 periods; steady load after convergence; failure detection");
  console.log(
    table([
      [
        "members",
        "periods after last join",
        "msgs/member/period",
        "busiest",
        "gossip items/msg",
        "syncs/member/period",
        "silent → dead",
        "crash → dead",
        "crash+reset → dead",
      ],
      ...figures.map((f) => [
        String(f.n),
        f.staggeredPeriods < 0 ? "> 100" : String(f.staggeredPeriods),
        f.msgsPerMemberPerPeriod.toFixed(2),
        f.maxMsgsPerMemberPerPeriod.toFixed(2),
        f.itemsPerMessage.toFixed(1),
        f.syncsPerMemberPerPeriod.toFixed(3),
        `${periods(f.silentDeadMs)} periods (${(f.silentDeadMs / 1000).toFixed(2)} s)`,
        `${f.crashDeadMs} ms`,
        `${f.crashResetDeadMs} ms`,
      ]),
    ]),
  );
  return figures;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
