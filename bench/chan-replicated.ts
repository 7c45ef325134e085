// Scenario `chan-replicated`: a replicated channel (/@/…, R = 3, DESIGN §12) on a 3-node JetStream
// cluster this scenario starts on loopback, next to the engine it rides on measured the same way:
// JetStream R = 3 publish → pull-consume with an ack per message, through the same cluster. Both
// producers keep WINDOW operations in flight; both consumers keep PREFETCH outstanding. Then the
// send (publish) p50 with one operation at a time, and the takeover time distribution: the hosting
// daemon is killed with -9 and the time until a send completes through another daemon is measured.
// For profiling: BENCH_MESSAGES sets the count, BENCH_TAKEOVERS=0 skips the takeovers (a daemon
// killed with -9 writes no profile).
import { performance } from "node:perf_hooks";
import { AckPolicy, connect, type JetStreamClient } from "nats";
import { startNatsCluster } from "../test/helpers/nats-cluster.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencySummary, startCircuitDaemon } from "./harness.ts";

const PAYLOAD_BYTES = 100;
const CAP = 1024;
const WINDOW = 64;
const PREFETCH = 64;
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 30_000);
const SECONDS = 8;
const LATENCY_ROUNDS = 500;
const TAKEOVERS = Number(process.env.BENCH_TAKEOVERS ?? 5);

interface ReplChan {
  send(v: unknown): Promise<void>;
  iterate(o: { prefetch: number }): AsyncIterableIterator<unknown>;
  stat(): Promise<{ host: string }>;
}
interface Lib {
  dial(url: string | string[]): Promise<{
    walk(p: string): {
      makeChan(cap: number, o: { replicas: 3 }): Promise<ReplChan>;
      get(): Promise<unknown>;
    };
    close(): Promise<void>;
  }>;
}
const lib = async () => (await import(new URL("../src/index.ts", import.meta.url).href)) as Lib;

/** Seconds past its own time limit after which a role says it is stuck, with its counts, rather than hang. */
const STALL_SECONDS = 15;

async function windowed(
  count: number,
  seconds: number,
  op: () => Promise<unknown>,
  progress: { issued: number; completed: number },
): Promise<number> {
  const ring: (Promise<unknown> | undefined)[] = new Array(WINDOW);
  const stopAt = performance.now() + seconds * 1000;
  let sent = 0;
  const counted = () => {
    progress.completed++;
  };
  while (sent < count && performance.now() < stopAt) {
    const i = sent % WINDOW;
    const older = ring[i];
    ring[i] = op().then(counted);
    progress.issued++;
    if (older) await older;
    sent++;
  }
  await Promise.all(ring);
  return sent;
}

async function serialLatency(op: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < LATENCY_ROUNDS; i++) {
    const t = performance.now();
    await op();
    out.push(performance.now() - t);
  }
  return out;
}

async function producerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const payload = new Uint8Array(PAYLOAD_BYTES);
  let send: () => Promise<unknown>;
  let done: () => Promise<void>;
  if (args.kind === "circuit") {
    const c = await (await lib()).dial(String(args.url));
    const ch = (await c.walk(String(args.path)).get()) as ReplChan;
    send = () => ch.send(payload);
    done = () => c.close();
  } else {
    const nc = await connect({
      servers: String(args.nats)
        .replace(/nats:\/\//g, "")
        .split(","),
    });
    const js: JetStreamClient = nc.jetstream();
    send = () => js.publish(String(args.subject), payload);
    done = () => nc.close();
  }
  // A run that stalls says how far it got (and the scenario fails with that), instead of waiting
  // for the role's deadline.
  const progress = { issued: 0, completed: 0 };
  const stall = setTimeout(
    () => ctx.report("sent", { stalled: true, ...progress }),
    (Number(args.seconds) + STALL_SECONDS) * 1000,
  );
  const sent = await windowed(Number(args.count), Number(args.seconds), send, progress);
  const lat = await serialLatency(send);
  clearTimeout(stall);
  ctx.report("sent", { sent, lat });
  await done();
}

async function consumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const want = Number(args.count);
  let first = 0;
  let n = 0;
  const stopAt = performance.now() + (Number(args.seconds) + 10) * 1000;
  const arrive = () => {
    if (n++ === 0) first = performance.now();
  };
  const stall = setTimeout(
    () => ctx.report("done", { stalled: true, received: n }),
    (Number(args.seconds) + 10 + STALL_SECONDS) * 1000,
  );
  if (args.kind === "circuit") {
    const c = await (await lib()).dial(String(args.url));
    const ch = (await c.walk(String(args.path)).get()) as ReplChan;
    ctx.report("ready");
    for await (const _ of ch.iterate({ prefetch: PREFETCH })) {
      arrive();
      if (n >= want || performance.now() > stopAt) break;
    }
    await c.close();
  } else {
    const nc = await connect({
      servers: String(args.nats)
        .replace(/nats:\/\//g, "")
        .split(","),
    });
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(String(args.stream), { durable_name: "bench", ack_policy: AckPolicy.Explicit });
    const cons = await nc.jetstream().consumers.get(String(args.stream), "bench");
    ctx.report("ready");
    const it = await cons.consume({ max_messages: PREFETCH });
    for await (const m of it) {
      m.ack();
      arrive();
      if (n >= want || performance.now() > stopAt) break;
    }
    await nc.close();
  }
  clearTimeout(stall);
  ctx.report("done", { received: n, seconds: (performance.now() - first) / 1000 });
}

