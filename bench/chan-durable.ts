// Scenario `chan-durable`: a durable circuit channel (DESIGN §3.6; every send completes once its
// value is synced to disk, group commit) end to end, beside the same shape on an in-memory channel
// and on NATS JetStream (file storage, against a nats-server this scenario starts with -js and a
// store in a temporary directory) in the same run:
//   throughput: a producer keeps WINDOW sends in flight (JetStream: WINDOW publishes awaiting their
//   acks), a consumer receives and acknowledges each message (circuit: iterate with a prefetch;
//   JetStream: a pull consumer with explicit acks), measured at the consumer;
//   latency: one send at a time, awaited (JetStream: publish awaiting its ack): p50/p99.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { AckPolicy, connect, StorageType } from "nats";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { Procs, RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, firstMatch, latencySummary, Phases, phaseRows, startCircuitDaemon } from "./harness.ts";
import { findExecutable } from "./nats.ts";

const PAYLOAD_BYTES = 100;
const CAP = 100_000;
const WINDOW = 1024;
const PREFETCH = 256;
const WARM = 20_000;
const MESSAGES = 200_000;
const SECONDS = 10;
const LAT_WARMUP = 200;
const LAT_ROUNDS = 3_000;
const LAT_SECONDS = 6;

async function producerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  const count = Number(args.count);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const window = Number(args.window);
  const ring: (Promise<void> | undefined)[] = new Array(window);
  let sent = 0;
  while (sent < count) {
    const i = sent % window;
    const older = ring[i];
    ring[i] = ch.send(payload);
    if (older) await older;
    sent++;
    if ((sent & 1023) === 0 && performance.now() > stopAt) break;
  }
  await Promise.all(ring);
  ctx.report("sent", { sent });
}

async function consumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await openChan(client, String(args.name), CAP, args.durable === true);
  const phases = new Phases(Number(args.warm), Number(args.count), Number(args.seconds) * 1000, ctx);
  ctx.report("ready");
  for await (const v of ch.iterate({ prefetch: PREFETCH })) {
    if (phases.finished) break;
    if (phases.received === 0) checkPayload(v, PAYLOAD_BYTES);
    if (phases.arrive()) break;
  }
  phases.finish("channel closed");
}

async function latencyRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await openChan(client, String(args.name), CAP, true);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  for (let i = 0; i < LAT_WARMUP; i++) await ch.send(payload);
  const samples = new Float64Array(LAT_ROUNDS);
  const stopAt = performance.now() + LAT_SECONDS * 1000;
  let n = 0;
  while (n < LAT_ROUNDS && performance.now() < stopAt) {
    const t = performance.now();
    await ch.send(payload);
    samples[n++] = performance.now() - t;
  }
  ctx.report("done", latencySummary(samples.subarray(0, n)));
}

async function jsPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${Number(args.port)}`, reconnect: false });
  const js = nc.jetstream();
  const count = Number(args.count);
  const window = Number(args.window);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const ring: (Promise<unknown> | undefined)[] = new Array(window);
  let sent = 0;
  while (sent < count) {
    const i = sent % window;
    const older = ring[i];
    ring[i] = js.publish(String(args.subject), payload);
    if (older) await older;
    sent++;
    if ((sent & 1023) === 0 && performance.now() > stopAt) break;
  }
  await Promise.all(ring);
  ctx.report("sent", { sent });
  await nc.drain();
}

async function jsConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${Number(args.port)}`, reconnect: false });
  const js = nc.jetstream();
  const consumer = await js.consumers.get(String(args.stream), String(args.durable));
  const phases = new Phases(Number(args.warm), Number(args.count), Number(args.seconds) * 1000, ctx);
  const msgs = await consumer.consume({ max_messages: PREFETCH });
  ctx.report("ready");
  for await (const m of msgs) {
    if (phases.received === 0) checkPayload(m.data, PAYLOAD_BYTES);
    m.ack();
    if (phases.arrive()) break;
  }
  phases.finish("consumer ended");
  await nc.close();
}

