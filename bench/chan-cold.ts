// Scenario `chan-cold`: where the first messages' time goes. The chan-throughput run again (a
// fresh daemon, producer and consumer, each its own process), and beside it the same run with
// every one of the three processes warmed up first: before the measured run, the producer and the
// consumer each move WARM_UP messages through the same daemon on a channel of their own (both ends
// in the process), so the daemon, the send path and the receive path have all run before. The
// figure is the rate of the first WARM_MESSAGES, as in chan-throughput's cold row; if the warmed run
// is as fast as NATS's first messages, what the fresh run lacks is the processes' warm-up (their
// code being compiled and optimised), not the protocol.

import { CAP, PREFETCH, scenario as throughput, throughputRun, WINDOW } from "./chan-throughput.ts";
import { dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, WARM_MESSAGES } from "./harness.ts";

/** Messages each warmed process moves before the measured run. */
const WARM_UP = 300_000;

/** Moves `count` messages through the daemon at `url` on a channel of this process's own. */
async function warmUp(url: string, count: number): Promise<void> {
  const [rx, tx] = await Promise.all([dialCircuit(url), dialCircuit(url)]);
  const name = `warm-${process.pid}`;
  const inbox = await openChan(rx, name, CAP);
  const outbox = await getChan(tx, name);
  const received = (async () => {
    let n = 0;
    for await (const _ of inbox.iterate({ prefetch: PREFETCH })) if (++n === count) break;
  })();
  const payload = new Uint8Array(100);
  const ring: (Promise<void> | undefined)[] = new Array(WINDOW);
  for (let sent = 0; sent < count; sent++) {
    const i = sent % WINDOW;
    const older = ring[i];
    ring[i] = outbox.send(payload);
    if (older) await older;
  }
  await Promise.all(ring);
  await received;
  await Promise.all([rx.close(), tx.close()]);
}

function warmed(role: "producer" | "consumer") {
  return async (args: Record<string, unknown>, ctx: RoleContext): Promise<void> => {
    if (args.warmUp) await warmUp(String(args.url), Number(args.warmUp));
    await throughput.roles[role]?.(args, ctx);
  };
}

export const scenario: Scenario = {
  name: "chan-cold",
  description: `chan-throughput's first ${WARM_MESSAGES} messages from fresh processes, and from processes warmed by ${WARM_UP} messages each`,
  budgetMs: 90_000,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    const runs = [
      { id: "chan.cold.fresh", label: `circuit chan, first ${WARM_MESSAGES / 1000}k, fresh processes`, warmUp: 0 },
      {
        id: "chan.cold.warmed",
        label: `circuit chan, first ${WARM_MESSAGES / 1000}k, all three processes warmed by ${WARM_UP / 1000}k first`,
        warmUp: WARM_UP,
      },
    ];
    for (const r of runs) {
      try {
        // Only the first phase is this scenario's figure; chan-throughput reports the steady one.
        const done = await throughputRun(ctx, "chan-cold", WINDOW, { warmUp: r.warmUp });
        rows.push({ id: r.id, label: r.label, kind: "throughput", msgsPerSec: Number(done.coldRate) });
      } catch (e) {
        rows.push({ id: r.id, label: r.label, kind: "throughput", error: errorText(e) });
      }
    }
    return { rows };
  },
  roles: { producer: warmed("producer"), consumer: warmed("consumer") },
};
