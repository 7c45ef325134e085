// Scenario `chan-obs`: does watching the circuit cost throughput? The chan-throughput run (a
// producer and a consumer through one daemon, 256 sends in flight), once with a plain daemon and
// once with `--http` while a scraper reads /metrics every second and a dashboard page's event
// stream stays open; default logging (JSON lines on stderr) in both. Runs alternate so that a
// change in the machine's load hits both alike.

import { dialCircuit } from "./circuit-lib.ts";
import type { Scenario } from "./harness.ts";
import {
  cpuSeconds,
  errorText,
  phaseRows,
  type ScenarioContext,
  startCircuitDaemon,
  WARM_MESSAGES,
} from "./harness.ts";

const MESSAGES = 500_000;
let rounds = 0;
const SECONDS = 10;

async function watch(url: string, signal: AbortSignal): Promise<{ scrapes: number; events: number }> {
  let scrapes = 0;
  let events = 0;
  const page = fetch(`${url}api/events`, { signal })
    .then(async (r) => {
      const reader = (r.body as ReadableStream<Uint8Array>).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        events += Buffer.from(value).toString().split("\n\n").length - 1;
      }
    })
    .catch(() => {});
  while (!signal.aborted) {
    try {
      const r = await fetch(`${url}metrics`, { signal });
      if (r.ok && (await r.text()).includes("circuit_values_in_total")) scrapes++;
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  await page;
  return { scrapes, events };
}

export const scenario: Scenario = {
  name: "chan-obs",
  description: `chan-throughput with and without --http (scraped every second, a dashboard open), ${WARM_MESSAGES} + ${MESSAGES} × 100 B`,
  budgetMs: 90_000,
  async run(ctx: ScenarioContext) {
    const plain = { id: "chan.obs.plain", label: "circuit chan, daemon without --http" };
    const watched = { id: "chan.obs.http", label: "circuit chan, --http, /metrics 1/s + dashboard" };
    const rows = [];
    const info: Record<string, unknown> = {};
    // Which goes first alternates from round to round, so that neither always gets the fresher machine.
    const order = [
      [plain, false],
      [watched, true],
    ] as const;
    for (const [m, http] of rounds++ % 2 === 0 ? order : [...order].reverse()) {
      const stop = new AbortController();
      try {
        const { url } = await startCircuitDaemon(ctx.procs, http ? ["--http", "127.0.0.1:0"] : []);
        let watching: Promise<{ scrapes: number; events: number }> | undefined;
        // Where it serves (what `circuit dashboard` prints) and its pid: the server's stat says.
        const client = await dialCircuit(url);
        const server = (await client.walk(`/${client.serverId}`).get()) as {
          peek(): Promise<{ http: string; process: { pid: number } }>;
        };
        const stat = await server.peek();
        await client.close();
        if (http) watching = watch(stat.http, stop.signal);
        const name = `obs-${process.pid}-${Date.now().toString(36)}`;
        const consumer = ctx.procs.role("chan-throughput", "consumer", {
          url,
          name,
          warm: WARM_MESSAGES,
          count: MESSAGES,
          prefetch: 256,
          seconds: SECONDS,
        });
        await consumer.next("ready");
        const cpu0 = cpuSeconds(stat.process.pid);
        ctx.procs.role("chan-throughput", "producer", {
          url,
          name,
          count: WARM_MESSAGES + MESSAGES,
          seconds: SECONDS + 2,
          window: 256,
        });
        const done = await consumer.next("done");
        // The daemon's own CPU over the whole run (warm-up included), per message: the direct
        // figure of what watching costs, steadier than throughput on a shared machine.
        const cpuUs = ((cpuSeconds(stat.process.pid) - cpu0) / (WARM_MESSAGES + MESSAGES)) * 1e6;
        stop.abort();
        if (watching) info.watched = await watching;
        const [main] = phaseRows(m, { id: `${m.id}.cold`, label: "" }, MESSAGES, done);
        if (main) {
          const cpuNote = `daemon CPU ${cpuUs.toFixed(2)} µs/msg`;
          main.note = main.note ? `${main.note}; ${cpuNote}` : cpuNote;
          rows.push(main);
        }
      } catch (e) {
        rows.push({ ...m, kind: "throughput" as const, error: errorText(e) });
      } finally {
        stop.abort();
      }
    }
    return { rows, info };
  },
  // Its processes are chan-throughput's roles.
  roles: {},
};
