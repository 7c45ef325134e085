// test-runner: heavy (a NATS cluster, supervision takeovers timed against failure detection)
// A service at /@ survives the death of the daemon that supervises it (DESIGN §3.7, §12): three
// replicas over three daemons; the supervising daemon is killed -9; another daemon takes the lease
// over, adopts the replicas still running (same PIDs) and starts the dead daemon's elsewhere; the
// count set by `scale` after the takeover survives a second one; scrub removes everything. A
// supervisor frozen past its lease steps down when it wakes; one stopped gracefully hands the
// service over. Driven with the CLI against one shared store circuit. Without --store, mksvc
// /@/… is Unsupported.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceStat } from "../src/index.ts";
import { assertFails } from "./helpers/cli.ts";
import { type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { type StoreCircuit, startStoreCircuit } from "./helpers/store.ts";
import { alive } from "./helpers/streams.ts";

after(killAll);

let sc: StoreCircuit;
before(async () => {
  sc = await startStoreCircuit(3);
});
after(() => sc?.stop());

const isLive = (d: Daemon) => d.proc.exitCode === null && d.proc.signalCode === null;
const cli = (d: Daemon, ...args: string[]) => runCli(["-d", d.url, ...args]);

async function peek(d: Daemon, path: string): Promise<ServiceStat> {
  const r = await cli(d, "peek", path);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as ServiceStat;
}

async function pidOf(d: Daemon, path: string): Promise<number> {
  const r = await cli(d, "peek", path);
  assert.equal(r.code, 0, `peek ${path}: ${r.stderr}`);
  return (JSON.parse(r.stdout.toString()) as { pid: number }).pid;
}

async function until(
  d: Daemon,
  path: string,
  what: string,
  ok: (s: ServiceStat) => boolean,
  ms: number,
): Promise<ServiceStat> {
  const t0 = Date.now();
  let last: ServiceStat | string = "";
  for (;;) {
    const r = await cli(d, "peek", path);
    if (r.code === 0) {
      last = JSON.parse(r.stdout.toString()) as ServiceStat;
      if (ok(last)) return last;
    } else last = r.stderr;
    assert.ok(Date.now() - t0 < ms, `${what} within ${ms} ms; last: ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

const running = (s: ServiceStat) => s.replicas.filter((r) => r.phase === "running");

test("kill -9 of the supervisor: another daemon adopts the replicas, restarts the dead one's, scale and scrub work", async () => {
  const [a] = sc.daemons as [Daemon];
  const svc = "/@/web";
  try {
    const mk = await cli(a, "mksvc", svc, "--replicas", "3", "--backoff-ms", "100", "--", "sleep", "300");
    assert.equal(mk.code, 0, mk.stderr);
    let s = await until(a, svc, "3 running", (x) => running(x).length === 3, 15_000);
    // One on each server, at /SERVER/@/web/r<n>, not tied to the supervisor.
    assert.deepEqual(new Set(s.replicas.map((r) => r.server)), new Set(sc.daemons.map((d) => `/${d.id}`)));
    for (const r of s.replicas) assert.match(r.path, new RegExp(`^${r.server}/@/web/r[123]$`));
    const boss = sc.daemons.find((d) => d.id === s.supervisor);
    assert.ok(boss, `the supervisor ${s.supervisor} is one of ours`);
    // peek from every daemon names the same supervisor.
    for (const d of sc.daemons) assert.equal((await peek(d, svc)).supervisor, boss.id);
    const pids = new Map<string, number>();
    for (const r of s.replicas) pids.set(r.path, await pidOf(a, r.path));
    const ls = await cli(a, "ls", "-l", "/@");
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout.toString(), /\/@\/web\s+svc\s+desired=3/);

    const others = sc.daemons.filter((d) => d !== boss);
    const t0 = Date.now();
    boss.kill("SIGKILL");
    const asker = others[0] as Daemon;
    s = await until(asker, svc, "a new supervisor", (x) => x.supervisor !== boss.id, 15_000);
    const takeoverMs = Date.now() - t0;
    assert.ok(
      others.some((d) => d.id === s.supervisor),
      `supervised by a live daemon: ${s.supervisor}`,
    );
    s = await until(
      asker,
      svc,
      "3 running on the live daemons",
      (x) => running(x).length === 3 && x.replicas.every((r) => r.server !== `/${boss.id}`),
      15_000,
    );
    const restoredMs = Date.now() - t0;
    console.log(`# new supervisor after ${takeoverMs} ms, 3 replicas running again after ${restoredMs} ms`);
    if (process.env.SVCAT_DEBUG) for (const d of others) console.log(d.stderr());
    assert.ok(takeoverMs < 8_000, `takeover within the failure detection bound: ${takeoverMs} ms`);
    assert.equal(s.replicas.length, 3, "never more than 3 replicas");
    assert.equal(s.desired, 3);
    // The replicas on live daemons ran on: same processes.
    for (const [path, pid] of pids) {
      if (path.startsWith(`/${boss.id}/`)) continue;
      const r = s.replicas.find((x) => x.path === path);
      assert.ok(r, `${path} is still a replica: ${JSON.stringify(s.replicas)}`);
      assert.equal(await pidOf(asker, path), pid, `${path} kept its process`);
      assert.ok(alive(pid));
    }
    // The dead daemon's replica kept its slot number and counts a restart; the adopted ones none.
    const lostPath = [...pids.keys()].find((p) => p.startsWith(`/${boss.id}/`)) as string;
    const moved = s.replicas.find((r) => r.path.endsWith(lostPath.slice(lostPath.lastIndexOf("/"))));
    assert.ok(moved && moved.restarts >= 1, `the moved replica counts a restart: ${JSON.stringify(moved)}`);
    for (const r of s.replicas) if (r !== moved) assert.equal(r.restarts, 0, `${r.path} was adopted as it ran`);
    // Every replica is a real process on a live server; the same answer from every live daemon.
    for (const r of s.replicas) assert.ok(alive(await pidOf(asker, r.path)), `${r.path} runs`);
    for (const d of others) assert.equal((await peek(d, svc)).supervisor, s.supervisor);

    // scale after the takeover, asked through the daemon that is not the supervisor.
    const notBoss = others.find((d) => d.id !== s.supervisor) as Daemon;
    const sc1 = await cli(notBoss, "scale", svc, "2");
    assert.equal(sc1.code, 0, sc1.stderr);
    s = await until(notBoss, svc, "2 replicas", (x) => x.replicas.length === 2 && running(x).length === 2, 10_000);
    assert.equal(s.desired, 2);
    const ls2 = await cli(notBoss, "ls", "-l", "/@");
    assert.match(ls2.stdout.toString(), /\/@\/web\s+svc\s+desired=2/, "the desired count is kept in the store");
    // A second takeover starts from the count scaled to: kill -9 this supervisor too.
    const second = others.find((d) => d.id === s.supervisor) as Daemon;
    second.kill("SIGKILL");
    s = await until(
      notBoss,
      svc,
      "the last daemon supervises 2 replicas",
      (x) => x.supervisor === notBoss.id && running(x).length === 2 && x.replicas.length === 2,
      15_000,
    );
    assert.equal(s.desired, 2, "scale survived the takeover");

    // scrub: every replica stops, the service leaves /@.
    const last = [];
    for (const r of s.replicas) last.push(await pidOf(notBoss, r.path));
    const scrub = await cli(notBoss, "scrub", svc);
    assert.equal(scrub.code, 0, scrub.stderr);
    assertFails(await cli(notBoss, "peek", svc), 1, "NotFound");
    for (const pid of last) assert.equal(alive(pid), false, `replica process ${pid} stopped`);
    const ls3 = await cli(notBoss, "ls", "/@");
    assert.doesNotMatch(ls3.stdout.toString(), /web/);
    // Three daemons again for the next test.
    for (let i = 0; i < 2; i++) await sc.add(sc.daemons.filter(isLive).flatMap((d) => ["--join", d.url]));
  } catch (err) {
    for (const d of sc.daemons) console.log(`# ${d.id}:\n${d.stderr().split("\n").slice(-40).join("\n")}`);
    throw err;
  }
});

/** Replica numbers running under /SERVER/@/PATH on every live daemon, by number: where each runs. */
async function slots(asker: Daemon, names: string): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const d of sc.daemons) {
    if (!isLive(d)) continue;
    const r = await runCli(["-d", asker.url, "--json", "ls", "-l", `/${d.id}/@/${names}`]);
    if (r.code !== 0) continue;
    for (const e of JSON.parse(r.stdout.toString()) as { path: string; kind?: string; stat?: { phase?: string } }[]) {
      const m = /\/r(\d+)$/.exec(e.path);
      if (!m || e.kind !== "proc" || e.stat?.phase !== "running") continue;
      out.set(Number(m[1]), [...(out.get(Number(m[1])) ?? []), d.id]);
    }
  }
  return out;
}

