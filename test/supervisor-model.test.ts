// The service supervision and scaling core (src/element/supervisor.ts) against a reference model
// under fast-check: random exits (clean and failed), lost servers, failed starts, scaling by hand,
// autoscale readings and the passing of time. The model says, independently and in the plainest
// terms, when each replica must start again (doubling backoff, reset after a healthy run), when
// the service must stop (restart intensity), and what the autoscaler may decide; the core must
// agree at every step.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { type RestartPolicy, Supervisor } from "../src/element/supervisor.ts";

type Cmd =
  | { t: "wait"; ms: number }
  | { t: "exit"; i: number; code: number }
  | { t: "lost"; i: number }
  | { t: "failStart" }
  | { t: "scale"; n: number }
  | { t: "metric"; v: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("exit" as const),
      i: fc.nat(7),
      code: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("lost" as const), i: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("failStart" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("scale" as const), n: fc.nat(8) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("metric" as const), v: fc.nat(100) }) },
);

interface ModelSlot {
  streak: number;
  startedAt: number;
  due: number | undefined;
  running: boolean;
}

function run(
  policy: RestartPolicy,
  p: { backoffMs: number; maxBackoffMs: number; maxRestarts: number; withinMs: number; cooldownMs: number },
  auto: boolean,
  cmds: Cmd[],
): void {
  const params = {
    replicas: 2,
    min: 1,
    max: 6,
    restart: policy,
    ...p,
    autoscale: auto ? { perReplica: 10 } : undefined,
  };
  const sup = new Supervisor(params);
  let now = 0;
  const model = new Map<number, ModelSlot>();
  let restarts: number[] = [];
  let stopped = false;
  let failNext = false;
  const recs: { at: number; n: number }[] = [];
  let lastChange = Number.NEGATIVE_INFINITY;
  let desired = params.replicas;

  // The driver feeds results back and ticks again until nothing more is decided (it starts
  // asynchronously, so a decision may meet a state that changed meanwhile, as here).
  const tick = () => {
    for (let round = 0; round < 10; round++) {
      const acts = sup.tick(now);
      if (acts.length === 0) break;
      apply(acts);
    }
    // Slots the core dropped (surplus ones) start afresh if they come back.
    const have = new Set(sup.replicas().map((s) => s.n));
    for (const n of model.keys()) if (!have.has(n)) model.delete(n);
  };
  const apply = (acts: ReturnType<Supervisor["tick"]>) => {
    for (const a of acts) {
      if (a.do === "stop") {
        model.delete(a.n);
        sup.stopped(a.n);
        continue;
      }
      const m = model.get(a.n);
      if (m?.due !== undefined) assert.ok(now >= m.due, `r${a.n} started at ${now}, before its due ${m.due}`);
      if (failNext) {
        failNext = false;
        sup.startFailed(a.n, now, "test");
        crash(a.n, { streak: m?.streak ?? 0, startedAt: now, due: undefined, running: false }, true);
        continue;
      }
      sup.started(a.n, "S", now);
      model.set(a.n, { streak: m?.streak ?? 0, startedAt: now, due: undefined, running: true });
    }
  };
  // The model's rule for a crash (or an exit the policy restarts).
  const crash = (n: number, m: ModelSlot, failed: boolean) => {
    if (now - m.startedAt >= p.maxBackoffMs || !failed) m.streak = 0;
    restarts = [...restarts, now].filter((t) => t > now - p.withinMs);
    if (restarts.length > p.maxRestarts) {
      stopped = true;
      model.delete(n);
      return;
    }
    m.due = now + Math.min(p.backoffMs * 2 ** m.streak, p.maxBackoffMs);
    m.streak++;
    m.running = false;
    model.set(n, m);
  };

  tick();
  for (const c of cmds) {
    const slots = sup.replicas().filter((s) => s.phase === "running");
    switch (c.t) {
      case "wait":
        now += c.ms;
        break;
      case "exit": {
        const s = slots[c.i % Math.max(1, slots.length)];
        if (!s) break;
        const m = model.get(s.n) as ModelSlot;
        sup.exited(s.n, now, c.code, null);
        const again = policy === "always" || (policy === "on-failure" && c.code !== 0);
        if (again) crash(s.n, m, c.code !== 0);
        else model.set(s.n, { ...m, running: false, due: Number.POSITIVE_INFINITY });
        break;
      }
      case "lost": {
        const s = slots[c.i % Math.max(1, slots.length)];
        if (!s) break;
        sup.lost(s.n, now, "test");
        const m = model.get(s.n) as ModelSlot;
        model.set(s.n, { ...m, running: false, due: now });
        break;
      }
      case "failStart":
        failNext = true;
        break;
      case "scale":
        sup.scale(c.n, now);
        if (!stopped) {
          desired = Math.min(6, Math.max(1, c.n));
          lastChange = now;
        }
        break;
      case "metric": {
        const before = sup.desired;
        sup.metric(c.v, now);
        if (!auto || stopped) {
          assert.equal(sup.desired, before);
          break;
        }
        const rec = Math.min(6, Math.max(1, Math.ceil(c.v / 10)));
        recs.push({ at: now, n: rec });
        while (recs.length > 0 && (recs[0] as { at: number }).at < now - p.cooldownMs) recs.shift();
        if (rec > desired) {
          desired = rec;
          lastChange = now;
        } else {
          const target = Math.max(...recs.map((r) => r.n));
          if (target < desired && now - lastChange >= p.cooldownMs) {
            desired = target;
            lastChange = now;
          }
        }
        break;
      }
    }
    tick();
    // The core agrees with the model.
    assert.equal(sup.state, stopped ? "stopped" : "running", "stopped exactly at the intensity limit");
    if (stopped) {
      assert.equal(sup.running(), 0, "a stopped service runs nothing");
      assert.match(sup.lastEvent?.message ?? "", /exceed maxRestarts/);
      continue;
    }
    assert.equal(sup.desired, desired, "desired count");
    const active = sup.replicas().filter((s) => s.phase !== "stopping");
    assert.equal(active.length, desired, "one slot per desired replica");
    for (const s of active) {
      const m = model.get(s.n);
      if (!m) {
        assert.equal(s.phase, "running", `new r${s.n} runs`);
        continue;
      }
      if (m.running) assert.equal(s.phase, "running", `r${s.n} runs`);
      else if (m.due === Number.POSITIVE_INFINITY) assert.equal(s.phase, "exited", `r${s.n} stays exited`);
      else if (m.due !== undefined && now < m.due) {
        assert.equal(s.phase, "backoff", `r${s.n} waits until ${m.due} (now ${now})`);
        assert.equal(s.due, m.due, `r${s.n}'s backoff`);
      } else assert.equal(s.phase, "running", `r${s.n} was due at ${m.due}, now ${now}`);
    }
  }
}

