// Scenario `select-replicated`: what a select case on a /@ replicated channel (R = 3) costs, next
// to the plain operation on the same channel, in the same run. A 3-node JetStream cluster on
// loopback and two daemons; the channel is hosted by one daemon, the client dials the other (so
// every operation goes to the host on the client's second connection, as in a real circuit). One
// at a time, in alternating blocks: a plain `send`, a select with one /@ send case (registration,
// offer, commit: the append), a plain `recv` of a ready value, and a select over a /@ recv case
// with a value ready and an ordinary recv case on an empty channel.
import { performance } from "node:perf_hooks";
import { startNatsCluster } from "../test/helpers/nats-cluster.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencySummary, startCircuitDaemon } from "./harness.ts";

const ROUNDS = 1_000;
const BLOCK = 100;
const SECONDS = 10;
const WARMUP = 100;

interface Case {
  readonly op: string;
}
interface AnyChan {
  send(v: unknown): Promise<void>;
  recv(): Promise<unknown>;
  recvCase(): Case;
  sendCase(v: unknown): Case;
  stat(): Promise<{ host?: string }>;
}
interface Lib {
  dial(url: string): Promise<{
    walk(p: string): { makeChan(cap: number, o?: { replicas: 3 }): Promise<AnyChan>; get(): Promise<unknown> };
    close(): Promise<void>;
  }>;
  select(cases: Case[]): Promise<{ index: number; value?: unknown }>;
}
const lib = async () => (await import(new URL("../src/index.ts", import.meta.url).href)) as Lib;

const OPS = ["send", "select-send", "recv", "select-recv"] as const;

async function clientRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const { dial, select } = await lib();
  const c = await dial(String(args.url));
  const r = (await c.walk(String(args.path)).get()) as AnyChan;
  const empty = (await c.walk(String(args.empty)).get()) as AnyChan;
  const payload = new Uint8Array(100);
  const run: Record<(typeof OPS)[number], () => Promise<unknown>> = {
    send: () => r.send(payload),
    "select-send": () => select([r.sendCase(payload)]),
    // A send of each kind came first in the block, so a value is ready for every receive.
    recv: () => r.recv(),
    "select-recv": () => select([r.recvCase(), empty.recvCase()]),
  };
  const samples = Object.fromEntries(OPS.map((o) => [o, [] as number[]])) as Record<string, number[]>;
  for (let i = 0; i < WARMUP; i++) for (const o of OPS) await run[o]();
  const stopAt = performance.now() + SECONDS * 1000;
  let done = 0;
  while (done < ROUNDS && performance.now() < stopAt) {
    for (const o of OPS) {
      for (let k = 0; k < BLOCK; k++) {
        const t = performance.now();
        await run[o]();
        samples[o]?.push(performance.now() - t);
      }
    }
    done += BLOCK;
  }
  await c.close();
  ctx.report("done", { results: Object.fromEntries(OPS.map((o) => [o, latencySummary(samples[o] ?? [])])) });
}

const LABELS: Record<(typeof OPS)[number], string> = {
  send: "/@ R=3 plain send, one at a time",
  "select-send": "/@ R=3 select with one send case",
  recv: "/@ R=3 plain recv of a ready value",
  "select-recv": "/@ R=3 select: recv case with a value ready + empty ordinary recv case",
};

export const scenario: Scenario = {
  name: "select-replicated",
  description: `select cases on a /@ channel (R=3) vs plain send/recv on it, up to ${ROUNDS} each in blocks of ${BLOCK}, ≤ ${SECONDS} s`,
  budgetMs: 90_000,
  async run(ctx: ScenarioContext) {
    const nats = await startNatsCluster(3);
    try {
      const host = await startCircuitDaemon(ctx.procs, ["--store", nats.url]);
      const other = await startCircuitDaemon(ctx.procs, ["--store", nats.url, "--join", host.url]);
      const stamp = `${process.pid}${Date.now().toString(36)}`;
      const path = `/@/bench/sel${stamp}`;
      const { dial } = await lib();
      const admin = await dial(host.url);
      // Its first operation goes through `host`'s daemon, which takes the lease.
      const made = await admin.walk(path).makeChan(4096, { replicas: 3 });
      const hostId = host.url.slice(host.url.lastIndexOf("/") + 1);
      const id = other.url.slice(other.url.lastIndexOf("/") + 1);
      const at = (await made.stat()).host;
      if (at !== hostId) throw new Error(`${path} is hosted by ${at}, not ${hostId}`);
      const empty = `/${id}/bench-empty-${stamp}`;
      const side = await dial(other.url);
      await side.walk(empty).makeChan(1);
      const role = ctx.procs.role("select-replicated", "client", { url: other.url, path, empty }, 80_000);
      const { results } = (await role.next("done")) as unknown as { results: Record<string, Record<string, number>> };
      await admin.close().catch(() => {});
      await side.close().catch(() => {});
      return {
        rows: OPS.map((o): Row => ({ id: `select.replicated.${o}`, label: LABELS[o], kind: "latency", ...results[o] })),
      };
    } catch (e) {
      return {
        rows: OPS.map(
          (o): Row => ({ id: `select.replicated.${o}`, label: LABELS[o], kind: "latency", error: errorText(e) }),
        ),
      };
    } finally {
      await nats.stop();
    }
  },
  roles: { client: clientRole },
};
