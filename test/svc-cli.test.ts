// Services from the command line (DESIGN.md §3.7, §8): `mksvc PATH` with a JSON spec on stdin or
// with flags, `scale`, `peek`, `ls -l`; bad specs and flags are usage errors (exit 2) before
// anything is sent, operations on the wrong element fail with exit 1.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceStat } from "../src/index.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";

after(killAll);

test("mksvc from a JSON spec or flags; scale; usage errors", async () => {
  const d = await startDaemon();
  const cli = (args: string[], input?: string) => runCli(["-d", d.url, ...args], { input });
  const svc = `/${d.id}/svc/json`;
  const spec = { cmd: { path: "sleep", args: ["300"] }, replicas: 2, restart: "on-failure", maxRestarts: 3 };
  const mk = await cli(["--json", "mksvc", svc], JSON.stringify(spec));
  assert.equal(mk.code, 0, mk.stderr);
  const made = JSON.parse(mk.stdout.toString()) as ServiceStat;
  assert.equal(made.spec.restart, "on-failure");
  assert.equal(made.spec.maxRestarts, 3);
  assert.equal(made.spec.backoffMs, 500, "defaults filled in");
  assert.equal(made.desired, 2);
  const t0 = Date.now();
  let s: ServiceStat;
  for (;;) {
    s = JSON.parse((await cli(["peek", svc])).stdout.toString()) as ServiceStat;
    if (s.replicas.filter((r) => r.phase === "running").length === 2) break;
    assert.ok(Date.now() - t0 < 10_000, JSON.stringify(s));
    await sleep(100);
  }
  assert.deepEqual(s.replicas.map((r) => r.path).sort(), [`${svc}/r1`, `${svc}/r2`]);
  const ls = (await cli(["ls", "-l", `/${d.id}/svc/...`])).stdout.toString();
  assert.match(ls, new RegExp(`${svc}\\s+svc\\s+running 2/2`));
  assert.match(ls, new RegExp(`${svc}/r1\\s+proc\\s+pid=\\d+ running`));

  const sc = await cli(["--json", "scale", svc, "3"]);
  assert.equal(sc.code, 0, sc.stderr);
  assert.equal((JSON.parse(sc.stdout.toString()) as ServiceStat).desired, 3);

  // Flags: limits and policy reach the spec.
  const flags = await cli([
    "--json",
    "mksvc",
    `/${d.id}/svc/flags`,
    "--replicas",
    "0",
    "--max",
    "4",
    "--restart",
    "never",
    "--backoff-ms",
    "50",
    "--max-backoff-ms",
    "400",
    "--cooldown-ms",
    "1000",
    "--autoscale-chan",
    `/${d.id}/jobs`,
    "--per-replica",
    "5",
    "--",
    "sleep",
    "1",
  ]);
  assert.equal(flags.code, 0, flags.stderr);
  const f = JSON.parse(flags.stdout.toString()) as ServiceStat;
  assert.deepEqual(f.spec.autoscale, { chan: `/${d.id}/jobs`, perReplica: 5 });
  assert.equal(f.spec.min, 1, "autoscaling keeps at least one replica by default");
  assert.equal(f.spec.restart, "never");
  assert.deepEqual(f.spec.cmd.args, ["1"]);

  // Usage errors: exit 2, one line, nothing made.
  const usage = async (args: string[], re: RegExp, input?: string) => {
    const r = await cli(args, input);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  };
  const bad = `/${d.id}/svc/bad`;
  await usage(["mksvc", bad, "--restart", "sometimes", "--", "true"], /restart is "always", "on-failure" or "never"/);
  await usage(["mksvc", bad, "--replicas", "x", "--", "true"], /--replicas takes a whole number/);
  await usage(["mksvc", bad, "--autoscale-chan", `/${d.id}/jobs`, "--", "true"], /go together/);
  await usage(["mksvc", bad, "--min", "3", "--max", "2", "--", "true"], /max \(2\) is below min \(3\)/);
  await usage(["mksvc", bad], /not a JSON spec/, "{nope");
  await usage(["mksvc", bad], /unknown service field "replica"/, JSON.stringify({ cmd: { path: "true" }, replica: 2 }));
  await usage(["scale", svc, "-1"], /N must be a whole number|unknown option/);
  assert.equal((await cli(["peek", bad])).code, 1, "nothing was made");

  // Wrong element: exit 1.
  await cli(["mkchan", `/${d.id}/jobs`, "1"]);
  const wrong = await cli(["scale", `/${d.id}/jobs`, "2"]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /WrongKind/);
  const busy = await cli(["mksvc", svc, "--", "true"]);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /AnchorBusy/);
  assert.equal((await cli(["scrub", svc])).code, 0);
  assert.equal((await cli(["scrub", `/${d.id}/svc/flags`])).code, 0);
});
