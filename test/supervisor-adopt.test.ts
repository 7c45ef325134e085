// Adoption by a supervisor that takes a service over (src/element/supervisor.ts `adopt`), under
// fast-check: whatever replicas it finds running (any numbers, copies of one slot from two earlier
// supervisors, more than it wants), it keeps each slot once, never more than it wants, starts only
// the missing ones, and later finds (a scan while it runs) are refused for slots already running.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { Supervisor } from "../src/element/supervisor.ts";

const params = (replicas: number) => ({
  replicas,
  min: 0,
  max: 10,
  restart: "always" as const,
  backoffMs: 100,
  maxBackoffMs: 1000,
  maxRestarts: 5,
  withinMs: 60_000,
  cooldownMs: 1000,
});

test("a new supervisor adopts each found slot once, within desired, and starts only the missing ones", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 6 }),
      fc.array(fc.record({ n: fc.integer({ min: 1, max: 8 }), server: fc.constantFrom("XA", "XB", "XC") }), {
        maxLength: 12,
      }),
      fc.array(fc.record({ n: fc.integer({ min: 1, max: 8 }), server: fc.constantFrom("XA", "XB", "XC") }), {
        maxLength: 4,
      }),
      (desired, found, later) => {
        const sup = new Supervisor(params(desired));
        const kept = new Map<number, string>();
        for (const f of found) {
          const ok = sup.adopt(f.n, f.server, 0);
          // Accepted exactly when its slot is free and the service wants one more.
          assert.equal(ok, !kept.has(f.n) && kept.size < desired, `adopt r${f.n} on ${f.server}`);
          if (ok) kept.set(f.n, f.server);
        }
        const starts = sup.tick(0);
        assert.ok(
          starts.every((a) => a.do === "start" && !kept.has(a.n)),
          "no adopted slot is started again",
        );
        assert.equal(starts.length, desired - kept.size, "only the missing replicas start");
        for (const [n, server] of kept) {
          assert.equal(sup.slot(n)?.phase, "running");
          assert.equal(sup.slot(n)?.server, server);
        }
        for (const a of starts) if (a.do === "start") sup.started(a.n, "XA", 1);
        assert.equal(sup.running(), desired);
        // Scans while it runs: every slot is taken, so every find is refused (the caller stops it).
        for (const f of later) assert.equal(sup.adopt(f.n, f.server, 2), false);
        assert.equal(sup.running(), desired);
      },
    ),
    { numRuns: 300 },
  );
});

test("a slot waiting to start again (backoff) takes the replica found running instead", () => {
  const sup = new Supervisor(params(1));
  const [a] = sup.tick(0);
  assert.deepEqual(a, { do: "start", n: 1 });
  sup.started(1, "XA", 0);
  sup.exited(1, 10, 1, null);
  assert.equal(sup.slot(1)?.phase, "backoff");
  assert.equal(sup.adopt(1, "XB", 20), true);
  assert.equal(sup.slot(1)?.phase, "running");
  assert.deepEqual(sup.tick(1000), [], "nothing to start: r1 runs on XB");
  // A stopped service adopts nothing.
  sup.stop(1001, "scrubbed");
  assert.equal(sup.adopt(2, "XC", 1002), false);
});

test("a slot the predecessor ran but nobody found running starts again, counted as lost", () => {
  const sup = new Supervisor(params(3));
  assert.equal(sup.adopt(1, "XA", 0, 2), true);
  assert.equal(sup.slot(1)?.restarts, 2, "an adopted replica keeps its restarts");
  sup.missing(3, 4, 0);
  sup.missing(1, 0, 0); // taken: nothing
  assert.equal(sup.slot(3)?.restarts, 5);
  assert.equal(sup.slot(3)?.phase, "pending");
  assert.ok(sup.drainEvents().some((e) => e.kind === "lost" && e.message.startsWith("r3 lost")));
  const starts = sup.tick(1);
  assert.deepEqual(
    starts.map((a) => a.n),
    [2, 3],
    "r3 again, and one new replica to make three",
  );
  // More missing slots than wanted: only up to the count wanted.
  sup.missing(7, 0, 2);
  assert.equal(sup.slot(7), undefined);
});