test("a supervisor frozen past its lease steps down when it wakes; no slot runs twice for long", async () => {
  const svc = "/@/api";
  const a = sc.daemons.find(isLive) as Daemon;
  let boss: Daemon | undefined;
  try {
    const mk = await cli(a, "mksvc", svc, "--replicas", "3", "--backoff-ms", "100", "--", "sleep", "300");
    assert.equal(mk.code, 0, mk.stderr);
    let s = await until(a, svc, "3 running", (x) => running(x).length === 3, 15_000);
    boss = sc.daemons.find((d) => d.id === s.supervisor) as Daemon;
    const asker = sc.daemons.find((d) => d !== boss && isLive(d)) as Daemon;
    boss.kill("SIGSTOP");
    const frozenAt = Date.now();
    // Measured from the daemons' own log: a peek meanwhile may wait on the frozen daemon's socket.
    const took = /"time":"([^"]+)","event":"svc-(?:hosting|takeover)","path":"\/@\/api"/g;
    let tookAt = 0;
    while (tookAt === 0) {
      for (const d of sc.daemons) {
        if (d === boss || !isLive(d)) continue;
        for (const m of d.stderr().matchAll(took)) {
          if (Date.parse(m[1] as string) > frozenAt) tookAt = Date.parse(m[1] as string);
        }
      }
      assert.ok(Date.now() - frozenAt < 15_000, "another daemon supervises /@/api");
      await sleep(100);
    }
    console.log(`# supervisor frozen (SIGSTOP): another daemon supervises after ${tookAt - frozenAt} ms`);
    s = await until(
      asker,
      svc,
      "another supervisor, 3 running off the frozen daemon",
      (x) =>
        x.supervisor !== boss?.id && running(x).length === 3 && x.replicas.every((r) => r.server !== `/${boss?.id}`),
      20_000,
    );
    const next = s.supervisor;
    boss.kill("SIGCONT");
    // The woken daemon notices its lease is gone and stops supervising, stopping nothing.
    const t0 = Date.now();
    while (!boss.stderr().includes("no longer supervising /@/api")) {
      assert.ok(Date.now() - t0 < 10_000, "the woken supervisor steps down");
      await sleep(100);
    }
    // Whatever ran on the woken daemon (it may come back to the circuit with its old replicas):
    // within a few seconds every slot runs exactly once, and the supervisor has not changed.
    const t1 = Date.now();
    for (;;) {
      const m = await slots(asker, "api");
      const st = await peek(asker, svc);
      const once = [...m.values()].every((where) => where.length === 1);
      if (once && m.size === 3 && running(st).length === 3) {
        assert.equal(st.supervisor, next);
        break;
      }
      assert.ok(Date.now() - t1 < 15_000, `each slot once: ${JSON.stringify([...m])}, ${JSON.stringify(st.replicas)}`);
      await sleep(200);
    }
    if (process.env.SVCAT_DEBUG) for (const d of sc.daemons) console.log(`# ${d.id}\n${d.stderr()}`);
    assert.equal((await cli(asker, "scrub", svc)).code, 0);
  } catch (err) {
    for (const d of sc.daemons) console.log(`# ${d.id}:\n${d.stderr().split("\n").slice(-40).join("\n")}`);
    throw err;
  } finally {
    boss?.kill("SIGCONT");
  }
});

