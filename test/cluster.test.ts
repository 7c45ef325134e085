// test-runner: alone (failure-detection bounds, some of them under CPU burners it starts itself)
// Many servers, one circuit: real daemons on 127.0.0.1 join each other; kill -9, SIGSTOP, stop and
// restart them; views, subscriptions and blocked clients behave as DESIGN.md §6 says.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, type Client, dial, ServerGone, type Subscription } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { until } from "./helpers/wait.ts";

after(killAll);

/** Times the process's main thread has gone to sleep and been woken (voluntary context switches). */
function wakeups(pid: number): number {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(m, "no voluntary_ctxt_switches in /proc/PID/status");
  return Number(m[1]);
}

async function ids(c: Client): Promise<string[]> {
  return (await c.servers()).map((s) => s.id).sort();
}

async function converged(clients: Client[], expect: string[]): Promise<boolean> {
  const want = [...expect].sort().join();
  for (const c of clients) if ((await ids(c)).join() !== want) return false;
  return true;
}

/**
 * Starts n daemons joined into one circuit, dials the first `dialled` of them, waits until those
 * clients see all n servers, runs `fn`, and closes and stops everything whatever happens.
 */
async function withCircuit(
  n: number,
  dialled: number,
  fn: (ds: Daemon[], clients: Client[]) => Promise<void>,
): Promise<void> {
  const ds = await circuit(n);
  const clients: Client[] = [];
  try {
    for (const d of ds.slice(0, dialled)) clients.push(await dial(d.url));
    await until("converged", 5000, () =>
      converged(
        clients,
        ds.map((d) => d.id),
      ),
    );
    await fn(ds, clients);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(ds.map((d) => d.stop()));
  }
}

/** Reads a subscription until it yields `path` (or fails after ms). */
async function expectEvent(sub: Subscription, path: string, ms: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const left = ms - (Date.now() - t0);
    if (left <= 0) throw new Error(`no ${sub.kind} event for ${path} within ${ms} ms`);
    const got = await sub.recv({ signal: AbortSignal.timeout(left) });
    if (got === path) return Date.now() - t0;
  }
}

