// Scenario `pingpong-load`: latency on a busy server. A ping-pong (chan-pingpong's roles: two
// cap-0 channels, a send then a receive a round) runs while the same daemon carries a steady
// stream of LOAD_RATE 100-byte values a second from a producer process to a consumer process on
// a buffered channel of its own. Beside it, NATS request-reply (the nats scenario's roles) while
// the same nats-server carries the same stream as pub/sub. The producers offer the load at a fixed
// rate, topped up every millisecond, so both servers are offered the same work; the figure is the
// ping-pong's p50 and p99, and each row notes the rate the stream's consumer actually took while
// the rounds ran. The stream's consumers are chan-2p2c's (an iterating consumer, a plain subscriber).
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { PAYLOAD_BYTES, QUEUE_SUBJECT } from "./chan-2p2c.ts";
import { WINDOW } from "./chan-throughput.ts";
import { dialCircuit, getChan } from "./circuit-lib.ts";
import type { RoleContext, RoleHandle, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencyRow, startCircuitDaemon } from "./harness.ts";
import { InFlight } from "./marked.ts";
import { dialNats, ensureNatsServer, startNatsServer } from "./nats.ts";

/** Values a second the stream's producer offers. */
export const LOAD_RATE = 100_000;
/** How long the stream runs before the ping-pong starts. */
const LOAD_WARM_MS = 1500;
const WARMUP = 300;
const ROUNDS = 3000;
const SECONDS = 12;
/** A load producer stops by itself after this, whatever happens to the orchestrator. */
const LOAD_LIMIT_MS = 40_000;

/**
 * Calls `send` LOAD_RATE times a second, topping up what is due every millisecond (awaiting what
 * it returns), from "running" until told to "stop" or LOAD_LIMIT_MS; then reports "stopped" with
 * how many it sent.
 */
async function paced(ctx: RoleContext, send: () => Promise<void> | undefined): Promise<void> {
  let stop = false;
  void ctx.next("stop").then(() => {
    stop = true;
  });
  const t0 = performance.now();
  let sent = 0;
  ctx.report("running");
  while (!stop) {
    const now = performance.now();
    if (now - t0 > LOAD_LIMIT_MS) break;
    const due = Math.floor(((now - t0) * LOAD_RATE) / 1000) - sent;
    for (let i = 0; i < due; i++) {
      const p = send();
      sent++;
      if (p) await p;
    }
    await sleep(1);
  }
  ctx.report("stopped", { sent });
}

async function chanLoadProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const sends = new InFlight(WINDOW);
  await paced(ctx, () => sends.add(ch.send(payload)));
}

async function natsLoadPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  await paced(ctx, () => {
    nc.publish(QUEUE_SUBJECT, payload);
    return undefined;
  });
  await nc.flush();
}

/**
 * Runs the stream (`consumer` already ready, `startProducer` starting its producer) and, once it
 * has run LOAD_WARM_MS, the ping-pong `startRounds` starts; returns the ping-pong's row with the
 * rate the consumer took while it ran.
 */
async function underLoad(
  ctx: ScenarioContext,
  row: { id: string; label: string },
  consumer: RoleHandle,
  startProducer: () => RoleHandle,
  startRounds: () => Promise<RoleHandle>,
): Promise<Row> {
  const producer = startProducer();
  await producer.next("running");
  await sleep(LOAD_WARM_MS, undefined, { signal: ctx.signal });
  consumer.send("mark0");
  const m0 = (await consumer.next("mark0")) as unknown as { n: number; t: number };
  const pinger = await startRounds();
  const s = await pinger.next("done");
  consumer.send("mark1");
  const m1 = (await consumer.next("mark1")) as unknown as { n: number; t: number };
  producer.send("stop");
  const rate = ((m1.n - m0.n) * 1000) / (m1.t - m0.t);
  const rounds = Number(s.rounds);
  const notes = [`the stream carried ${Math.round(rate / 1000)} k values/s of ${LOAD_RATE / 1000} k offered`];
  if (rounds < ROUNDS) notes.push(`time limit after ${rounds} of ${ROUNDS} rounds`);
  return latencyRow(row.id, row.label, s, notes.join("; "));
}

const NATS_ROW = {
  id: "nats.reqrep.load",
  label: `NATS request-reply while the server carries ${LOAD_RATE / 1000} k msg/s of pub/sub`,
};
const CHAN_ROW = {
  id: "chan.pingpong.load",
  label: `circuit ping-pong (two cap-0 chans) while the daemon carries ${LOAD_RATE / 1000} k values/s on another chan`,
};

async function run(ctx: ScenarioContext): Promise<{ rows: Row[] }> {
  const rows: Row[] = [];
  const rounds = { warmup: WARMUP, rounds: ROUNDS, seconds: SECONDS };
  try {
    const port = await startNatsServer(ctx.procs);
    // chan-2p2c's roles take the stream: a plain subscriber, and a consumer that makes the channel.
    const sub = ctx.procs.role("chan-2p2c", "natsSubscriber", { port, alone: true });
    await sub.next("ready");
    rows.push(
      await underLoad(
        ctx,
        NATS_ROW,
        sub,
        () => ctx.procs.role("pingpong-load", "natsLoadPublisher", { port }),
        async () => {
          const subject = "bench.rr";
          const responder = ctx.procs.role("nats", "responder", { port, subject });
          await responder.next("ready");
          return ctx.procs.role("nats", "requester", { port, subject, ...rounds });
        },
      ),
    );
  } catch (e) {
    rows.push({ ...NATS_ROW, kind: "latency", error: errorText(e) });
  }
  await ctx.procs.closeAll();
  try {
    const { url } = await startCircuitDaemon(ctx.procs);
    const tag = `${process.pid}-${Date.now().toString(36)}`;
    const consumer = ctx.procs.role("chan-2p2c", "chanConsumer", { url, name: `load-${tag}` });
    await consumer.next("ready");
    rows.push(
      await underLoad(
        ctx,
        CHAN_ROW,
        consumer,
        () => ctx.procs.role("pingpong-load", "chanLoadProducer", { url, name: `load-${tag}` }),
        async () => {
          const name = `pingpong-${tag}`;
          const pong = ctx.procs.role("chan-pingpong", "pong", { url, name });
          await pong.next("ready");
          return ctx.procs.role("chan-pingpong", "ping", { url, name, ...rounds });
        },
      ),
    );
  } catch (e) {
    rows.push({ ...CHAN_ROW, kind: "latency", error: errorText(e) });
  }
  return { rows };
}

export const scenario: Scenario = {
  name: "pingpong-load",
  description: `ping-pong, ${ROUNDS} rounds after ${WARMUP}, while the server carries ${LOAD_RATE / 1000} k 100-byte values/s between two other processes: circuit vs NATS request-reply`,
  budgetMs: 60_000,
  prepare: ensureNatsServer,
  run,
  roles: {
    chanLoadProducer: chanLoadProducerRole,
    natsLoadPublisher: natsLoadPublisherRole,
  },
};