async function pair(ctx: ScenarioContext, args: Record<string, unknown>, count: number) {
  const consumer = ctx.procs.role("chan-replicated", "consumer", { ...args, count, seconds: SECONDS });
  await consumer.next("ready");
  const producer = ctx.procs.role("chan-replicated", "producer", { ...args, count, seconds: SECONDS });
  const sent = await producer.next("sent");
  if (sent.stalled) {
    const done = await consumer.next("done");
    throw new Error(
      `stalled: ${sent.issued} sends issued, ${sent.completed} completed; ${done.received} received of ${count}`,
    );
  }
  const done = await consumer.next("done");
  if (done.stalled) throw new Error(`stalled: ${done.received} received of ${count}, ${sent.sent} sent`);
  return { sent, done };
}

export const scenario: Scenario = {
  name: "chan-replicated",
  description: `replicated chan /@ R=3 cap ${CAP} vs JetStream R=3, ${MESSAGES} × ${PAYLOAD_BYTES} B, ${WINDOW} in flight, takeovers`,
  budgetMs: 120_000,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    const nats = await startNatsCluster(3);
    try {
      const a = await startCircuitDaemon(ctx.procs, ["--store", nats.url]);
      const daemons = [a];
      for (let i = 0; i < 2; i++)
        daemons.push(await startCircuitDaemon(ctx.procs, ["--store", nats.url, "--join", a.url]));
      const id = `r${process.pid}${Date.now().toString(36)}`;
      const path = `/@/bench/${id}`;
      const admin = await (await lib()).dial(daemons.map((d) => d.url));
      await admin.walk(path).makeChan(CAP, { replicas: 3 });

      const rate = (label: string, rid: string, r: Awaited<ReturnType<typeof pair>>, note: string): void => {
        const received = Number(r.done.received);
        const seconds = Number(r.done.seconds);
        rows.push({
          id: rid,
          label,
          kind: "throughput",
          msgsPerSec: received / seconds,
          messages: received,
          seconds,
          note,
        });
        const lat = latencySummary(r.sent.lat as number[]);
        rows.push({ id: `${rid}.send`, label: `${label}: one send at a time`, kind: "latency", ...lat });
      };
      try {
        const r = await pair(ctx, { kind: "circuit", url: daemons[1]!.url, path }, MESSAGES);
        rate("replicated chan R=3 (send → iterate)", "chan.replicated", r, `producer via another daemon than the host`);
      } catch (e) {
        rows.push({ id: "chan.replicated", label: "replicated chan R=3", kind: "throughput", error: errorText(e) });
      }
      try {
        const nc = await connect({ servers: nats.nodes.map((n) => `127.0.0.1:${n.port}`) });
        const jsm = await nc.jetstreamManager();
        const stream = `BENCH_${id}`;
        await jsm.streams.add({ name: stream, subjects: [`bench.${id}`], num_replicas: 3 });
        await nc.close();
        const r = await pair(ctx, { kind: "js", nats: nats.url, subject: `bench.${id}`, stream }, MESSAGES);
        rate("JetStream R=3 (publish → pull consume + ack)", "nats.jetstream.r3", r, "same cluster, same shape");
      } catch (e) {
        rows.push({ id: "nats.jetstream.r3", label: "JetStream R=3", kind: "throughput", error: errorText(e) });
      }

      // Takeover: kill the host with -9; time until a send through a surviving daemon completes.
      const times: number[] = [];
      try {
        for (let i = 0; i < TAKEOVERS; i++) {
          const c = await (await lib()).dial(daemons.map((d) => d.url));
          let c2: Awaited<ReturnType<Lib["dial"]>> | undefined;
          try {
            const ch = (await c.walk(path).get()) as ReplChan;
            await ch.send(0);
            const host = (await ch.stat()).host;
            const victim = daemons.find((d) => d.url.includes(host));
            if (!victim) throw new Error(`host ${host} is not one of ${daemons.map((d) => d.url).join(" ")}`);
            const others = daemons.filter((d) => d !== victim);
            c2 = await (await lib()).dial(others.map((d) => d.url));
            const ch2 = (await c2.walk(path).get()) as ReplChan;
            // The daemon runs under bench/keeper.ts: kill the daemon itself, by the PID it reports.
            const pid = ((await c.walk(`/${host}`).get()) as { peek(): Promise<{ process: { pid: number } }> })
              .peek()
              .then((s) => s.process.pid);
            const victimPid = await pid;
            const t0 = performance.now();
            process.kill(victimPid, "SIGKILL");
            await ch2.send(1);
            times.push(performance.now() - t0);
            daemons.splice(daemons.indexOf(victim), 1);
            daemons.push(await startCircuitDaemon(ctx.procs, ["--store", nats.url, "--join", others[0]!.url]));
          } finally {
            await c.close().catch(() => {});
            await c2?.close().catch(() => {});
          }
        }
        const sorted = [...times].sort((x, y) => x - y);
        ctx.log(`chan-replicated: takeover after kill -9 (ms): ${sorted.map((t) => t.toFixed(0)).join(", ")}`);
        rows.push({
          id: "chan.replicated.takeover",
          label: "takeover after kill -9 of the host (to the next completed send)",
          kind: "latency",
          ...latencySummary(times),
          note: `all (ms): ${sorted.map((t) => t.toFixed(0)).join(", ")}`,
        });
      } catch (e) {
        rows.push({ id: "chan.replicated.takeover", label: "takeover", kind: "latency", error: errorText(e) });
      }
      await admin.close().catch(() => {});
    } finally {
      await nats.stop();
    }
    return { rows };
  },
  roles: { producer: producerRole, consumer: consumerRole },
};
