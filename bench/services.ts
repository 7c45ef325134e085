// Services (DESIGN.md §3.7), measured with real daemons (the built CLI, one OS process each) on
// loopback:
//  - failover: three daemons, a service of three replicas (one per daemon), the daemon of one
//    replica (not the supervising one) killed -9, or stopped with SIGSTOP (a silent death: no
//    connection is reset, membership has to find out); time from the kill until peek shows three
//    replicas running, none on the dead daemon;
//  - spike: a service autoscaled on a channel's backlog (perReplica 100, min 1, max 6, metric read
//    every 250 ms); 600 values sent at once; time from the first send until six replicas run;
//  - spread: three daemons, one of them running two CPU burners of its own; a service of 30 idle
//    replicas (no limits); how many land on each daemon.
//
// Run: `npm run build && node --import tsx bench/services.ts [rounds]` (default 3 rounds). Prints
// the figures and writes bench/results/services.json. There is no peer figure: no Kubernetes or
// OTP release runs on this machine to be measured alongside.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type ServiceStat } from "../src/index.ts";
import { type Daemon, killAll, startCircuit } from "../test/helpers/daemon.ts";

const rounds = Number(process.argv[2] ?? 3);

async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

const runningOn = (s: ServiceStat) => s.replicas.filter((r) => r.phase === "running").map((r) => r.server);

async function failover(silent: boolean): Promise<number> {
  const ds = await startCircuit(3);
  const [a] = ds as [Daemon];
  const c = await dial(a.url);
  try {
    const svc = await c.walk(`/${a.id}/svc/web`).makeService({ cmd: { path: "sleep", args: ["600"] }, replicas: 3 });
    await until(
      "3 running",
      async () => ((await svc.peek()).replicas.every((r) => r.phase === "running") ? 1 : undefined),
      10_000,
    );
    const s = await svc.peek();
    const victim = ds.find((d) => d !== a && runningOn(s).includes(`/${d.id}`)) as Daemon;
    const t0 = performance.now();
    victim.kill(silent ? "SIGSTOP" : "SIGKILL");
    await until(
      "replicas elsewhere",
      async () => {
        const on = runningOn(await svc.peek());
        return on.length === 3 && !on.includes(`/${victim.id}`) ? 1 : undefined;
      },
      30_000,
    );
    const ms = performance.now() - t0;
    if (silent) {
      // Its replica process runs on, stopped daemon or not: this daemon and its replica go now.
      const left = s.replicas.find((r) => r.server === `/${victim.id}`);
      victim.kill("SIGKILL");
      void left;
    }
    await svc.scrub();
    return ms;
  } finally {
    await c.close();
    await killAll();
  }
}

async function spike(): Promise<{ ms: number; count: number }> {
  const ds = await startCircuit(3);
  const [a, b] = ds as [Daemon, Daemon];
  const c = await dial(a.url);
  try {
    const jobs = await c.walk(`/${b.id}/jobs`).makeChan<number>(1000);
    const svc = await c.walk(`/${a.id}/svc/pool`).makeService({
      cmd: { path: "sleep", args: ["600"] },
      min: 1,
      max: 6,
      autoscale: { chan: jobs.path, perReplica: 100 },
      intervalMs: 250,
      cooldownMs: 30_000,
    });
    await until("1 running", async () => (runningOn(await svc.peek()).length === 1 ? 1 : undefined), 10_000);
    const t0 = performance.now();
    for (let i = 0; i < 600; i++) await jobs.send(i);
    const count = await until(
      "6 running",
      async () => {
        const n = runningOn(await svc.peek()).length;
        return n === 6 ? n : undefined;
      },
      20_000,
    );
    const ms = performance.now() - t0;
    await svc.scrub();
    return { ms, count };
  } finally {
    await c.close();
    await killAll();
  }
}

async function spread(): Promise<Record<string, number>> {
  const ds = await startCircuit(3);
  const [a, busy] = ds as [Daemon, Daemon];
  const c: Client = await dial(a.url);
  try {
    for (const i of [1, 2]) {
      await c.walk(`/${busy.id}/burn/b${i}`).makeProc({ path: "sh", args: ["-c", "while :; do :; done"] });
    }
    // Wait until the supervising daemon has heard that those burn CPU.
    await until(
      "load gossiped",
      async () => (((await c.servers()).find((s) => s.id === busy.id)?.load?.ownCpu ?? 0) > 0.5 ? 1 : undefined),
      10_000,
    );
    const svc = await c.walk(`/${a.id}/svc/idle`).makeService({ cmd: { path: "sleep", args: ["600"] }, replicas: 30 });
    const s = await until(
      "30 running",
      async () => {
        const x = await svc.peek();
        return runningOn(x).length === 30 ? x : undefined;
      },
      30_000,
    );
    const out: Record<string, number> = {};
    for (const [i, d] of ds.entries()) {
      const name = d === busy ? `server ${i + 1} (2 burners)` : `server ${i + 1}${d === a ? " (supervisor)" : ""}`;
      out[name] = runningOn(s).filter((x) => x === `/${d.id}`).length;
    }
    await svc.scrub();
    return out;
  } finally {
    await c.close();
    await killAll();
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)] as number;
const results: Record<string, unknown> = {};
const crash: number[] = [];
const silent: number[] = [];
const spikes: number[] = [];
for (let r = 0; r < rounds; r++) {
  crash.push(await failover(false));
  silent.push(await failover(true));
  spikes.push((await spike()).ms);
}
const fmt = (xs: number[]) => `median ${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(", ")})`;
console.log(`failover after kill -9 of a replica's daemon → 3 replicas running elsewhere: ${fmt(crash)}`);
console.log(`failover after SIGSTOP (silent) of a replica's daemon → 3 replicas running elsewhere: ${fmt(silent)}`);
console.log(`backlog spike of 600 (100 per replica) → 6 replicas running: ${fmt(spikes)}`);
const sp = await spread();
console.log(`30 idle replicas over 3 servers, one running 2 CPU burners: ${JSON.stringify(sp)}`);
results.failoverKillMs = crash;
results.failoverSilentMs = silent;
results.spikeTo6Ms = spikes;
results.spread30 = sp;
const dir = join(import.meta.dirname, "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "services.json"), `${JSON.stringify(results, null, 2)}\n`);
process.exit(0);
