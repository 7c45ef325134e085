// test-runner: heavy (autoscale timing)
// Autoscaling a service (DESIGN.md §3.7) on a channel's backlog: up at once when the backlog
// grows, not down while the backlog keeps coming back within the cool-down (no flapping), down to
// min once it has stayed low for a whole cool-down; and on the replicas' average CPU. Real
// replicas on real daemons (the CPU test needs cgroups, as the limits tests do).
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dial } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { killAll, startDaemon } from "./helpers/daemon.ts";
import { removeCgroupsOf } from "./helpers/procs.ts";

const ids = new Set<string>();
after(async () => {
  await killAll();
  removeCgroupsOf(ids);
});

test("a service follows a channel's backlog up and down without flapping", async (t) => {
  const [a, b] = await circuit(2);
  const c = await dial(a!.url);
  t.after(() => c.close());
  const jobs = await c.walk(`/${b!.id}/jobs`).makeChan<number>(1000);
  const cooldownMs = 2500;
  const svc = await c.walk(`/${a!.id}/svc/workers`).makeService({
    cmd: { path: "sleep", args: ["300"] },
    min: 1,
    max: 4,
    autoscale: { chan: jobs.path, perReplica: 20 },
    cooldownMs,
    intervalMs: 100,
  });
  const history: { at: number; desired: number; running: number }[] = [];
  let watching = true;
  const t0 = Date.now();
  const watcher = (async () => {
    while (watching) {
      const s = await svc.peek();
      const running = s.replicas.filter((r) => r.phase === "running").length;
      const last = history.at(-1);
      if (!last || last.desired !== s.desired || last.running !== running)
        history.push({ at: Date.now() - t0, desired: s.desired, running });
      await sleep(50);
    }
  })();
  const waitFor = async (what: string, ok: () => boolean, ms: number) => {
    const from = Date.now();
    while (!ok()) {
      assert.ok(Date.now() - from < ms, `${what} within ${ms} ms; history ${JSON.stringify(history)}`);
      await sleep(50);
    }
    return Date.now() - from;
  };
  const now = () => history.at(-1)!;
  await waitFor("1 replica at first", () => history.length > 0 && now().running === 1, 5000);

  // A spike: 100 jobs → ceil(100 / 20) = 5, clamped to max 4.
  const spikeAt = Date.now();
  for (let i = 0; i < 100; i++) await jobs.send(i);
  const upMs = await waitFor("4 running after the spike", () => now().desired === 4 && now().running === 4, 5000);
  console.log(`# backlog spike → 4 replicas running after ${Date.now() - spikeAt} ms (${upMs} ms after the last send)`);

  // The backlog comes and goes faster than the cool-down: the service stays at 4.
  const steadyFrom = history.length;
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 100; i++) await jobs.recv();
    await sleep(400);
    for (let i = 0; i < 100; i++) await jobs.send(i);
    await sleep(200);
  }
  assert.ok(
    history.slice(steadyFrom).every((h) => h.desired === 4),
    `no scale-down while the backlog keeps coming back: ${JSON.stringify(history)}`,
  );

  // Drained for good: down to min 1, once, no sooner than a cool-down after the drain.
  for (let i = 0; i < 100; i++) await jobs.recv();
  const drainedAt = Date.now();
  await waitFor("back to 1 replica", () => now().desired === 1 && now().running === 1, cooldownMs + 5000);
  const downMs = Date.now() - drainedAt;
  assert.ok(downMs >= cooldownMs - 150, `scaled down ${downMs} ms after the drain, cool-down ${cooldownMs}`);
  await sleep(500);
  watching = false;
  await watcher;
  const desired = history.map((h) => h.desired).filter((d, i, xs) => i === 0 || xs[i - 1] !== d);
  // Up (in one step, or in steps while the spike was being sent), then only down: never up again.
  const top = desired.indexOf(4);
  assert.ok(top > 0 && desired.slice(0, top + 1).every((d, i, xs) => i === 0 || d > (xs[i - 1] as number)));
  const down = desired.slice(top);
  assert.ok(
    down.every((d, i) => i === 0 || d < (down[i - 1] as number)),
    `up, then only down: ${JSON.stringify(history)}`,
  );
  assert.equal(down.at(-1), 1);
  // Steps down (one, or a few if a reading caught the drain half-way) a whole cool-down apart.
  // (Only the steps down: the way up may itself have taken steps, 2 then 3 then 4, while the
  // spike was being sent, and those are not scale-downs.)
  const downs = history.filter((h, i) => i > 0 && h.desired < (history[i - 1] as { desired: number }).desired);
  for (let i = 1; i < downs.length; i++) {
    const gap = (downs[i] as { at: number }).at - (downs[i - 1] as { at: number }).at;
    assert.ok(gap >= cooldownMs - 150, `scale-downs ${gap} ms apart: ${JSON.stringify(history)}`);
  }
  const s = await svc.peek();
  assert.equal(s.lastEvent!.kind, "scale");
  assert.match(s.lastEvent!.message, /scaled down from [2-4] to 1: backlog 0 \/ 20 per replica/);
  await svc.scrub();
});

test("a service follows its replicas' average CPU up to max", async (t) => {
  const d = await startDaemon();
  ids.add(d.id);
  const c = await dial(d.url);
  t.after(() => c.close());
  // Each replica is a busy loop held to 0.3 of a core by its cgroup: about 30 % each.
  const svc = await c.walk(`/${d.id}/svc/burn`).makeService({
    cmd: { path: "sh", args: ["-c", "while :; do :; done"], limits: { cpus: 0.3 } },
    min: 1,
    max: 3,
    autoscale: { cpuPercent: 20 },
    intervalMs: 250,
    cooldownMs: 60_000,
  });
  try {
    const t0 = Date.now();
    let s = await svc.peek();
    // 1 × 30 % / 20 % → 2; 2 × 30 % / 20 % → 3 = max.
    while (s.desired < 3 || s.replicas.filter((r) => r.phase === "running").length < 3) {
      assert.ok(Date.now() - t0 < 20_000, `not at 3 replicas within 20 s: ${JSON.stringify(s)}`);
      await sleep(200);
      s = await svc.peek();
    }
    assert.match(
      s.replicas.length === 3 ? s.lastEvent!.message : "",
      /scaled up from [12] to 3: average CPU \d+% over [12] replicas, target 20%/,
    );
    assert.equal(s.spec.cmd.limits?.cpus, 0.3);
  } finally {
    await svc.scrub();
  }
});
