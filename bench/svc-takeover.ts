// Supervision takeover of a service at /@ (DESIGN §3.7, §12), measured with real daemons (the
// built CLI, one OS process each, started with --store) over a 3-node NATS JetStream cluster on
// loopback. A service of three replicas; each round the daemon supervising it dies:
//  - kill -9: time from the kill until a peek (through a surviving daemon) names another
//    supervisor, and until it shows three replicas running, none on the dead daemon;
//  - SIGSTOP (a silent death: membership has to find out): time from the stop until another
//    daemon logs that it supervises the service (read from its log: a peek meanwhile may wait on
//    the frozen daemon's socket), and until three replicas run off the frozen daemon.
// After each round a new daemon joins, so that three stay. The replicas on live daemons must keep
// their processes (checked by PID each round).
//
// Run: `npm run build && node --import tsx bench/svc-takeover.ts [rounds]` (default 3 of each).
// Prints the figures and writes bench/results/svc-takeover.json. There is no peer figure: no
// other supervisor with a shared store runs on this machine to be measured alongside.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type Service, type ServiceStat } from "../src/index.ts";
import { type Daemon, killAll } from "../test/helpers/daemon.ts";
import { startStoreCircuit } from "../test/helpers/store.ts";

const rounds = Number(process.argv[2] ?? 3);
const isLive = (d: Daemon) => d.proc.exitCode === null && d.proc.signalCode === null;
const running = (s: ServiceStat) => s.replicas.filter((r) => r.phase === "running");

async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    const v = await f().catch((err) => {
      last = err;
      return undefined;
    });
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms; last error: ${String(last)}`);
    await sleep(20);
  }
}

const sc = await startStoreCircuit(3);
const out: Record<string, number[]> = {
  killSupervisorMs: [],
  killRunningMs: [],
  stopSupervisorMs: [],
  stopRunningMs: [],
};
try {
  const first = await dial(sc.daemons[0]!.url);
  await (await first.walk("/@/bench").makeService({ cmd: { path: "sleep", args: ["600"] }, replicas: 3 })).peek();
  await first.close();
  for (let i = 0; i < 2 * rounds; i++) {
    const silent = i % 2 === 1;
    const live = sc.daemons.filter(isLive);
    const c: Client = await dial(live.map((d) => d.url));
    try {
      const svc = (await c.walk("/@/bench").getService()) as Service;
      const s = await until(
        "3 running",
        async () => ((x) => (running(x).length === 3 ? x : undefined))(await svc.peek()),
        15_000,
      );
      const boss = live.find((d) => d.id === s.supervisor) as Daemon;
      const others = live.filter((d) => d !== boss);
      const pids = new Map<string, number>();
      for (const r of s.replicas) {
        if (r.server === `/${boss.id}`) continue;
        pids.set(r.path, ((await c.walk(r.path).peek()) as { pid: number }).pid);
      }
      // A client of the survivors only, so that no request waits on the dying daemon.
      await c.close();
      const t0 = Date.now();
      boss.kill(silent ? "SIGSTOP" : "SIGKILL");
      const c2 = await dial(others.map((d) => d.url));
      try {
        const svc2 = (await c2.walk("/@/bench").getService()) as Service;
        let supervised: number;
        if (silent) {
          const took = /"time":"([^"]+)","event":"svc-(?:hosting|takeover)","path":"\/@\/bench"/g;
          supervised = await until(
            "another supervisor (log)",
            async () => {
              for (const d of others)
                for (const m of d.stderr().matchAll(took))
                  if (Date.parse(m[1] as string) > t0) return Date.parse(m[1] as string) - t0;
              return undefined;
            },
            20_000,
          );
        } else {
          await until(
            "another supervisor",
            async () => ((await svc2.peek()).supervisor !== boss.id ? 1 : undefined),
            20_000,
          );
          supervised = Date.now() - t0;
        }
        let lastSeen: ServiceStat | undefined;
        const after = await until(
          "3 running off the dead daemon",
          async () => {
            const x = await svc2.peek();
            lastSeen = x;
            return running(x).length === 3 &&
              x.supervisor !== boss.id &&
              x.replicas.every((r) => r.server !== `/${boss.id}`)
              ? x
              : undefined;
          },
          30_000,
        ).catch((err) => {
          throw new Error(
            `${(err as Error).message}; last peek: ${JSON.stringify(lastSeen?.replicas)} by ${lastSeen?.supervisor}`,
          );
        });
        const restored = Date.now() - t0;
        for (const [path, pid] of pids) {
          const now = ((await c2.walk(path).peek()) as { pid: number }).pid;
          if (!after.replicas.some((r) => r.path === path) || now !== pid)
            throw new Error(`${path} did not keep its process`);
        }
        out[silent ? "stopSupervisorMs" : "killSupervisorMs"]!.push(supervised);
        out[silent ? "stopRunningMs" : "killRunningMs"]!.push(restored);
        console.log(
          `round ${i + 1}: ${silent ? "SIGSTOP" : "kill -9"} of the supervisor → another supervises after ${supervised} ms, 3 running after ${restored} ms`,
        );
      } finally {
        await c2.close();
      }
      if (silent) boss.kill("SIGKILL");
      // A new daemon joins every survivor (a seed that is itself dying would leave it alone in a
      // circuit of its own), and the round ends once it sees them all.
      const added = await sc.add(others.flatMap((d) => ["--join", d.url]));
      const c3 = await dial(added.url);
      try {
        await until(
          "the new daemon sees the circuit",
          async () => ((await c3.servers()).length === others.length + 1 ? 1 : undefined),
          15_000,
        );
      } finally {
        await c3.close();
      }
    } finally {
      await c.close().catch(() => {});
    }
  }
} catch (err) {
  // What the daemons said about the service, to see where a round went wrong.
  for (const d of sc.daemons) {
    const lines = d
      .stderr()
      .split("\n")
      .filter((l) => /svc|leave|suspect|join|bench|takeover|dead|alive/.test(l));
    console.error(`# ${d.id}${isLive(d) ? "" : " (dead)"}\n${lines.join("\n")}`);
  }
  throw err;
} finally {
  await sc.stop();
  await killAll();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const fmt = (xs: number[]) => `median ${median(xs)} ms (${xs.join(", ")})`;
console.log(
  `kill -9 of the supervisor → new supervisor: ${fmt(out.killSupervisorMs!)}; 3 running: ${fmt(out.killRunningMs!)}`,
);
console.log(
  `SIGSTOP of the supervisor → new supervisor: ${fmt(out.stopSupervisorMs!)}; 3 running: ${fmt(out.stopRunningMs!)}`,
);
const dir = join(import.meta.dirname, "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "svc-takeover.json"), `${JSON.stringify(out, null, 2)}\n`);
