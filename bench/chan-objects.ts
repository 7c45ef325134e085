// Scenario `chan-objects`: what the other throughput rows leave out, values that are objects. One
// producer → one consumer, each message a small record made for it (a sequence number, a sensor
// name, a time, a reading, a flag, two tags) that the consumer gets back as an object and checks
// (every field, and the sequence without a gap). Circuit carries it as MessagePack (checked by the
// client first: DESIGN §3.1); beside it NATS pub/sub with nats.js's JSON codec, the way a NATS
// program sends objects. Every role is its own process; both are measured the same way as
// chan-2p2c: the producer runs flat out, and the figure is what the consumer took between two
// marks (bench/marked.ts).
import { JSONCodec } from "nats";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import { dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, startCircuitDaemon } from "./harness.ts";
import { InFlight, lostOf, markedRow, measureMarked, produce, sequenceChecker, WARM_MS, WINDOW_MS } from "./marked.ts";
import { dialNats, ensureNatsServer, NATS_FLUSH_EVERY, startNatsServer } from "./nats.ts";

const SUBJECT = "bench.objects";

interface Reading {
  seq: number;
  sensor: string;
  at: number;
  reading: number;
  ok: boolean;
  tags: string[];
}

const BASE_TIME = 1_765_000_000_000;

/** The record sent as message `seq` (a new object each time, as a program would make). */
function reading(seq: number): Reading {
  return {
    seq,
    sensor: "boiler-7",
    at: BASE_TIME + seq,
    reading: 20 + (seq % 100) / 8,
    ok: seq % 3 !== 0,
    tags: ["site-3", "floor-2"],
  };
}

/** Message `v`'s sequence number, once its every field is what that message's must be (sequenceChecker). */
function readingSeq(v: unknown): number | string {
  const r = v as Reading;
  const want = reading(r.seq);
  if (
    typeof r.seq !== "number" ||
    r.sensor !== want.sensor ||
    r.at !== want.at ||
    r.reading !== want.reading ||
    r.ok !== want.ok ||
    r.tags.length !== 2 ||
    r.tags[0] !== "site-3" ||
    r.tags[1] !== "floor-2"
  ) {
    return `got ${JSON.stringify(v)}`;
  }
  return r.seq;
}

async function chanProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  const sends = new InFlight(WINDOW);
  await produce(ctx, (seq) => sends.add(ch.send(reading(seq))));
}

async function chanConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await openChan(client, String(args.name), CAP);
  const c = sequenceChecker(ctx, readingSeq);
  ctx.report("ready");
  for await (const v of ch.iterate({ prefetch: PREFETCH })) c.arrive(v);
}

async function natsPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const jc = JSONCodec<Reading>();
  await produce(ctx, (seq) => {
    nc.publish(SUBJECT, jc.encode(reading(seq)));
    return (seq + 1) % NATS_FLUSH_EVERY === 0 ? nc.flush() : undefined;
  });
}

async function natsSubscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const jc = JSONCodec<Reading>();
  const c = sequenceChecker(ctx, readingSeq);
  nc.subscribe(SUBJECT, {
    callback: (err, msg) => {
      if (!err) c.arrive(jc.decode(msg.data));
    },
  });
  await nc.flush();
  ctx.report("ready");
}

export const scenario: Scenario = {
  name: "chan-objects",
  description: `1 producer → 1 consumer of small records (objects), ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chan cap ${CAP} (MessagePack) vs NATS pub/sub (JSON codec)`,
  budgetMs: 40_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    const natsLabel = "NATS pub/sub, JSONCodec objects";
    try {
      const port = await startNatsServer(ctx.procs);
      const sub = ctx.procs.role("chan-objects", "natsSubscriber", { port });
      await sub.next("ready");
      const r = await measureMarked(ctx, [sub], () => [ctx.procs.role("chan-objects", "natsPublisher", { port })]);
      rows.push(
        markedRow("nats.objects", natsLabel, r, lostOf(r) > 0 ? `${lostOf(r)} messages never arrived` : undefined),
      );
    } catch (e) {
      rows.push(markedRow("nats.objects", natsLabel, { error: errorText(e) }));
    }
    await ctx.procs.closeAll();
    const chanLabel = `circuit chan cap ${CAP}, objects, ${WINDOW} sends in flight → iterate(${PREFETCH})`;
    try {
      const { url } = await startCircuitDaemon(ctx.procs);
      const name = `objects-${process.pid}-${Date.now().toString(36)}`;
      const consumer = ctx.procs.role("chan-objects", "chanConsumer", { url, name });
      await consumer.next("ready");
      const r = await measureMarked(ctx, [consumer], () => [
        ctx.procs.role("chan-objects", "chanProducer", { url, name }),
      ]);
      // A channel loses nothing: a gap is a failure here, not a note.
      if (lostOf(r) > 0) throw new Error(`${lostOf(r)} messages never arrived`);
      rows.push(markedRow("chan.objects", chanLabel, r));
    } catch (e) {
      rows.push(markedRow("chan.objects", chanLabel, { error: errorText(e) }));
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