describe("a circuit of several servers", () => {
  test("servers that join each other all see every server, and anchors work across servers", async () => {
    await withCircuit(4, 4, async (ds, clients) => {
      const all = ds.map((d) => d.id);
      await until("every server sees every server", 5000, () => converged(clients, all));
      const ls = await runCli(["-d", ds[0]!.url, "ls", "/"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(ls.stdout.toString().trim().split("\n").sort(), all.map((id) => `/${id}`).sort());

      // A client dialled into server 0 creates a channel on server 3; one dialled into 1 receives.
      const path = `/${ds[3]!.id}/jobs/q`;
      const tx = await clients[0]!.walk(path).makeChan<string>(0);
      const rx = (await clients[1]!.walk(path).get()) as Chan<string>;
      const sent = tx.send("across");
      assert.equal(await rx.recv(), "across");
      await sent;
      const rec = await runCli(["-d", ds[2]!.url, "ls", "/..."]);
      assert.ok(rec.stdout.toString().includes(`${path}\n`), rec.stdout.toString());
      const peek = (await clients[0]!.walk(`/${ds[2]!.id}`).peek()) as { id: string; host: { cpus: number } };
      assert.equal(peek.id, ds[2]!.id);
      assert.ok(peek.host.cpus >= 1);
    });
  });

  test("a killed daemon is gone from every view, @leave fires and its waiters get ServerGone within 1 s", async () => {
    await withCircuit(3, 2, async (ds, clients) => {
      const leaves = await clients[0]!.walk(`/${ds[0]!.id}/watch/leave`).makeOnLeave();
      const victim = ds[2]!;
      const ch = await clients[1]!.walk(`/${victim.id}/q`).makeChan(0);
      const blocked = ch.recv();
      blocked.catch(() => {});
      await sleep(100);
      const t0 = Date.now();
      victim.kill("SIGKILL");
      await assert.rejects(blocked, ServerGone);
      const survivors = ds.slice(0, 2).map((d) => d.id);
      await until("survivors drop the dead server", 1000, () => converged(clients, survivors));
      await expectEvent(leaves, `/${victim.id}`, 1000);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
      await assert.rejects(clients[0]!.walk(`/${victim.id}/q`).get(), (e: { code?: string }) =>
        ["NotFound", "ServerGone"].includes(e.code ?? ""),
      );
    });
  });

  test("a stopped (SIGSTOP) daemon is declared dead within 5 s and rejoins once with SIGCONT", async () => {
    await withCircuit(3, 2, async (ds, clients) => {
      const victim = ds[2]!;
      const joins = await clients[0]!.walk(`/${ds[0]!.id}/watch/join`).makeOnJoin();
      for (let i = 0; i < 3; i++) await joins.recv(); // the three live servers
      const leaves = await clients[0]!.walk(`/${ds[0]!.id}/watch/leave`).makeOnLeave();
      const ch = await clients[1]!.walk(`/${victim.id}/q`).makeChan(0);
      const blocked = ch.recv();
      blocked.catch(() => {});
      await sleep(100);
      process.kill(victim.pid, "SIGSTOP");
      const took = await expectEvent(leaves, `/${victim.id}`, 6000);
      assert.ok(took <= 5500, `declared dead after ${took} ms`);
      await assert.rejects(blocked, ServerGone);
      await until("both survivors agree", 1000, () =>
        converged(
          clients,
          ds.slice(0, 2).map((d) => d.id),
        ),
      );
      process.kill(victim.pid, "SIGCONT");
      await expectEvent(joins, `/${victim.id}`, 5000);
      await until("view heals", 5000, () =>
        converged(
          clients,
          ds.map((d) => d.id),
        ),
      );
      await sleep(1500);
      assert.equal((await joins.peek()).pending, 0, "exactly one join, no flapping");
      assert.equal((await leaves.peek()).pending, 0, "no second leave");
    });
  });

  test("a member paused for 2 s, or starved of CPU, is not declared dead", async () => {
    await withCircuit(3, 3, async (ds, clients) => {
      const burners = [0, 1].map(() =>
        spawn(process.execPath, ["-e", "const t=Date.now()+8000; while (Date.now()<t) {}"], { stdio: "ignore" }),
      );
      try {
        const leaves = await clients[0]!.walk(`/${ds[0]!.id}/watch/leave`).makeOnLeave();
        process.kill(ds[1]!.pid, "SIGSTOP");
        await sleep(2000);
        process.kill(ds[1]!.pid, "SIGCONT");
        await sleep(6000); // the CPU burners run alongside all along
        assert.equal((await leaves.peek()).pending, 0, "no server was declared dead");
        assert.ok(
          await converged(
            clients,
            ds.map((d) => d.id),
          ),
        );
      } finally {
        for (const b of burners) b.kill("SIGKILL");
      }
    });
  });

  test("circuit stop /XID leaves gracefully: the others know at once", async () => {
    await withCircuit(3, 1, async (ds, [c]) => {
      const leaves = await c.walk(`/${ds[0]!.id}/leave`).makeOnLeave();
      const r = await runCli(["-d", ds[0]!.url, "stop", `/${ds[2]!.id}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await ds[2]!.exited).code, 0);
      await expectEvent(leaves, `/${ds[2]!.id}`, 1000);
    });
  });

  test("a server restarted with the same data dir keeps its ID and rejoins with one @join", async () => {
    const dir = mkdtempSync(join(tmpdir(), "circuit-data-"));
    const a = await startDaemon();
    let b = await startDaemon(["--join", a.url, "--data", dir]);
    const c = await dial(a.url);
    try {
      const id = b.id;
      await until("joined", 5000, async () => (await ids(c)).includes(id));
      const twin = await runCli(["start", "--addr", "127.0.0.1:0", "--data", dir], { timeoutMs: 5000 });
      assert.equal(twin.code, 1, "a second daemon on the same data dir refuses to start");
      assert.match(twin.stderr, /in use/);
      const joins = await c.walk(`/${a.id}/joins`).makeOnJoin();
      await joins.recv();
      await joins.recv();
      b.kill("SIGKILL");
      await until("gone", 2000, async () => !(await ids(c)).includes(id));
      b = await startDaemon(["--join", a.url, "--data", dir]);
      assert.equal(b.id, id);
      await expectEvent(joins, `/${id}`, 5000);
      await sleep(1000);
      assert.equal((await joins.peek()).pending, 0);
    } finally {
      await c.close();
      await Promise.all([a.stop(), b.stop()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a server on its own sleeps while idle, and once another joins it, a stopped joiner is declared dead", async () => {
    const a = await startDaemon();
    let b: Daemon | undefined;
    const c = await dial(a.url);
    try {
      await sleep(1000);
      const before = wakeups(a.pid);
      await sleep(3000);
      const woke = wakeups(a.pid) - before;
      // The membership's 20 ms tick alone was 150 wake-ups in 3 s; left: the load meter's samples.
      assert.ok(woke < 40, `a daemon on its own woke ${woke} times in 3 s`);
      b = await startDaemon(["--join", a.url]);
      const both = [a.id, b.id].sort().join();
      await until("a sees b", 5000, async () => (await ids(c)).join() === both);
      // Only probes, which need the ticks, notice a stopped server (its connections stay open).
      process.kill(b.pid, "SIGSTOP");
      await until("a declares the stopped b dead", 8000, async () => (await ids(c)).join() === a.id);
    } finally {
      if (b) process.kill(b.pid, "SIGCONT");
      await c.close();
      await Promise.all([a.stop(), b?.stop()]);
    }
  });

  test("a @join subscription starts with every live server; subscriptions are receive-only", async () => {
    await withCircuit(2, 1, async (ds, [c]) => {
      const joins = await c.walk(`/${ds[0]!.id}/j`).makeOnJoin();
      const got = [await joins.recv(), await joins.recv()].sort();
      assert.deepEqual(got, ds.map((d) => `/${d.id}`).sort());
      const st = await joins.peek();
      assert.deepEqual(st, { source: "@join", pending: 0, lost: 0 });
      const r = await runCli(["-d", ds[1]!.url, "mk@leave", `/${ds[1]!.id}/l`]);
      assert.equal(r.code, 0, r.stderr);
      const ls = await runCli(["-d", ds[1]!.url, "ls", "-l", `/${ds[1]!.id}`]);
      assert.match(ls.stdout.toString(), /@leave/);
      const send = await runCli(["-d", ds[0]!.url, "send", `/${ds[1]!.id}/l`], { input: "x" });
      assert.equal(send.code, 1);
      assert.match(send.stderr, /WrongKind/);
    });
  });
});
