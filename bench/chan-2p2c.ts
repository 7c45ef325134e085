// Scenario `chan-2p2c`: two producers and two competing consumers on one buffered circuit channel
// (each value goes to exactly one consumer), beside a NATS queue group with two subscribers fed by
// two publishers, every role its own process. Both are measured the same way: the producers run
// flat out, the consumers count what they take, and the figure is everything taken between two
// marks (bench/marked.ts).
import { performance } from "node:perf_hooks";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, startCircuitDaemon } from "./harness.ts";
import { LIMIT_MS, markedRow, measureMarked, WARM_MS, WINDOW_MS } from "./marked.ts";
import { dialNats, ensureNatsServer, NATS_FLUSH_EVERY, startNatsServer } from "./nats.ts";

const PAYLOAD_BYTES = 100;

/** Counts arrivals and answers the orchestrator's marks with the count and the time. */
function counter(ctx: RoleContext): { arrive(): void } {
  let n = 0;
  void (async () => {
    for (const mark of ["mark0", "mark1"]) {
      await ctx.next(mark);
      ctx.report(mark, { n, t: performance.now() });
    }
  })();
  return {
    arrive() {
      n++;
    },
  };
}

async function chanProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const ring: (Promise<void> | undefined)[] = new Array(WINDOW);
  const stopAt = performance.now() + LIMIT_MS;
  let stop = false;
  void ctx.next("stop").then(() => {
    stop = true;
  });
  for (let sent = 0; !stop; sent++) {
    const i = sent % WINDOW;
    const older = ring[i];
    ring[i] = ch.send(payload);
    if (older) await older;
    if ((sent & 1023) === 0 && performance.now() > stopAt) break;
  }
  ctx.report("stopped");
}

async function chanConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await openChan(client, String(args.name), CAP);
  const c = counter(ctx);
  ctx.report("ready");
  let first = true;
  for await (const v of ch.iterate({ prefetch: PREFETCH })) {
    if (first) checkPayload(v, PAYLOAD_BYTES);
    first = false;
    c.arrive();
  }
}

async function natsPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const stopAt = performance.now() + LIMIT_MS;
  let stop = false;
  void ctx.next("stop").then(() => {
    stop = true;
  });
  for (let sent = 1; !stop; sent++) {
    nc.publish("bench.queue", payload);
    if (sent % NATS_FLUSH_EVERY === 0) {
      await nc.flush();
      if (performance.now() > stopAt) break;
    }
  }
  ctx.report("stopped");
}

async function natsSubscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const c = counter(ctx);
  nc.subscribe("bench.queue", {
    queue: "workers",
    callback: (err) => {
      if (!err) c.arrive();
    },
  });
  await nc.flush();
  ctx.report("ready");
}

export const scenario: Scenario = {
  name: "chan-2p2c",
  description: `2 producers → 2 competing consumers, ${PAYLOAD_BYTES} B, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chan cap ${CAP} vs NATS queue group`,
  budgetMs: 60_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    const nats = { id: "nats.queue", label: "NATS queue group, 2 publishers → 2 subscribers" };
    try {
      const port = await startNatsServer(ctx.procs);
      const subs = [0, 1].map(() => ctx.procs.role("chan-2p2c", "natsSubscriber", { port }));
      await Promise.all(subs.map((s) => s.next("ready")));
      const r = await measureMarked(ctx, subs, () =>
        [0, 1].map(() => ctx.procs.role("chan-2p2c", "natsPublisher", { port })),
      );
      rows.push(markedRow(nats.id, nats.label, r));
    } catch (e) {
      rows.push(markedRow(nats.id, nats.label, { error: errorText(e) }));
    }
    await ctx.procs.closeAll();
    const chan = {
      id: "chan.2p2c",
      label: `circuit chan cap ${CAP}, 2 producers (${WINDOW} in flight) → 2 iterate(${PREFETCH})`,
    };
    try {
      const { url } = await startCircuitDaemon(ctx.procs);
      const name = `2p2c-${process.pid}-${Date.now().toString(36)}`;
      const first = ctx.procs.role("chan-2p2c", "chanConsumer", { url, name });
      await first.next("ready");
      const second = ctx.procs.role("chan-2p2c", "chanConsumer", { url, name });
      await second.next("ready");
      const r = await measureMarked(ctx, [first, second], () =>
        [0, 1].map(() => ctx.procs.role("chan-2p2c", "chanProducer", { url, name })),
      );
      rows.push(markedRow(chan.id, chan.label, r));
    } catch (e) {
      rows.push(markedRow(chan.id, chan.label, { error: errorText(e) }));
    }
    return { rows };
  },
  roles: {
    chanProducer: chanProducerRole,
    chanConsumer: chanConsumerRole,
    natsPublisher: natsPublisherRole,
    natsSubscriber: natsSubscriberRole,
  },
};
