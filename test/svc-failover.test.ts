// test-runner: heavy (failover within the failure-detection bound)
// A service keeps its replicas across servers (DESIGN.md §3.7): three replicas spread over three
// daemons, one daemon killed -9, its replica started on a live server within the failure-detection
// bound plus start-up; when the supervising daemon dies, the replicas it placed elsewhere go too.
// Driven with the CLI (mksvc, peek, scale, scrub) as a user would.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceStat } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { killAll, runCli } from "./helpers/daemon.ts";
import { alive } from "./helpers/streams.ts";

after(killAll);

test("3 replicas over 3 daemons; after kill -9 of one, its replica runs elsewhere", async () => {
  const ds = await circuit(3);
  const [a, b, c] = ds as [(typeof ds)[0], (typeof ds)[0], (typeof ds)[0]];
  const svc = `/${a.id}/svc/web`;
  const cli = (...args: string[]) => runCli(["-d", a.url, ...args]);
  const mk = await cli("mksvc", svc, "--replicas", "3", "--backoff-ms", "100", "--", "sleep", "300");
  assert.equal(mk.code, 0, mk.stderr);
  const peek = async (): Promise<ServiceStat> => {
    const r = await cli("peek", svc);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as ServiceStat;
  };
  const until = async (what: string, ok: (s: ServiceStat) => boolean, ms: number): Promise<ServiceStat> => {
    const t0 = Date.now();
    for (;;) {
      const s = await peek();
      if (ok(s)) return s;
      assert.ok(Date.now() - t0 < ms, `${what} within ${ms} ms; last: ${JSON.stringify(s.replicas)}`);
      await sleep(100);
    }
  };
  const running = (s: ServiceStat) => s.replicas.filter((r) => r.phase === "running");
  let s = await until("3 running", (x) => running(x).length === 3, 10_000);
  // Spread: one on each server, at the service's path under that server, plus r<n>.
  assert.deepEqual(new Set(s.replicas.map((r) => r.server)), new Set(ds.map((d) => `/${d.id}`)));
  for (const r of s.replicas) assert.match(r.path, new RegExp(`^${r.server}/svc/web/r[123]$`));
  const onB = s.replicas.find((r) => r.server === `/${b.id}`)!;
  const pidOnB = JSON.parse((await cli("peek", onB.path)).stdout.toString()).pid as number;
  assert.ok(alive(pidOnB));

  // kill -9 B: its replica must come back on A or C.
  b.kill("SIGKILL");
  const t0 = Date.now();
  s = await until(
    "3 running on the live servers",
    (x) => running(x).length === 3 && x.replicas.every((r) => r.server !== `/${b.id}`),
    15_000,
  );
  const restoredMs = Date.now() - t0;
  console.log(`# replica of the killed daemon running elsewhere after ${restoredMs} ms`);
  const moved = s.replicas.find((r) => r.path.endsWith(onB.path.slice(onB.path.lastIndexOf("/"))))!;
  assert.ok(moved.restarts >= 1, "the moved replica counts a restart");
  assert.ok([`/${a.id}`, `/${c.id}`].includes(moved.server!));
  // Every replica is a real process on its server.
  for (const r of s.replicas) {
    const p = JSON.parse((await cli("peek", r.path)).stdout.toString());
    assert.equal(p.phase, "running");
    assert.ok(alive(p.pid));
  }

  // scale down by hand, then scrub: the replicas are gone.
  assert.equal((await cli("scale", svc, "1")).code, 0);
  s = await until("1 replica", (x) => x.replicas.length === 1, 10_000);
  assert.equal(s.desired, 1);
  const last = s.replicas[0]!;
  const lastPid = JSON.parse((await cli("peek", last.path)).stdout.toString()).pid as number;
  assert.equal((await cli("scrub", svc)).code, 0);
  assert.equal((await cli("peek", svc)).code, 1);
  assert.equal(alive(lastPid), false, "scrub stopped the last replica");
  const ls = await cli("ls", "-l", "/...");
  assert.doesNotMatch(ls.stdout.toString(), /svc\/web/);

  // Replicas go with their supervisor: kill -9 A, and C stops the replica A had placed there.
  const again = await cli("mksvc", svc, "--replicas", "2", "--", "sleep", "300");
  assert.equal(again.code, 0, again.stderr);
  s = await until("2 running on A and C", (x) => new Set(running(x).map((r) => r.server)).size === 2, 10_000);
  const onC = s.replicas.find((r) => r.server === `/${c.id}`)!;
  const pidOnC = JSON.parse((await runCli(["-d", c.url, "peek", onC.path])).stdout.toString()).pid as number;
  a.kill("SIGKILL");
  const t1 = Date.now();
  while (alive(pidOnC)) {
    assert.ok(Date.now() - t1 < 10_000, "the replica on C outlived its supervisor by 10 s");
    await sleep(100);
  }
  assert.equal((await runCli(["-d", c.url, "peek", onC.path])).code, 1, "its element is gone too");
  assert.match(c.stderr(), /svc\/web\/r\d: stopped, its supervisor \/X[0-9a-f]{16} left the circuit/);
});
