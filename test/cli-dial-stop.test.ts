// The built \`circuit\` command line, driven the way a user drives it: one OS process per command
// against real daemons on 127.0.0.1 port 0. Blocking is shown by a process that is still running;
// every wait is bounded, and every process a test spawns is killed when the file ends. (dial selection, usage errors and stop)

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { assertFails, assertOk, Cli, daemonFor, deadPort, within } from "./helpers/cli.ts";
import { killAll, runCli, running, startDaemon } from "./helpers/daemon.ts";

after(killAll);

describe("dial selection", () => {
  const cli = daemonFor();
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "circuit-cli-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("-d and --dial before or after the command", async () => {
    const c = cli();
    const want = `${c.root}\n`;
    for (const args of [
      ["-d", c.d.url, "ls", "/"],
      ["ls", "/", "-d", c.d.url],
      ["ls", "-d", c.d.url, "/"],
      ["--dial", c.d.url, "ls", "/"],
      [`--dial=${c.d.url}`, "ls", "/"],
    ]) {
      const r = await runCli(args);
      assertOk(r);
      assert.equal(r.stdout.toString(), want, args.join(" "));
    }
  });

  test("a URL without the server ID dials too", async () => {
    const c = cli();
    const r = await runCli(["-d", c.d.url.replace(/\/X[0-9a-f]{16}$/, ""), "ls", "/"]);
    assertOk(r);
    assert.equal(r.stdout.toString(), `${c.root}\n`);
  });

  test("env CIRCUIT as a URL and as a file holding one", async () => {
    const c = cli();
    const file = join(dir, "circuit.url");
    writeFileSync(file, `${c.d.url}\n`);
    for (const value of [c.d.url, file]) {
      const r = await runCli(["ls", "/"], { env: { CIRCUIT: value } });
      assertOk(r);
      assert.equal(r.stdout.toString(), `${c.root}\n`, `CIRCUIT=${value}`);
    }
  });

  test("-d wins over env CIRCUIT", async () => {
    const c = cli();
    const r = await runCli(["-d", c.d.url, "ls", "/"], { env: { CIRCUIT: `circuit://127.0.0.1:${await deadPort()}` } });
    assertOk(r);
    assert.equal(r.stdout.toString(), `${c.root}\n`);
  });

  test("env CIRCUIT that is neither a URL nor a file is a usage error", async () => {
    assertFails(await runCli(["ls", "/"], { env: { CIRCUIT: join(dir, "no-such-file") } }), 2);
  });

  test("dialling a port with nothing listening exits 1 with one line naming the address", async () => {
    const port = await deadPort();
    const r = await runCli(["-d", `circuit://127.0.0.1:${port}`, "ls", "/"], { timeoutMs: 12_000 });
    assertFails(r, 1);
    assert.ok(r.stderr.includes(`127.0.0.1:${port}`), r.stderr);
  });

  test("the error for an unreachable server says it cannot be reached", {}, async () => {
    const port = await deadPort();
    const r = await runCli(["-d", `circuit://127.0.0.1:${port}`, "ls", "/"], { timeoutMs: 12_000 });
    assertFails(r, 1);
    assert.match(r.stderr, /(can ?not|could not|unable to) (reach|connect)|unreachable/i);
    assert.doesNotMatch(r.stderr, /lost connection/i);
  });
});