async function jsLatencyRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${Number(args.port)}`, reconnect: false });
  const js = nc.jetstream();
  const payload = new Uint8Array(PAYLOAD_BYTES);
  for (let i = 0; i < LAT_WARMUP; i++) await js.publish(String(args.subject), payload);
  const samples = new Float64Array(LAT_ROUNDS);
  const stopAt = performance.now() + LAT_SECONDS * 1000;
  let n = 0;
  while (n < LAT_ROUNDS && performance.now() < stopAt) {
    const t = performance.now();
    await js.publish(String(args.subject), payload);
    samples[n++] = performance.now() - t;
  }
  ctx.report("done", latencySummary(samples.subarray(0, n)));
  await nc.close();
}

/** nats-server with JetStream, its store in `dir`; resolves with its client port. */
async function startJetStream(procs: Procs, dir: string): Promise<number> {
  const path = findExecutable("nats-server");
  if (!path) throw new Error("nats-server is not installed (the nats scenario installs it)");
  const server = procs.spawn("nats-server -js", path, ["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", dir]);
  const m = await firstMatch(server, "stderr", /Listening for client connections on [^\s:]+:(\d+)/);
  return Number(m[1]);
}

/** A file-storage stream on `subject` with a durable pull consumer that acks each message. */
async function makeStream(port: number, name: string, subject: string): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name, subjects: [subject], storage: StorageType.File });
  await jsm.consumers.add(name, { durable_name: "c", ack_policy: AckPolicy.Explicit });
  await nc.close();
}

function latencyRow(id: string, label: string, s: Record<string, unknown>): Row {
  return {
    id,
    label,
    kind: "latency",
    rounds: Number(s.rounds),
    p50Us: Number(s.p50Us),
    p99Us: Number(s.p99Us),
    meanUs: Number(s.meanUs),
    minUs: Number(s.minUs),
    maxUs: Number(s.maxUs),
  };
}

async function circuitRuns(ctx: ScenarioContext, dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const { url } = await startCircuitDaemon(ctx.procs, ["--data", dir]);
  ctx.log(`chan-durable: daemon at ${url} on ${dir}`);
  for (const durable of [true, false]) {
    const main = durable
      ? { id: "chan.durable", label: `durable chan, ${WINDOW} in flight → iterate(${PREFETCH})` }
      : { id: "chan.durable.memory", label: "in-memory chan, the same shape" };
    const cold = { id: `${main.id}.cold`, label: `${main.label}, first ${WARM / 1000}k` };
    try {
      const name = `${durable ? "durable" : "memory"}-${process.pid}-${Date.now().toString(36)}`;
      const common = { url, name };
      const consumer = ctx.procs.role("chan-durable", "consumer", {
        ...common,
        durable,
        warm: WARM,
        count: MESSAGES,
        seconds: SECONDS,
      });
      await consumer.next("ready");
      ctx.procs.role("chan-durable", "producer", {
        ...common,
        count: WARM + MESSAGES,
        seconds: SECONDS + 2,
        window: WINDOW,
      });
      rows.push(...phaseRows(main, cold, MESSAGES, await consumer.next("done")));
    } catch (e) {
      rows.push(...phaseRows(main, cold, MESSAGES, { error: errorText(e) }));
    }
  }
  const lat = { id: "chan.durable.send", label: "durable chan, one await send at a time" };
  try {
    const r = ctx.procs.role("chan-durable", "latency", { url, name: `lat-${process.pid}-${Date.now().toString(36)}` });
    rows.push(latencyRow(lat.id, lat.label, await r.next("done")));
  } catch (e) {
    rows.push({ ...lat, kind: "latency", error: errorText(e) });
  }
  return rows;
}

async function jetStreamRuns(ctx: ScenarioContext, dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const main = { id: "nats.js.e2e", label: `JetStream file, ${WINDOW} in flight → pull, ack each` };
  const cold = { id: "nats.js.e2e.cold", label: `NATS JetStream, first ${WARM / 1000}k` };
  let port = 0;
  try {
    port = await startJetStream(ctx.procs, dir);
    await makeStream(port, "BENCH", "bench.js");
    const consumer = ctx.procs.role("chan-durable", "jsConsumer", {
      port,
      stream: "BENCH",
      durable: "c",
      warm: WARM,
      count: MESSAGES,
      seconds: SECONDS,
    });
    await consumer.next("ready");
    ctx.procs.role("chan-durable", "jsPublisher", {
      port,
      subject: "bench.js",
      count: WARM + MESSAGES,
      seconds: SECONDS + 2,
      window: WINDOW,
    });
    rows.push(...phaseRows(main, cold, MESSAGES, await consumer.next("done")));
  } catch (e) {
    rows.push(...phaseRows(main, cold, MESSAGES, { error: errorText(e) }));
  }
  const lat = { id: "nats.js.puback", label: "JetStream file, one publish awaiting its ack" };
  try {
    if (!port) throw new Error("no JetStream server");
    await makeStream(port, "LAT", "bench.lat");
    const r = ctx.procs.role("chan-durable", "jsLatency", { port, subject: "bench.lat" });
    rows.push(latencyRow(lat.id, lat.label, await r.next("done")));
  } catch (e) {
    rows.push({ ...lat, kind: "latency", error: errorText(e) });
  }
  return rows;
}

export const scenario: Scenario = {
  name: "chan-durable",
  description: `durable circuit chan vs in-memory chan vs NATS JetStream (file), ${WARM} + ${MESSAGES} × ${PAYLOAD_BYTES} B, ≤ ${SECONDS} s each`,
  budgetMs: 120_000,
  async run(ctx: ScenarioContext) {
    const dir = mkdtempSync(join(tmpdir(), "circuit-bench-durable-"));
    try {
      const rows = [...(await circuitRuns(ctx, join(dir, "circuit"))), ...(await jetStreamRuns(ctx, join(dir, "js")))];
      return { rows };
    } finally {
      await ctx.procs.closeAll();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  roles: {
    producer: producerRole,
    consumer: consumerRole,
    latency: latencyRole,
    jsPublisher: jsPublisherRole,
    jsConsumer: jsConsumerRole,
    jsLatency: jsLatencyRole,
  },
};