const params = fc.record({
  backoffMs: fc.integer({ min: 1, max: 500 }),
  maxBackoffMs: fc.integer({ min: 500, max: 4000 }),
  maxRestarts: fc.integer({ min: 0, max: 12 }),
  withinMs: fc.integer({ min: 100, max: 20_000 }),
  cooldownMs: fc.integer({ min: 0, max: 5000 }),
});

describe("supervisor core against its model", () => {
  for (const policy of ["always", "on-failure", "never"] as const) {
    test(`restart ${policy}: backoff, intensity and scaling decisions`, () => {
      fc.assert(
        fc.property(params, fc.boolean(), fc.array(cmdArb, { maxLength: 80 }), (p, auto, cmds) =>
          run(policy, p, auto, cmds),
        ),
        { numRuns: 300 },
      );
    });
  }

  test("CPU autoscaling: desired = ceil(running × average / target), up at once, down after the cool-down", () => {
    const sup = new Supervisor({
      replicas: 1,
      min: 1,
      max: 5,
      restart: "always",
      backoffMs: 100,
      maxBackoffMs: 1000,
      maxRestarts: 5,
      withinMs: 1000,
      cooldownMs: 1000,
      autoscale: { cpuPercent: 50 },
    });
    const settle = (now: number) => {
      for (const a of sup.tick(now)) {
        if (a.do === "start") sup.started(a.n, "S", now);
        else sup.stopped(a.n);
      }
    };
    settle(0);
    sup.metric(95, 10, 1); // one replica at 95 % → 2
    settle(10);
    assert.equal(sup.desired, 2);
    assert.equal(sup.running(), 2);
    sup.metric(90, 20, 2); // two at 90 % → ceil(3.6) = 4
    settle(20);
    assert.equal(sup.desired, 4);
    assert.match(sup.lastEvent!.message, /average CPU 90% over 2 replicas, target 50%/);
    sup.metric(10, 500, 4); // idle, but within the cool-down of the last change
    assert.equal(sup.desired, 4);
    sup.metric(10, 1100, 4); // the window [100, 1100] asked for 1 only, and the last change was 1080 ms ago
    assert.equal(sup.desired, 1);
    sup.metric(1000, 1200, 0); // no replica running: no reading
    assert.equal(sup.desired, 1);
  });

  test("a crash loop's delays double up to the cap, and a healthy run resets them", () => {
    const sup = new Supervisor({
      replicas: 1,
      min: 0,
      max: 1,
      restart: "always",
      backoffMs: 100,
      maxBackoffMs: 1000,
      maxRestarts: 100,
      withinMs: 1000,
      cooldownMs: 0,
    });
    let now = 0;
    const delays: number[] = [];
    sup.tick(now);
    sup.started(1, "S", now);
    for (let i = 0; i < 6; i++) {
      sup.exited(1, now, 1, null);
      const due = sup.slot(1)!.due;
      delays.push(due - now);
      now = due;
      assert.deepEqual(sup.tick(now), [{ do: "start", n: 1 }]);
      sup.started(1, "S", now);
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
    now += 1000; // ran a whole maxBackoffMs
    sup.exited(1, now, 1, null);
    assert.equal(sup.slot(1)!.due - now, 100);
  });
});
