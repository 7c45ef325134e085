// Scenario `chan-cross`: the chan-throughput run across two servers of one circuit. The producer
// dials server A but sends into a channel hosted on server B (its client routes those sends
// straight to B, DESIGN.md §6); the consumer dials B. The same roles, counts and payload as
// chan-throughput's main run (WINDOW sends in flight), so its figure stands beside the
// single-server one of the same bench run.
import type { Scenario, ScenarioContext } from "./harness.ts";
import { errorText, phaseRows, startCircuitDaemon, WARM_MESSAGES } from "./harness.ts";

const CAP = 1024;
const PREFETCH = 256;
const MESSAGES = 500_000;
const SECONDS = 10;
/** Sends the producer keeps in flight, as in chan-throughput's main run. */
const WINDOW = 256;

export const scenario: Scenario = {
  name: "chan-cross",
  description: `chan-throughput's main run (cap ${CAP}, ${WINDOW} sends in flight, iterate(${PREFETCH})) with the producer dialled into server A and the channel on server B`,
  budgetMs: 60_000,
  async run(ctx: ScenarioContext) {
    const main = { id: "chan.cross", label: `circuit chan on B, producer via A, consumer via B` };
    const cold = { id: "chan.cross.cold", label: `circuit chan across servers, first ${WARM_MESSAGES / 1000}k` };
    try {
      const a = await startCircuitDaemon(ctx.procs);
      const b = await startCircuitDaemon(ctx.procs, ["--join", a.url]);
      // B says it joined once A answered: A knows B from then on, so A's clients can route to B.
      // (Polled from the kept stderr: the line may have come before anyone listened.)
      while (!/joined circuit:/.test(b.server.stderr.toString())) {
        if (ctx.signal.aborted) throw new Error(`B never joined A: ${b.server.stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const serverB = b.url.slice(b.url.lastIndexOf("/") + 1);
      ctx.log(`chan-cross: A at ${a.url}, B at ${b.url}`);
      const name = `cross-${process.pid}-${Date.now().toString(36)}`;
      const consumer = ctx.procs.role("chan-throughput", "consumer", {
        url: b.url,
        name,
        warm: WARM_MESSAGES,
        count: MESSAGES,
        prefetch: PREFETCH,
        seconds: SECONDS,
      });
      await consumer.next("ready");
      ctx.procs.role("chan-throughput", "producer", {
        url: a.url,
        server: serverB,
        name,
        count: WARM_MESSAGES + MESSAGES,
        seconds: SECONDS + 2,
        window: WINDOW,
      });
      return { rows: phaseRows(main, cold, MESSAGES, await consumer.next("done")) };
    } catch (e) {
      return { rows: phaseRows(main, cold, MESSAGES, { error: errorText(e) }) };
    }
  },
  roles: {},
};
