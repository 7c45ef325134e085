// test-runner: alone (CPU share and memory limits measured)
// Limits from the command line (DESIGN.md §3.2, §8): `mkproc --memory --cpus --pids` set the
// process's cgroup; bad values are usage errors (exit 2) before anything is sent; a daemon that
// cannot confine (--no-cgroups, or not root) fails the request with Unsupported (exit 1).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { ProcStat } from "../src/index.ts";
import { CLI, type CliResult, type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { cgroupOf, removeCgroupsOf, within } from "./helpers/procs.ts";

const MiB = 1024 * 1024;
const ids = new Set<string>();

after(async () => {
  await killAll();
  removeCgroupsOf(ids);
});

describe("mkproc limits from the command line", () => {
  let d: Daemon;
  let plain: Daemon;

  before(async () => {
    [d, plain] = await Promise.all([startDaemon(), startDaemon(["--no-cgroups"])]);
    ids.add(d.id);
    ids.add(plain.id);
  });
  after(async () => {
    await Promise.all([d?.stop(), plain?.stop()]);
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
        new Promise((_, reject) => setTimeout(() => reject(new Error("no URL within 15 s")), 15_000).unref()),
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
});