describe("usage errors", () => {
  const cli = daemonFor();
  const X = () => cli().root;

  // Each case gets the live daemon's URL, so a case can only pass by being refused as a usage error.
  const cases: [string, () => string[], string?][] = [
    ["unknown command", () => ["frobnicate", "/"]],
    ["unknown option", () => ["ls", "--frob", "/"]],
    ["mkchan without arguments", () => ["mkchan"]],
    ["mkchan without a capacity", () => ["mkchan", `${X()}/u1`]],
    ["mkchan with an extra argument", () => ["mkchan", `${X()}/u1`, "1", "2"]],
    ["peek without a path", () => ["peek"]],
    ["send without a path", () => ["send"], "x"],
    ["recv without a path", () => ["recv"]],
    ["ls with two paths", () => ["ls", "/", "/"]],
    ["close with an extra argument", () => ["close", `${X()}/u1`, "x"]],
    ["stop without a path", () => ["stop"]],
    ["capacity -1", () => ["mkchan", `${X()}/u2`, "-1"]],
    ["capacity x", () => ["mkchan", `${X()}/u2`, "x"]],
    ["capacity 1000001", () => ["mkchan", `${X()}/u2`, "1000001"]],
    ["capacity 1.5", () => ["mkchan", `${X()}/u2`, "1.5"]],
    ["relative path", () => ["mkchan", "jobs/q", "1"]],
    ["relative path for peek", () => ["peek", "jobs"]],
    ["first name not a server ID", () => ["mkchan", "/jobs/q", "1"]],
    ["server ID in upper case", () => ["peek", X().toUpperCase()]],
    ["anchor name with a bad character", () => ["mkchan", `${X()}/bad!name`, "1"]],
    ["empty anchor name", () => ["mkchan", `${X()}/a//b`, "1"]],
    ["--timeout x", () => ["recv", `${X()}/u3`, "--timeout", "x"]],
    ["--timeout -5", () => ["recv", "--timeout", "-5", `${X()}/u3`]],
    ["--timeout 1.5", () => ["send", "--timeout", "1.5", `${X()}/u3`], "x"],
    ["--timeout without a value", () => ["recv", `${X()}/u3`, "--timeout"]],
    ["-d with a bad URL", () => ["ls", "/", "-d", "http://127.0.0.1:1"]],
    ["start --join x", () => ["start", "--addr", "127.0.0.1:0", "--join", "x"]],
    ["start --data without a directory", () => ["start", "--addr", "127.0.0.1:0", "--data"]],
    ["start --key", () => ["start", "--addr", "127.0.0.1:0", "--key", "/nonexistent"]],
    ["--key", () => ["--key", "/nonexistent", "ls", "/"]],
    ["--discover with a bad group", () => ["--discover", "nonsense", "ls", "/"]],
  ];

  for (const [name, args, input] of cases) {
    test(`${name}: exit 2, one line on stderr`, async () => {
      const r = await cli().run(args(), { input, timeoutMs: 10_000 });
      assertFails(r, 2);
      assert.equal(r.stdout.length, 0, `nothing on stdout: ${r.stdout}`);
    });
  }

  test("no usage error created anything", async () => {
    const c = cli();
    assert.deepEqual(await c.ls(`${c.root}/...`), []);
    assert.deepEqual(await c.ls("/"), [c.root], "start --join x left no second server behind");
  });

  test("bad paths are refused before dialling", {}, async () => {
    const dead = `circuit://127.0.0.1:${await deadPort()}`;
    const id = cli().d.id;
    for (const args of [
      ["mkchan", "/jobs/q", "1"],
      ["peek", `/${id.toUpperCase()}`],
      ["mkchan", `/${id}/bad!name`, "1"],
      ["recv", `/${id}/a//b`],
    ]) {
      const r = await runCli(["-d", dead, ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}; stderr: ${r.stderr}`);
    }
  });
});

describe("stop", () => {
  test("stop /XID makes the daemon exit with code 0", async (t) => {
    const d = await startDaemon();
    t.after(() => d.stop());
    const c = new Cli(d);
    assertFails(await c.run(["stop", `${c.root}/not-a-server`]), 1);
    assertFails(await c.run(["stop", "/Xffffffffffffffff"]), 1, "NotFound");
    assert.ok(running(d.proc), "a failed stop leaves the daemon running");

    assertOk(await c.run(["stop", c.root]));
    const { code, signal } = await within(5_000, d.exited, "daemon to exit after stop");
    assert.equal(code, 0, `daemon exit ${code} (signal ${signal}); stderr: ${d.stderr()}`);
    assertFails(await c.run(["ls", "/"]), 1);
  });

  test("SIGTERM stops the daemon with code 0, and a blocked client fails with ServerGone", async (t) => {
    const d = await startDaemon();
    t.after(() => d.stop());
    const c = new Cli(d);
    const ch = await c.mkchan(0);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");

    d.kill("SIGTERM");
    const { code, signal } = await within(5_000, d.exited, "daemon to exit after SIGTERM");
    assert.equal(code, 0, `daemon exit ${code} (signal ${signal}); stderr: ${d.stderr()}`);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ServerGone");
  });
});
