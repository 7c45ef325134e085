// Scenario `chan-cross`: the chan-throughput run across two servers of one circuit. The producer
// dials server A but sends into a channel hosted on server B (its client routes those sends
// straight to B, DESIGN.md §6); the consumer dials B. Beside it, in the same round and on the same
// two daemons, the single-server run it is held against: the producer dials B itself. The two take
// turns going first from round to round, so that the machine's drift over a round falls on both
// alike (chan-throughput's own run, minutes away in the round, is shown beside them). The same
// roles, counts and payload as chan-throughput's main run (WINDOW sends in flight).
import type { Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, phaseRows, startCircuitDaemon, WARM_MESSAGES } from "./harness.ts";

const CAP = 1024;
const PREFETCH = 256;
const MESSAGES = 500_000;
const SECONDS = 10;
/** Sends the producer keeps in flight, as in chan-throughput's main run. */
const WINDOW = 256;

/** Rounds run so far: the cross run goes first in every other one. */
let round = 0;

export const scenario: Scenario = {
  name: "chan-cross",
  description: `chan-throughput's main run (cap ${CAP}, ${WINDOW} sends in flight, iterate(${PREFETCH})) with the channel on server B and the producer dialled into server A, beside the same run with the producer dialled into B`,
  budgetMs: 90_000,
  async run(ctx: ScenarioContext) {
    const single = { id: "chan.cross.single", label: "circuit chan on B, producer and consumer via B" };
    const singleCold = { id: "chan.cross.single.cold", label: `the same, first ${WARM_MESSAGES / 1000}k` };
    const main = { id: "chan.cross", label: "circuit chan on B, producer via A, consumer via B" };
    const cold = { id: "chan.cross.cold", label: `circuit chan across servers, first ${WARM_MESSAGES / 1000}k` };
    const crossFirst = round++ % 2 === 1;
    let a: { url: string };
    let b: { url: string };
    try {
      a = await startCircuitDaemon(ctx.procs);
      const started = await startCircuitDaemon(ctx.procs, ["--join", a.url]);
      b = started;
      // B says it joined once A answered: A knows B from then on, so A's clients can route to B.
      // (Polled from the kept stderr: the line may have come before anyone listened.)
      while (!/joined circuit:/.test(started.server.stderr.toString())) {
        if (ctx.signal.aborted) throw new Error(`B never joined A: ${started.server.stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (e) {
      const error = { error: errorText(e) };
      return { rows: [...phaseRows(single, singleCold, MESSAGES, error), ...phaseRows(main, cold, MESSAGES, error)] };
    }
    const serverB = b.url.slice(b.url.lastIndexOf("/") + 1);
    ctx.log(`chan-cross: A at ${a.url}, B at ${b.url}; ${crossFirst ? "across servers" : "single server"} first`);
    /** One run: the consumer via B, the producer via `via`, the channel on B. */
    const once = async (via: string, tag: string): Promise<Row[]> => {
      const [row, coldRow] = tag === "cross" ? [main, cold] : [single, singleCold];
      try {
        const name = `${tag}-${process.pid}-${Date.now().toString(36)}`;
        const consumer = ctx.procs.role("chan-throughput", "consumer", {
          url: b.url,
          name,
          warm: WARM_MESSAGES,
          count: MESSAGES,
          prefetch: PREFETCH,
          seconds: SECONDS,
        });
        await consumer.next("ready");
        const producer = ctx.procs.role("chan-throughput", "producer", {
          url: via,
          server: serverB,
          name,
          count: WARM_MESSAGES + MESSAGES,
          seconds: SECONDS + 2,
          window: WINDOW,
        });
        const done = await consumer.next("done");
        // The next run starts once this one's producer has finished its sends.
        await producer.next("sent");
        return phaseRows(row, coldRow, MESSAGES, done);
      } catch (e) {
        return phaseRows(row, coldRow, MESSAGES, { error: errorText(e) });
      }
    };
    const rows: Row[] = [];
    for (const tag of crossFirst ? ["cross", "single"] : ["single", "cross"]) {
      rows.push(...(await once(tag === "cross" ? a.url : b.url, tag)));
    }
    return { rows };
  },
  roles: {},
};
