// test-runner: heavy (kill -9 timing)
// No orphans (DESIGN.md §3.2): the processes a daemon started — every descendant, including ones
// that called setsid — are gone within 5 s of a `kill -9` of the daemon (its watchdog kills them),
// with cgroups and without; a daemon restarted on the same --data kills what its predecessor left
// when the watchdog died too; graceful stop, scrub and scrub --keep do what they say.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { dial, Proc } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import {
  cgroupOf,
  killPids,
  marker,
  ownerDirs,
  pidsMatching,
  pidsWithArg,
  removeCgroupsOf,
  within,
} from "./helpers/procs.ts";

const ids = new Set<string>();
const markers: string[] = [];
const dirs: string[] = [];

after(async () => {
  await killAll();
  // Whatever a failed test left: processes by marker, then the servers' cgroups and data dirs.
  for (const m of markers) killPids(pidsWithArg(m));
  removeCgroupsOf(ids);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function daemon(args: string[] = []): Promise<Daemon> {
  const d = await startDaemon(args);
  ids.add(d.id);
  return d;
}

/** Starts `sh -c 'sleep M & setsid sleep M & wait'` on `d`; resolves once both sleeps run. */
async function tree(d: Daemon, name: string): Promise<{ m: string; pid: number }> {
  const m = marker();
  markers.push(m);
  const c = await dial(d.url);
  try {
    const p = await c
      .walk(`/${d.id}/t/${name}`)
      .makeProc({ path: "sh", args: ["-c", `sleep ${m} & setsid sleep ${m} & wait`] });
    assert.ok(await within(5000, () => pidsWithArg(m).length === 2), "both sleeps started");
    return { m, pid: p.pid };
  } finally {
    await c.close();
  }
}

function watchdogOf(id: string): number[] {
  return pidsMatching("watchdog", id);
}

describe("no orphans after kill -9 of the daemon", () => {
  test("with cgroups: the whole tree, setsid included, is gone within 5 s, and so are its cgroups", async () => {
    const d = await daemon();
    const { m, pid } = await tree(d, "tree");
    assert.match(cgroupOf(pid, "freezer") ?? "", new RegExp(`^/circuit/${d.id}/\\d+$`));
    const setsid = pidsWithArg(m).find((p) => cgroupOf(p, "freezer") === cgroupOf(pid, "freezer"));
    assert.ok(setsid, "the setsid child is in the process's cgroup");
    assert.equal(watchdogOf(d.id).length, 1, "one watchdog");
    const t0 = Date.now();
    d.kill("SIGKILL");
    await d.exited;
    assert.ok(await within(5000, () => pidsWithArg(m).length === 0), `left running: ${pidsWithArg(m)}`);
    const took = Date.now() - t0;
    assert.ok(await within(3000, () => ownerDirs(d.id).length === 0), `cgroups left: ${ownerDirs(d.id)}`);
    assert.ok(await within(3000, () => watchdogOf(d.id).length === 0), "the watchdog exits");
    console.log(`# with cgroups: tree gone ${took} ms after kill -9`);
  });

  test("without cgroups (--no-cgroups): the process group and its setsid child are gone within 5 s", async () => {
    const d = await daemon(["--no-cgroups"]);
    const { m, pid } = await tree(d, "tree");
    assert.doesNotMatch(cgroupOf(pid, "freezer") ?? "", /\/circuit\//, "not in a cgroup of ours");
    const t0 = Date.now();
    d.kill("SIGKILL");
    await d.exited;
    assert.ok(await within(5000, () => pidsWithArg(m).length === 0), `left running: ${pidsWithArg(m)}`);
    console.log(`# without cgroups: tree gone ${Date.now() - t0} ms after kill -9`);
    assert.ok(await within(3000, () => watchdogOf(d.id).length === 0), "the watchdog exits");
  });
});

describe("a daemon restarted on the same --data", () => {
  test("kills what its predecessor left when the watchdog died too, before it serves", async () => {
    const data = mkdtempSync(join(tmpdir(), "circuit-orphans-"));
    dirs.push(data);
    const d1 = await daemon(["--data", data]);
    const { m } = await tree(d1, "tree");
    const [wd] = watchdogOf(d1.id);
    assert.ok(wd, "a watchdog runs");
    // Stopped, the daemon cannot start another watchdog between the two kills.
    d1.kill("SIGSTOP");
    process.kill(wd, "SIGKILL");
    d1.kill("SIGKILL");
    await d1.exited;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(pidsWithArg(m).length, 2, "with daemon and watchdog gone, the tree runs on");
    assert.ok(ownerDirs(d1.id).length > 0, "and so do its cgroups");

    const d2 = await daemon(["--data", data]);
    assert.equal(d2.id, d1.id);
    // Reaped before the URL was printed; the kernel may take a moment to reap the bodies.
    assert.ok(await within(1000, () => pidsWithArg(m).length === 0), `left running: ${pidsWithArg(m)}`);
    assert.match(d2.stderr(), /killed \d+ process\(es\) left by the previous daemon/);
    await d2.stop();
    assert.equal(ownerDirs(d2.id).length, 0, "a graceful stop leaves no cgroup");
  });
});

describe("scrub and stop", () => {
  test("scrub kills a descendant that left the process group; stop removes the cgroups and the watchdog", async () => {
    const d = await daemon();
    const { m } = await tree(d, "scrubbed");
    const c = await dial(d.url);
    try {
      const p = await c.walk(`/${d.id}/t/scrubbed`).get();
      assert.ok(p instanceof Proc);
      await p.scrub();
      assert.ok(await within(7000, () => pidsWithArg(m).length === 0), `left running: ${pidsWithArg(m)}`);
      // A process that ends takes its cgroup with it.
      const q = await c.walk(`/${d.id}/t/short`).makeProc({ path: "sleep", args: ["0.3"] });
      const dir = cgroupOf(q.pid, "memory");
      assert.match(dir ?? "", /^\/circuit\//);
      await q.wait();
      assert.ok(await within(3000, () => !existsSync(`/sys/fs/cgroup/memory${dir}`)), `${dir} is still there`);
      await tree(d, "at-stop");
    } finally {
      await c.close();
    }
    await d.stop();
    assert.equal(ownerDirs(d.id).length, 0, "no cgroup left after a graceful stop");
    assert.ok(await within(3000, () => watchdogOf(d.id).length === 0), "the watchdog exits");
  });

  test("scrub --keep detaches: the process leaves its cgroup and outlives a kill -9 of the daemon", async () => {
    const d = await daemon();
    const m = marker();
    markers.push(m);
    const c = await dial(d.url);
    let pid: number;
    try {
      const p = await c.walk(`/${d.id}/t/kept`).makeProc({ path: "sleep", args: [m], limits: { pids: 4 } });
      pid = p.pid;
      // makeProc answers once the process is in its cgroup.
      assert.match(cgroupOf(pid, "pids") ?? "", /^\/circuit\//);
      await p.scrub({ keep: true });
      assert.doesNotMatch(cgroupOf(pid, "pids") ?? "", /\/circuit\//, "moved out of its cgroup");
    } finally {
      await c.close();
    }
    d.kill("SIGKILL");
    await d.exited;
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(pidsWithArg(m), [pid], "the kept process runs on");
    killPids([pid]);
  });
});
