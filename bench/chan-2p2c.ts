// Scenario `chan-2p2c`: two producers and two competing consumers on one buffered circuit channel
// (each value goes to exactly one consumer), beside a NATS queue group with two subscribers fed by
// two publishers, every role its own process. Both are measured the same way: the producers run
// flat out, the consumers count what they take, and the figure is everything taken between two
// marks (bench/marked.ts).
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, startCircuitDaemon } from "./harness.ts";
import { counter, InFlight, markedRow, measureMarked, produce, WARM_MS, WINDOW_MS } from "./marked.ts";
import { dialNats, ensureNatsServer, NATS_FLUSH_EVERY, startNatsServer } from "./nats.ts";

export const PAYLOAD_BYTES = 100;
export const QUEUE_SUBJECT = "bench.queue";

async function chanProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const sends = new InFlight(WINDOW);
  await produce(ctx, () => sends.add(ch.send(payload)));
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
  await produce(ctx, (seq) => {
    nc.publish(QUEUE_SUBJECT, payload);
    return (seq + 1) % NATS_FLUSH_EVERY === 0 ? nc.flush() : undefined;
  });
}

async function natsSubscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const c = counter(ctx);
  // `alone`: a plain subscription (a single subscriber: chan-fanin), not a queue group's member.
  nc.subscribe(QUEUE_SUBJECT, {
    queue: args.alone ? undefined : "workers",
    callback: (err) => {
      if (!err) c.arrive();
    },
  });
  await nc.flush();
  ctx.report("ready");
}

/** A row's id and label. */
interface RowName {
  id: string;
  label: string;
}

/**
 * `producers` producers → `consumers` consumers of one channel (each value taken once), beside
 * NATS with as many publishers and subscribers (a queue group when there are several), every role a
 * process of `scenario` (whose roles are these, or ones taking the same args); returns NATS's row
 * and circuit's. Each role is told its `index` among its kind (chan-many shares channels out by it).
 */
export async function manyToMany(
  ctx: ScenarioContext,
  scenario: string,
  producers: number,
  consumers: number,
  nats: RowName,
  chan: RowName,
): Promise<Row[]> {
  const rows: Row[] = [];
  const each = (n: number) => Array.from({ length: n }, (_, i) => i);
  try {
    const port = await startNatsServer(ctx.procs);
    const alone = consumers === 1;
    const subs = each(consumers).map((index) => ctx.procs.role(scenario, "natsSubscriber", { port, alone, index }));
    await Promise.all(subs.map((s) => s.next("ready")));
    const r = await measureMarked(ctx, subs, () =>
      each(producers).map((index) => ctx.procs.role(scenario, "natsPublisher", { port, index })),
    );
    rows.push(markedRow(nats.id, nats.label, r));
  } catch (e) {
    rows.push(markedRow(nats.id, nats.label, { error: errorText(e) }));
  }
  await ctx.procs.closeAll();
  try {
    const { url } = await startCircuitDaemon(ctx.procs);
    const name = `${scenario}-${process.pid}-${Date.now().toString(36)}`;
    // One at a time: the first makes the channel, the others find it.
    const takers = [];
    for (let index = 0; index < consumers; index++) {
      const c = ctx.procs.role(scenario, "chanConsumer", { url, name, index });
      await c.next("ready");
      takers.push(c);
    }
    const r = await measureMarked(ctx, takers, () =>
      each(producers).map((index) => ctx.procs.role(scenario, "chanProducer", { url, name, index })),
    );
    rows.push(markedRow(chan.id, chan.label, r));
  } catch (e) {
    rows.push(markedRow(chan.id, chan.label, { error: errorText(e) }));
  }
  return rows;
}

const roles = {
  chanProducer: chanProducerRole,
  chanConsumer: chanConsumerRole,
  natsPublisher: natsPublisherRole,
  natsSubscriber: natsSubscriberRole,
};

/**
 * A scenario of `producers` producers and `consumers` competing consumers (manyToMany) beside
 * NATS (`versus`), with the rows named `nats` and `chan`.
 */
export function manyToManyScenario(
  name: string,
  shape: string,
  versus: string,
  producers: number,
  consumers: number,
  nats: RowName,
  chan: RowName,
): Scenario {
  return {
    name,
    description: `${shape}, ${PAYLOAD_BYTES} B, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chan cap ${CAP} vs ${versus}`,
    budgetMs: 60_000,
    prepare: ensureNatsServer,
    run: async (ctx: ScenarioContext) => ({ rows: await manyToMany(ctx, name, producers, consumers, nats, chan) }),
    roles,
  };
}

export const scenario = manyToManyScenario(
  "chan-2p2c",
  "2 producers → 2 competing consumers",
  "NATS queue group",
  2,
  2,
  { id: "nats.queue", label: "NATS queue group, 2 publishers → 2 subscribers" },
  { id: "chan.2p2c", label: `circuit chan cap ${CAP}, 2 producers (${WINDOW} in flight) → 2 iterate(${PREFETCH})` },
);
