// The worker pool: a producer bursts JOBS jobs (default 20,000) into a channel; a service of
// workers (each a separate OS process) autoscales on the channel's backlog from 1 to MAX across
// three servers, drains it and scales back down. Midway one server is killed -9: its workers come
// back on the others, and the jobs they held are sent again, so every job is processed.
//
//   node --import tsx examples/worker-pool/main.ts
//   JOBS=4000 MAX=4 WORK_MS=1 COOLDOWN_MS=2000 node --import tsx examples/worker-pool/main.ts
//
// It starts its own three daemons (the built CLI, `npm ci` makes it) on free loopback ports and
// stops them at the end. Exit code 0 once every job was processed and the pool is back at one
// worker; 1 on a timeout (TIMEOUT_S, default 180).
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Chan, dial, type ServiceStat } from "circuit-ts";

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const JOBS = env("JOBS", 20_000);
const MAX = env("MAX", 6);
const PER = env("PER_REPLICA", 1000);
const WORK_MS = env("WORK_MS", 1);
const COOLDOWN_MS = env("COOLDOWN_MS", 3000);
const TIMEOUT_S = env("TIMEOUT_S", 180);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLI = `${ROOT}dist/cli/circuit.cjs`;
if (!existsSync(CLI)) throw new Error("run `npm ci` (or `npm run build`) first: the daemons are the built CLI");

