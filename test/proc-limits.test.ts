// test-runner: alone (CPU share and memory limits measured)
// Limits (DESIGN.md §3.2): a process and all its descendants confined by the host's cgroups — a
// memory limit the kernel enforces (oomKilled), a CPU quota, a pids cap — and the whole group's CPU
// and RSS in peek; Unsupported where the daemon cannot confine. Real cgroup v1 on this host (the
// pure parts and the v2 backend are in proc-limits-units.test.ts, the CLI in proc-limits-cli).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { type Client, dial, type ProcStat, Unsupported } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { cgroupOf, killPids, marker, pidsWithArg, removeCgroupsOf, within } from "./helpers/procs.ts";

const MiB = 1024 * 1024;
const ids = new Set<string>();
const markers: string[] = [];

after(async () => {
  await killAll();
  for (const m of markers) killPids(pidsWithArg(m));
  removeCgroupsOf(ids);
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
      // makeProc answers once the process is in its cgroup.
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
});
