// Limits (DESIGN.md §3.2): a process and all its descendants confined by the host's cgroups — a
// memory limit the kernel enforces (oomKilled), a CPU quota, a pids cap — and the whole group's CPU
// and RSS in peek; Unsupported where the daemon cannot confine; the CLI flags. Real cgroup v1 on
// this host; the v2 backend's file writes against a temporary directory standing in for
// /sys/fs/cgroup (the seam: a backend is told its hierarchy's root).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { detectCgroups, hostCgroups, parseMountinfo, V2Backend } from "../src/daemon/cgroups.ts";
import { groupTree, type ProcEntry, parseStatEntry } from "../src/daemon/procfs.ts";
import { type Client, dial, type ProcStat, Unsupported } from "../src/index.ts";
import { checkLimits, parseSize } from "../src/wire/proc-limits.ts";
import { CLI, type CliResult, type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { cgroupOf, killPids, marker, pidsWithArg, removeCgroupsOf, within } from "./helpers/procs.ts";

const MiB = 1024 * 1024;
const ids = new Set<string>();
const markers: string[] = [];
const temps: string[] = [];

after(async () => {
  await killAll();
  for (const m of markers) killPids(pidsWithArg(m));
  removeCgroupsOf(ids);
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

describe("limits enforced by a real daemon (cgroup v1)", () => {
  let d: Daemon;
  let plain: Daemon;
  let c: Client;
  let cp: Client;
  let n = 0;
  const at = (name: string) => c.walk(`/${d.id}/lim/${name}-${++n}`);

  before(async () => {
    [d, plain] = await Promise.all([startDaemon(), startDaemon(["--no-cgroups"])]);
    ids.add(d.id);
    ids.add(plain.id);
    [c, cp] = await Promise.all([dial(d.url), dial(plain.url)]);
  });
  after(async () => {
    await c?.close();
    await cp?.close();
    await Promise.all([d?.stop(), plain?.stop()]);
  });

  test("over a 64 MiB memory limit the kernel kills it, and peek and wait say oomKilled", async () => {
    const script =
      "const a = []; for (let i = 0; i < 200; i++) a.push(Buffer.alloc(1 << 20, 1)); setTimeout(() => {}, 30000);";
    const p = await at("hog").makeProc({
      path: process.execPath,
      args: ["-e", script],
      limits: { memoryBytes: 64 * MiB },
    });
    const st = await p.wait({ signal: AbortSignal.timeout(30_000) });
    assert.equal(st.signal, "SIGKILL");
    assert.equal(st.oomKilled, true);
    assert.deepEqual(st.limits, { memoryBytes: 64 * MiB });
    assert.equal((await p.peek()).oomKilled, true);
    // The same program without a limit is not killed (the kill above was the limit's doing).
    const q = await at("free").makeProc({ path: process.execPath, args: ["-e", script.replace("30000", "10")] });
    const qs = await q.wait({ signal: AbortSignal.timeout(30_000) });
    assert.deepEqual([qs.exitCode, qs.oomKilled, qs.limits], [0, false, null]);
  });

  test("cpus: 0.25 holds a busy loop near a quarter of a core", async () => {
    const p = await at("busy").makeProc({ path: "sh", args: ["-c", "while :; do :; done"], limits: { cpus: 0.25 } });
    try {
      const dir = cgroupOf(p.pid, "cpu");
      assert.match(dir ?? "", /^\/circuit\//);
      assert.equal(readFileSync(`/sys/fs/cgroup/cpu${dir}/cpu.cfs_quota_us`, "utf8").trim(), "25000");
      const ticks = () => {
        const f = readFileSync(`/proc/${p.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
        return Number(f[11]) + Number(f[12]);
      };
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = Date.now();
      const k0 = ticks();
      await new Promise((r) => setTimeout(r, 4000));
      const share = (ticks() - k0) / 100 / ((Date.now() - t0) / 1000);
      const peek = await p.peek();
      console.log(`# cpus 0.25: ${(share * 100).toFixed(1)} % of a core over 4 s; peek says ${peek.cpuPercent} %`);
      // Unlimited, the loop takes a whole core on an idle host; on a loaded one it gets less either way.
      assert.ok(share <= 0.4, `${share} of a core is over the 0.25 quota`);
      assert.ok(share >= 0.05, `${share} of a core: the loop hardly ran`);
      assert.ok(peek.cpuPercent <= 40, `peek: ${peek.cpuPercent} %`);
      const throttled = readFileSync(`/sys/fs/cgroup/cpu${dir}/cpu.stat`, "utf8");
      assert.match(throttled, /nr_periods [1-9]/);
    } finally {
      await p.scrub();
    }
  });

  test("pids: a loop forking 50 children gets at most the limit, and the shell says it cannot fork", async () => {
    const m = marker();
    markers.push(m);
    const script = `i=0; while [ $i -lt 50 ]; do sleep ${m} & i=$((i+1)); done; wait`;
    const p = await at("forks").makeProc({ path: "sh", args: ["-c", script], limits: { pids: 8 } }, { stderr: true });
    let err = "";
    p.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    const st: ProcStat = await p.wait({ signal: AbortSignal.timeout(20_000) });
    assert.notEqual(st.exitCode, 0);
    assert.match(err, /fork/i);
    const kids = pidsWithArg(m);
    assert.ok(kids.length > 0 && kids.length <= 7, `${kids.length} children under a limit of 8 (the shell is one)`);
    await p.scrub();
    assert.ok(await within(7000, () => pidsWithArg(m).length === 0), "scrub kills the children the leader left");
  });

  for (const mode of ["cgroup", "process group"] as const) {
    test(`peek counts the children's CPU and memory, not only the leader's (${mode})`, async () => {
      const client = mode === "cgroup" ? c : cp;
      const server = mode === "cgroup" ? d : plain;
      const child = "globalThis.b = Buffer.alloc(120e6, 1); const t = Date.now() + 8000; while (Date.now() < t) {}";
      const p = await client
        .walk(`/${server.id}/lim/kids-${++n}`)
        .makeProc({ path: "sh", args: ["-c", `${JSON.stringify(process.execPath)} -e '${child}'; sleep 30`] });
      try {
        let st = await p.peek();
        const until = Date.now() + 7000;
        while (Date.now() < until && !(st.rssBytes > 100e6 && st.cpuPercent > 5)) {
          await new Promise((r) => setTimeout(r, 300));
          st = await p.peek();
        }
        const leader = readFileSync(`/proc/${p.pid}/status`, "utf8");
        const leaderRss = Number(/VmRSS:\s+(\d+)/.exec(leader)?.[1]) * 1024;
        assert.ok(leaderRss < 20e6, `the leader (sh) itself holds ${leaderRss} bytes`);
        assert.ok(st.rssBytes > 100e6, `group RSS ${st.rssBytes}`);
        assert.ok(st.cpuPercent > 5, `group CPU ${st.cpuPercent} %`);
        console.log(`# ${mode}: leader ${leaderRss} B; group ${st.rssBytes} B, ${st.cpuPercent} % CPU`);
      } finally {
        await p.scrub();
      }
    });
  }

  test("a server that cannot confine refuses limits with Unsupported and the reason; without limits it runs", async () => {
    const a = cp.walk(`/${plain.id}/lim/refused`);
    await assert.rejects(a.makeProc({ path: "true", limits: { memoryBytes: 64 * MiB } }), (err: unknown) => {
      assert.ok(err instanceof Unsupported);
      assert.match((err as Error).message, /--no-cgroups/);
      return true;
    });
    assert.equal(await a.get(), null, "the anchor stays empty");
    const p = await a.makeProc({ path: "true" });
    assert.equal((await p.wait()).exitCode, 0);
    // Bad values never leave the client.
    await assert.rejects(at("tiny").makeProc({ path: "true", limits: { memoryBytes: 100 } }), RangeError);
    await assert.rejects(at("nan").makeProc({ path: "true", limits: { cpus: -1 } }), RangeError);
  });

  test("a daemon that is not root cannot make cgroups: limits fail with Unsupported naming EACCES", async () => {
    // The same daemon as user nobody (setpriv from util-linux), the way an unprivileged operator runs it.
    const proc = spawn(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, "start", "--addr", "127.0.0.1:0"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      const [line] = (await Promise.race([
        once(proc.stdout, "data"),
        new Promise((_, reject) => setTimeout(() => reject(new Error("no URL within 15 s")), 15_000)),
      ])) as [Buffer];
      const url = line.toString().split("\n")[0] as string;
      const id = url.slice(url.lastIndexOf("/") + 1);
      ids.add(id);
      const r = await runCli(["-d", url, "mkproc", "--memory", "64M", `/${id}/x`, "--", "true"], { timeoutMs: 30_000 });
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /^circuit: Unsupported: cannot enforce limits on this server: cannot create a cgroup: EACCES/,
      );
      const ok = await runCli(["-d", url, "mkproc", `/${id}/y`, "--", "true"], { timeoutMs: 30_000 });
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      proc.kill("SIGKILL");
      await once(proc, "exit").catch(() => {});
    }
  });

  test("CLI: mkproc --memory 512M --cpus 0.5 --pids 64 sets the cgroup; bad values are usage errors", async () => {
    const run = (server: Daemon, args: string[]) => runCli(["-d", server.url, ...args], { timeoutMs: 30_000 });
    const ok = (r: CliResult) => {
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.toString();
    };
    const path = `/${d.id}/lim/cli`;
    const out = ok(
      await run(d, [
        "--json",
        "mkproc",
        "--memory",
        "512M",
        "--cpus",
        "0.5",
        "--pids",
        "64",
        path,
        "--",
        "sleep",
        "30",
      ]),
    );
    const pid = (JSON.parse(out) as { pid: number }).pid;
    const st = JSON.parse(ok(await run(d, ["peek", path]))) as ProcStat;
    assert.deepEqual(st.limits, { memoryBytes: 512 * MiB, cpus: 0.5, pids: 64 });
    const group = cgroupOf(pid, "memory");
    assert.match(group ?? "", new RegExp(`^/circuit/${d.id}/\\d+$`));
    const file = (h: string, f: string) => readFileSync(`/sys/fs/cgroup/${h}${group}/${f}`, "utf8").trim();
    assert.equal(file("memory", "memory.limit_in_bytes"), String(512 * MiB));
    assert.equal(file("cpu", "cpu.cfs_quota_us"), "50000");
    assert.equal(file("pids", "pids.max"), "64");
    ok(await run(d, ["scrub", path]));
    assert.ok(
      await within(3000, () => !existsSync(`/sys/fs/cgroup/memory${group}`)),
      "the cgroup goes with the process",
    );

    const usage = async (args: string[], pattern: RegExp) => {
      const r = await run(d, ["mkproc", ...args, `/${d.id}/lim/bad`, "--", "true"]);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split("\n").length, 1);
    };
    await usage(["--memory", "12Q"], /^circuit: .*not a size: "12Q"/);
    await usage(["--memory", "100"], /at least 1048576/);
    await usage(["--cpus", "abc"], /--cpus takes a number of cores/);
    await usage(["--cpus", "0"], /between 0\.01 and/);
    await usage(["--pids", "0"], /between 1 and/);
    await usage(["--pids", "2.5"], /--pids takes a whole number/);
    const r = await run(plain, ["mkproc", "--memory", "64M", `/${plain.id}/lim/cli`, "--", "true"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^circuit: Unsupported: cannot enforce limits on this server: cgroups are off/);
  });
});
