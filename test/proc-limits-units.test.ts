// Limits, the pure parts (DESIGN.md §3.2): size and limit checks before any I/O, cgroup detection
// from a mount table, the v2 backend's file writes against a temporary directory standing in for
// /sys/fs/cgroup (the seam: a backend is told its hierarchy's root), and finding a process group's
// members and descendants in a process table.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { detectCgroups, hostCgroups, parseMountinfo, V2Backend } from "../src/daemon/cgroups.ts";
import { groupTree, type ProcEntry, parseStatEntry } from "../src/daemon/procfs.ts";
import { checkLimits, parseSize } from "../src/wire/proc-limits.ts";

const MiB = 1024 * 1024;
const temps: string[] = [];

after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function temp(): string {
  const t = mkdtempSync(join(tmpdir(), "circuit-cg-"));
  temps.push(t);
  return t;
}

describe("limit values", () => {
  test("sizes take plain bytes and K/M/G/T suffixes; anything else is a RangeError", () => {
    assert.equal(parseSize("536870912"), 536870912);
    assert.equal(parseSize("512M"), 512 * MiB);
    assert.equal(parseSize("512m"), 512 * MiB);
    assert.equal(parseSize("1.5G"), 1.5 * 1024 * MiB);
    assert.equal(parseSize("64KiB"), 65536);
    assert.equal(parseSize("2GB"), 2 * 1024 * MiB);
    for (const bad of ["", "12Q", "M", "-5M", "1.5", "1e9", "0x10", "5 M B"]) {
      assert.throws(() => parseSize(bad), RangeError, bad);
    }
  });

  test("limits are checked before any I/O: RangeError out of range, TypeError of the wrong kind", () => {
    assert.equal(checkLimits(undefined), undefined);
    assert.equal(checkLimits({}), undefined);
    assert.deepEqual(checkLimits({ memoryBytes: 64 * MiB, cpus: 0.5, pids: 64 }), {
      memoryBytes: 64 * MiB,
      cpus: 0.5,
      pids: 64,
    });
    assert.throws(() => checkLimits({ memoryBytes: 100 }), RangeError);
    assert.throws(() => checkLimits({ memoryBytes: 1.5 * MiB + 0.5 }), TypeError);
    assert.throws(() => checkLimits({ cpus: 0 }), RangeError);
    assert.throws(() => checkLimits({ cpus: Number.NaN }), TypeError);
    assert.throws(() => checkLimits({ pids: 0 }), RangeError);
    assert.throws(() => checkLimits({ pids: 2.5 }), TypeError);
    assert.throws(() => checkLimits({ memory: 5 }), TypeError);
    assert.throws(() => checkLimits([1]), TypeError);
  });
});

