// Measuring over a window between two marks, for scenarios whose producers run flat out until told
// to stop (chan-2p2c, chan-fanin, chan-objects, chan-sizes): the figure is everything the
// consumers took between a mark WARM_MS after every producer has started sending and a second
// mark WINDOW_MS later, the orchestrator sending both marks to every consumer at the same moment.
// A producer says "running" as it starts (produce() does); a consumer answers each mark ("mark0",
// "mark1") with `{ n, t }`: what it has taken so far and when (its performance.now()).
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Message, RoleContext, RoleHandle, Row, ScenarioContext } from "./harness.ts";

export const WARM_MS = 1500;
export const WINDOW_MS = 3000;
/** Producers stop by themselves after this, whatever happens to the orchestrator. */
export const LIMIT_MS = 15_000;

export interface Marked {
  rate: number;
  seconds: number;
  messages: number;
  /** Each consumer's answer to the second mark (a scenario's own fields beside n and t). */
  last: Message[];
}

/** Starts the producers, marks the consumers twice, sums what they took in between, and stops the producers. */
export async function measureMarked(
  ctx: ScenarioContext,
  consumers: RoleHandle[],
  startProducers: () => RoleHandle[],
): Promise<Marked> {
  const producers = startProducers();
  // Eight processes starting at once take seconds here: the warm-up counts from the last one.
  await Promise.all(producers.map((p) => p.next("running")));
  await sleep(WARM_MS, undefined, { signal: ctx.signal });
  for (const c of consumers) c.send("mark0");
  const m0 = await Promise.all(consumers.map((c) => c.next("mark0")));
  await sleep(WINDOW_MS, undefined, { signal: ctx.signal });
  for (const c of consumers) c.send("mark1");
  const m1 = await Promise.all(consumers.map((c) => c.next("mark1")));
  for (const p of producers) p.send("stop");
  let messages = 0;
  let seconds = 0;
  for (let i = 0; i < consumers.length; i++) {
    const a = m0[i] as unknown as { n: number; t: number };
    const b = m1[i] as unknown as { n: number; t: number };
    messages += b.n - a.n;
    seconds = Math.max(seconds, (b.t - a.t) / 1000);
  }
  return { rate: messages / seconds, seconds, messages, last: m1 };
}

/** The throughput row of a marked measurement (or of its failure). */
export function markedRow(id: string, label: string, r: Marked | { error: string }, note?: string): Row {
  if ("error" in r) return { id, label, kind: "throughput", error: r.error };
  const row: Row = { id, label, kind: "throughput", msgsPerSec: r.rate, messages: r.messages, seconds: r.seconds };
  if (note) row.note = note;
  return row;
}

/**
 * A producer's loop: says "running", then runs `send(seq)` for seq = 0, 1, … flat out, awaiting
 * what it returns, until told to stop (or LIMIT_MS).
 */
export async function produce(ctx: RoleContext, send: (seq: number) => Promise<void> | undefined): Promise<void> {
  const stopAt = performance.now() + LIMIT_MS;
  let stop = false;
  void ctx.next("stop").then(() => {
    stop = true;
  });
  ctx.report("running");
  for (let seq = 0; !stop; seq++) {
    const p = send(seq);
    if (p) await p;
    if ((seq & 63) === 0 && performance.now() > stopAt) break;
  }
  ctx.report("stopped");
}

/**
 * A consumer's answers to the marks: `{ n, t }` with what `taken()` says then (and `lost`, values
 * known never to have arrived), or the role's failure if `fault()` names one by then.
 */
function answerMarks(
  ctx: RoleContext,
  taken: () => { n: number; lost?: number },
  fault = (): string | undefined => undefined,
): void {
  void (async () => {
    for (const mark of ["mark0", "mark1"]) {
      await ctx.next(mark);
      const why = fault();
      if (why) ctx.report("error", { message: why });
      else ctx.report(mark, { ...taken(), t: performance.now() });
    }
  })();
}

/** Counts what a consumer takes, for the marks. */
export function counter(ctx: RoleContext): { arrive(): void } {
  let n = 0;
  answerMarks(ctx, () => ({ n }));
  return {
    arrive() {
      n++;
    },
  };
}

/**
 * Counts what a consumer takes, each value carrying a sequence number: `seqOf(v)` checks the value
 * and returns its number, or says what is wrong with it. A wrong value, or one out of order, fails
 * the role at the next mark; numbers skipped (NATS core drops messages for a consumer that falls
 * too far behind) are counted as lost and reported with the marks (lostOf).
 */
export function sequenceChecker(
  ctx: RoleContext,
  seqOf: (v: unknown) => number | string,
): { arrive(v: unknown): void } {
  let n = 0;
  let next = 0;
  let lost = 0;
  let fault: string | undefined;
  answerMarks(
    ctx,
    () => ({ n, lost }),
    () => fault,
  );
  return {
    arrive(v: unknown) {
      n++;
      if (fault !== undefined) return;
      const seq = seqOf(v);
      if (typeof seq === "string") fault = `message ${next}: ${seq}`;
      else if (!(seq >= next)) fault = `message ${next} expected, got message ${seq}`;
      else {
        lost += seq - next;
        next = seq + 1;
      }
    },
  };
}

/** What never arrived at the (first) consumer, from its answer to the second mark (sequenceChecker). */
export function lostOf(r: Marked): number {
  return Number((r.last[0] as { lost?: number } | undefined)?.lost ?? 0);
}

/** A producer's sends in flight, at most `window`: add() returns the one made `window` sends before, to await. */
export class InFlight {
  private readonly ring: (Promise<void> | undefined)[];
  private n = 0;
  constructor(readonly window: number) {
    this.ring = new Array(window);
  }
  add(p: Promise<void>): Promise<void> | undefined {
    const i = this.n++ % this.window;
    const older = this.ring[i];
    this.ring[i] = p;
    return older;
  }
  /** Settles once every send added has. */
  all(): Promise<unknown> {
    return Promise.all(this.ring);
  }
}
