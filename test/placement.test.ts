// Placement by load (DESIGN.md §3.7): servers gossip their load with membership, and
// client.place / mkproc --place choose the live server with the most free capacity that fits.
// Two daemons share this host, so what tells them apart is what their own processes use.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dial, NoCapacity } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { killAll, runCli } from "./helpers/daemon.ts";

after(killAll);

test("place picks the idle server over one running CPU burners; mkproc --place starts there", async (t) => {
  const [a, b] = await circuit(2);
  const c = await dial(a!.url);
  t.after(() => c.close());
  // Two busy loops on A, in A's own process table.
  for (const i of [1, 2]) {
    await c.walk(`/${a!.id}/burn/b${i}`).makeProc({ path: "sh", args: ["-c", "while :; do :; done"] });
  }
  // Wait until B has heard (by gossip, not by asking A) that A's processes burn CPU.
  const cb = await dial(b!.url);
  t.after(() => cb.close());
  const t0 = Date.now();
  for (;;) {
    const seen = (await cb.servers()).find((s) => s.id === a!.id)?.load;
    if (seen && seen.procs === 2 && seen.ownCpu > 0.5) break;
    assert.ok(Date.now() - t0 < 10_000, `B never saw A's load: ${JSON.stringify(seen)}`);
    await sleep(200);
  }
  // Both the busy server's own view and the idle one's choose the idle server. (Each answer
  // counts against the chosen server for a moment, so asking in a loop would spread by design.)
  assert.equal(await c.place(), `/${b!.id}`);
  assert.equal(await cb.place(), `/${b!.id}`);
  const r = await runCli(["-d", a!.url, "mkproc", "--place", "web/w1", "--", "sleep", "30"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), `/${b!.id}/web/w1\n`);
  const peek = await runCli(["-d", a!.url, "peek", `/${b!.id}/web/w1`]);
  assert.equal(JSON.parse(peek.stdout.toString()).phase, "running");
  // A request that fits nowhere is refused, not placed anyway.
  await assert.rejects(c.place({ memoryBytes: 2 ** 50 }), NoCapacity);
  await assert.rejects(c.place({ cpus: 4096 }), NoCapacity);
  await assert.rejects(c.place({ cpus: -1 }), RangeError);
  const bad = await runCli(["-d", a!.url, "mkproc", "--place", "/abs", "--", "true"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--place takes a path relative/);
});