describe("cgroup backends", () => {
  const v1Mountinfo = [
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    "36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer",
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  ].join("\n");

  test("detection: v2 with memory, cpu and pids wins; else the v1 hierarchies; else the reason", () => {
    assert.deepEqual(parseMountinfo("1 2 0:1 / /a\\040b rw - cgroup2 none rw")[0], {
      mountPoint: "/a b",
      fsType: "cgroup2",
      superOptions: ["rw"],
    });
    const root = temp();
    writeFileSync(join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
    const v2 = detectCgroups(`40 30 0:37 / ${root} rw,relatime - cgroup2 cgroup2 rw`);
    assert.equal(v2.backend?.version, 2);
    // Hybrid: the cgroup2 mount has no controllers, the v1 ones do.
    const v1 = detectCgroups(v1Mountinfo, () => "");
    assert.equal(v1.backend?.version, 1);
    assert.match(v1.backend?.cannot({ pids: 8 }) ?? "", /pids controller is not mounted/);
    assert.equal(v1.backend?.cannot({ memoryBytes: 64 * MiB, cpus: 1 }), undefined);
    const none = detectCgroups("30 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", () => "cpuset io\n");
    assert.equal(none.backend, undefined);
    assert.match(none.reason ?? "", /lacks memory, cpu, pids/);
    // This host: v1 controllers mounted and writable.
    assert.equal(hostCgroups().backend?.version, 1, hostCgroups().reason);
  });

  test("v2 writes subtree_control, memory.max, memory.swap.max, cpu.max and pids.max; reads usage and oom_kill", () => {
    const root = temp();
    for (const f of ["cgroup.controllers", "cgroup.subtree_control", "cgroup.procs"]) writeFileSync(join(root, f), "");
    const be = new V2Backend(root);
    const dir = join(root, "circuit", "Xabc", "7");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "memory.swap.max"), "max\n");
    const g = be.create("Xabc", "7", { memoryBytes: 64 * MiB, cpus: 0.25, pids: 64 });
    const read = (...p: string[]) => readFileSync(join(root, ...p), "utf8");
    for (const d of [[], ["circuit"], ["circuit", "Xabc"]]) {
      assert.equal(read(...d, "cgroup.subtree_control"), "+memory +cpu +pids", d.join("/"));
    }
    assert.equal(read("circuit/Xabc/7/memory.max"), String(64 * MiB));
    assert.equal(read("circuit/Xabc/7/memory.swap.max"), "0");
    assert.equal(read("circuit/Xabc/7/cpu.max"), "25000 100000");
    assert.equal(read("circuit/Xabc/7/pids.max"), "64");
    assert.deepEqual(g.joinFiles, [join(dir, "cgroup.procs")]);

    // Without a cpus limit the cpu controller is not enabled (see V2Backend.create), nor cpu.max written.
    const be2 = new V2Backend(temp());
    const g2 = be2.create("Xdef", "1", { memoryBytes: 8 * MiB });
    const r2 = (g2.dirs[0] as string).replace(/\/circuit\/Xdef\/1$/, "");
    assert.equal(readFileSync(join(r2, "cgroup.subtree_control"), "utf8"), "+memory +pids");
    assert.equal(existsSync(join(g2.dirs[0] as string, "cpu.max")), false);

    writeFileSync(join(dir, "cgroup.procs"), "4242\n4343\n");
    writeFileSync(join(dir, "cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n");
    writeFileSync(join(dir, "memory.stat"), "anon 1048576\nfile 999999\nfile_mapped 4096\n");
    writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    assert.deepEqual(g.pids(), [4242, 4343]);
    assert.deepEqual(g.usage(), { cpuNs: 1_500_000_000, rssBytes: 1048576 + 4096 });
    assert.equal(g.oomKills(), 1);
    writeFileSync(join(dir, "cgroup.kill"), "");
    g.kill();
    assert.equal(read("circuit/Xabc/7/cgroup.kill"), "1");
    // Release moves the members to the root (in a real hierarchy the directory then goes).
    g.release();
    assert.equal(read("cgroup.procs"), "4343");
    assert.deepEqual(
      be.groupsOf("Xabc").map((x) => x.dirs),
      [[dir]],
    );
  });

  test("a group's members by process group and by parent, never older than its leader", () => {
    const line = "77 (a (b) c) S 1 77 77 0 -1 4194560 0 0 0 0 12 3 4 5 20 0 1 0 5000 0 0";
    assert.deepEqual(parseStatEntry(77, line), { pid: 77, ppid: 1, pgid: 77, start: 5000, ticks: 24 });
    const e = (pid: number, ppid: number, pgid: number, start: number): ProcEntry => ({
      pid,
      ppid,
      pgid,
      start,
      ticks: 0,
    });
    const table = [
      e(10, 1, 10, 100), // the leader
      e(11, 10, 10, 101), // a child in its group
      e(12, 10, 12, 102), // a child that called setsid
      e(13, 12, 12, 103), // its child
      e(20, 1, 20, 50), // unrelated
      e(21, 1, 10, 40), // same pgid, but older than the leader: a reused number
    ];
    assert.deepEqual(
      groupTree(10, 100, table)
        .map((x) => x.pid)
        .sort(),
      [10, 11, 12, 13],
    );
  });
});
