// test-runner: heavy (backoff timing)
// Supervision of a service (DESIGN.md §3.7): a crashing command is started again after delays that
// double, and past the restart intensity the service stops and says why; the restart policy
// decides what an exit means. Real processes on a real daemon, through the library.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Daemon, dial, type Service, type ServiceStat, Unsupported } from "../src/index.ts";
import { killAll, startDaemon } from "./helpers/daemon.ts";

after(killAll);
const dir = mkdtempSync(join(tmpdir(), "svc-restart-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function until(svc: Service, ok: (s: ServiceStat) => boolean, ms: number): Promise<ServiceStat> {
  const t0 = Date.now();
  for (;;) {
    const s = await svc.peek();
    if (ok(s)) return s;
    assert.ok(Date.now() - t0 < ms, `condition not met within ${ms} ms: ${JSON.stringify(s)}`);
    await sleep(50);
  }
}

test("a crashing command restarts with doubling backoff, then stops at the intensity limit", async (t) => {
  const d = await startDaemon();
  const c = await dial(d.url);
  t.after(() => c.close());
  const log = join(dir, "starts");
  const svc = await c.walk(`/${d.id}/svc/crash`).makeService({
    cmd: { path: "sh", args: ["-c", `date +%s%N >> ${log}; exit 3`] },
    replicas: 1,
    restart: "always",
    backoffMs: 200,
    maxBackoffMs: 5000,
    maxRestarts: 4,
    withinMs: 30_000,
  });
  const s = await until(svc, (x) => x.state === "stopped", 20_000);
  assert.match(s.lastEvent!.message, /5 restarts within 30000 ms exceed maxRestarts 4; service stopped/);
  assert.match(s.lastEvent!.message, /exited with 3/);
  assert.equal(s.lastEvent!.kind, "stop");
  assert.equal(s.replicas.length, 1);
  assert.equal(s.replicas[0]!.phase, "exited");
  assert.equal(s.replicas[0]!.restarts, 4);
  // Started once, then 4 restarts; no more once stopped.
  await sleep(500);
  const starts = readFileSync(log, "utf8")
    .trim()
    .split("\n")
    .map((l) => Number(BigInt(l) / 1_000_000n));
  assert.equal(starts.length, 5, `starts: ${starts}`);
  const gaps = starts.slice(1).map((x, i) => x - (starts[i] as number));
  console.log(`# gaps between starts (ms): ${gaps.join(", ")}`);
  [200, 400, 800, 1600].forEach((want, i) => {
    assert.ok((gaps[i] as number) >= want - 20, `gap ${i} is ${gaps[i]} ms, backoff ${want}`);
  });
  assert.ok((gaps[3] as number) > (gaps[0] as number) * 3, "the backoff grows");
  await svc.scrub();
});

test("on-failure leaves a clean exit alone; never restarts nothing", async (t) => {
  const d = await startDaemon();
  const c = await dial(d.url);
  t.after(() => c.close());
  const ok = await c.walk(`/${d.id}/svc/ok`).makeService({
    cmd: { path: "sh", args: ["-c", "sleep 0.2; exit 0"] },
    replicas: 2,
    restart: "on-failure",
    backoffMs: 50,
  });
  const never = await c.walk(`/${d.id}/svc/never`).makeService({
    cmd: { path: "sh", args: ["-c", "exit 1"] },
    restart: "never",
  });
  const s1 = await until(ok, (x) => x.replicas.length === 2 && x.replicas.every((r) => r.phase === "exited"), 10_000);
  const s2 = await until(never, (x) => x.replicas[0]?.phase === "exited", 10_000);
  await sleep(400);
  for (const s of [s1, s2, await ok.peek(), await never.peek()]) {
    assert.equal(s.state, "running");
    for (const r of s.replicas) assert.equal(r.restarts, 0);
  }
  assert.match((await never.peek()).lastEvent!.message, /exited with 1; restart never/);
  // Bad specs are refused before any I/O.
  await assert.rejects(
    c.walk(`/${d.id}/svc/x`).makeService({ cmd: { path: "true" }, restart: "sometimes" as never }),
    TypeError,
  );
  await assert.rejects(c.walk(`/${d.id}/svc/x`).makeService({ cmd: { path: "true" }, min: 3, max: 2 }), RangeError);
  await ok.scrub();
  await never.scrub();
});

test("a daemon started without a client connection refuses services with Unsupported", async (t) => {
  const d = await Daemon.start({ addr: "127.0.0.1:0", log: () => {} });
  t.after(() => d.stop());
  const c = await dial(d.url);
  t.after(() => c.close());
  await assert.rejects(
    c.walk(`/${d.id}/svc/x`).makeService({ cmd: { path: "true" } }),
    (err: Error) => err instanceof Unsupported && /without a client connection/.test(err.message),
  );
  assert.equal(await c.walk(`/${d.id}/svc/x`).get(), null, "nothing was made");
});