const t0 = Date.now();
const say = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`);

// Three daemons, each its own OS process, so that one can be killed -9.
const daemons: { name: string; id: string; url: string; proc: ChildProcess }[] = [];
async function startDaemon(name: string, join?: string) {
  const args = [CLI, "start", "--addr", "127.0.0.1:0", ...(join ? ["--join", join] : [])];
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "ignore"] });
  const [line] = (await Promise.race([
    once(proc.stdout!.setEncoding("utf8"), "data"),
    once(proc, "exit").then(() => {
      throw new Error(`daemon ${name} exited`);
    }),
  ])) as [string];
  const url = line.split("\n")[0] as string;
  daemons.push({ name, id: url.slice(url.lastIndexOf("/") + 1), url, proc });
  proc.stdout!.resume();
}
const cleanup = () => {
  for (const d of daemons) d.proc.kill("SIGKILL");
};
process.once("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(1);
  });
}

await startDaemon("A");
await startDaemon("B", daemons[0]!.url);
await startDaemon("C", daemons[0]!.url);
const A = daemons[0]!;
const client = await dial(A.url);
while ((await client.servers()).length < 3) await new Promise((r) => setTimeout(r, 50));
const nameOf = (server: string | null) => daemons.find((d) => `/${d.id}` === server)?.name ?? "?";
say(`circuit of 3 daemons: ${daemons.map((d) => `${d.name}=${d.id}`).join(" ")}`);

const jobs = (await client.walk(`/${A.id}/pool/jobs`).makeChan<number>(JOBS)) as Chan<number>;
const done = (await client.walk(`/${A.id}/pool/done`).makeChan<number>(JOBS)) as Chan<number>;
const svc = await client.walk(`/${A.id}/pool/workers`).makeService({
  cmd: {
    path: process.execPath,
    args: ["--import", "tsx", fileURLToPath(new URL("./worker.ts", import.meta.url))],
    dir: ROOT,
    env: { CIRCUIT: A.url, JOBS: jobs.path, DONE: done.path, WORK_MS: String(WORK_MS) },
    inheritEnv: true,
  },
  min: 1,
  max: MAX,
  autoscale: { chan: jobs.path, perReplica: PER },
  cooldownMs: COOLDOWN_MS,
  intervalMs: 250,
  backoffMs: 200,
});
say(`service ${svc.path}: 1…${MAX} workers, one per ${PER} jobs of backlog, cool-down ${COOLDOWN_MS} ms`);

// Every result counts once, whichever worker (or retry) produced it.
const seen = new Uint8Array(JOBS);
let processed = 0;
let lastProgress = Date.now();
const collector = (async () => {
  for await (const id of done.iterate({ prefetch: 256 })) {
    if (!seen[id]) {
      seen[id] = 1;
      processed++;
      lastProgress = Date.now();
    }
    if (processed === JOBS) return;
  }
})();

// The producer: one burst, while the pool watches the backlog.
const burstAt = Date.now();
const producer = (async () => {
  for (let i = 0; i < JOBS; i++) await jobs.send(i);
  say(`producer: ${JOBS} jobs sent in ${Date.now() - burstAt} ms`);
})();

const describe = (s: ServiceStat) => {
  const per = new Map<string, number>();
  for (const r of s.replicas)
    if (r.phase === "running") per.set(nameOf(r.server), (per.get(nameOf(r.server)) ?? 0) + 1);
  const where = [...per]
    .sort()
    .map(([k, v]) => `${k}:${v}`)
    .join(" ");
  return `${[...per.values()].reduce((a, b) => a + b, 0)}/${s.desired} workers [${where}]`;
};

let killed: string | undefined;
let lastEvent = "";
let resent = 0;
let finishedAt = 0;
let status = 1;
let lastLine = 0;
const deadline = t0 + TIMEOUT_S * 1000;
while (Date.now() < deadline) {
  const s = await svc.peek();
  const backlog = (await jobs.stat()).len;
  const ev = s.lastEvent ? `${s.lastEvent.kind}: ${s.lastEvent.message}` : "";
  if (ev !== lastEvent) {
    lastEvent = ev;
    say(`service: ${ev}`);
  }
  if (Date.now() - lastLine >= 1000) {
    lastLine = Date.now();
    say(`backlog ${backlog}, processed ${processed}/${JOBS}, ${describe(s)}`);
  }
  // Midway, kill -9 the server (not A, which supervises) running the most workers.
  if (!killed && processed >= JOBS / 3) {
    const counts = new Map<string, number>();
    for (const r of s.replicas)
      if (r.server && r.server !== `/${A.id}`) counts.set(r.server, (counts.get(r.server) ?? 0) + 1);
    const victim = [...counts].sort((x, y) => y[1] - x[1])[0];
    const d = victim && daemons.find((x) => `/${x.id}` === victim[0]);
    if (d) {
      killed = d.name;
      d.proc.kill("SIGKILL");
      say(`kill -9 server ${d.name} (${d.id}) with ${victim[1]} workers on it`);
      const from = Date.now();
      for (;;) {
        const x = await svc.peek();
        const moved = x.replicas.filter((r) => r.phase === "running").every((r) => r.server !== `/${d.id}`);
        if (moved && x.replicas.filter((r) => r.phase === "running").length === x.desired) {
          say(`workers of ${d.name} running elsewhere after ${Date.now() - from} ms: ${describe(x)}`);
          break;
        }
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  // Jobs a killed worker had taken are gone with it: once the backlog is empty and nothing has
  // come back for a while, send the missing ones again (at-least-once; results count once).
  if (processed < JOBS && backlog === 0 && Date.now() - lastProgress > 2000) {
    const missing: number[] = [];
    for (let i = 0; i < JOBS; i++) if (!seen[i]) missing.push(i);
    resent += missing.length;
    say(`${missing.length} jobs were taken by workers that died before finishing: sending them again`);
    for (const i of missing) await jobs.send(i);
    lastProgress = Date.now();
  }
  if (processed === JOBS && !finishedAt) {
    finishedAt = Date.now();
    say(`all ${JOBS} jobs processed (${resent} sent twice); waiting for the pool to scale down`);
  }
  if (finishedAt && s.desired === 1 && s.replicas.filter((r) => r.phase === "running").length === 1) {
    say(`scaled back down to 1 worker: ${describe(s)}`);
    status = 0;
    break;
  }
  await new Promise((r) => setTimeout(r, 200));
}
await producer;
if (status !== 0) say(`timed out after ${TIMEOUT_S} s with ${processed}/${JOBS} processed`);
await collector.catch(() => {});
await svc.scrub().catch(() => {});
await client.close();
for (const d of daemons) d.proc.kill("SIGTERM");
await Promise.all(
  daemons.map((d) => (d.proc.exitCode === null && d.proc.signalCode === null ? once(d.proc, "exit") : null)),
);
say(status === 0 ? "done" : "failed");
process.exit(status);