test("a supervisor stopped gracefully hands the service over: its replicas elsewhere run on", async () => {
  const svc = "/@/calm";
  const a = sc.daemons.find(isLive) as Daemon;
  const mk = await cli(a, "mksvc", svc, "--replicas", "2", "--", "sleep", "300");
  assert.equal(mk.code, 0, mk.stderr);
  let s = await until(a, svc, "2 running", (x) => running(x).length === 2, 15_000);
  const boss = sc.daemons.find((d) => d.id === s.supervisor) as Daemon;
  const asker = sc.daemons.find((d) => d !== boss && isLive(d)) as Daemon;
  const pids = new Map<string, number>();
  for (const r of s.replicas) if (r.server !== `/${boss.id}`) pids.set(r.path, await pidOf(asker, r.path));
  await boss.stop();
  assert.match(boss.stderr(), /stopping/);
  s = await until(
    asker,
    svc,
    "2 running under another supervisor",
    (x) => x.supervisor !== boss.id && running(x).length === 2 && x.replicas.every((r) => r.server !== `/${boss.id}`),
    10_000,
  );
  for (const [path, pid] of pids) assert.equal(await pidOf(asker, path), pid, `${path} kept its process`);
  assert.equal((await cli(asker, "scrub", svc)).code, 0);
});

test("without --store, mksvc /@/… fails with Unsupported", async () => {
  const d = await startDaemon();
  try {
    const r = await cli(d, "mksvc", "/@/web", "--replicas", "2", "--", "sleep", "300");
    assertFails(r, 1, "Unsupported");
    assert.match(r.stderr, /--store/);
  } finally {
    await d.stop();
  }
});
