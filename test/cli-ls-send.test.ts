// The built \`circuit\` command line, driven the way a user drives it: one OS process per command
// against real daemons on 127.0.0.1 port 0. Blocking is shown by a process that is still running;
// every wait is bounded, and every process a test spawns is killed when the file ends. (ls, send and recv)

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import { assertFails, assertOk, daemonFor, within } from "./helpers/cli.ts";
import { killAll } from "./helpers/daemon.ts";

after(killAll);

describe("ls", () => {
  const cli = daemonFor();

  test("ls / prints exactly the server path", async () => {
    const c = cli();
    assert.equal((await c.ok(["ls", "/"])).stdout.toString(), `/${c.d.id}\n`);
  });

  test("ls -l / shows the server's kind and URL", async () => {
    const c = cli();
    const lines = await c.ls("/", "-l");
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0]!.split(/\s+/), [`/${c.d.id}`, "server", c.d.url]);
  });

  test("PATH/... lists recursively, with the intermediate anchors", async () => {
    const c = cli();
    const base = c.path("jobs");
    await c.ok(["mkchan", `${base}/a/q`, "2"]);
    await c.ok(["mkchan", `${base}/b`, "0"]);

    assert.deepEqual(await c.ls(`${base}/...`), [`${base}/a`, `${base}/a/q`, `${base}/b`]);
    assert.deepEqual(await c.ls(base), [`${base}/a`, `${base}/b`]);
    assert.deepEqual(await c.ls(`${base}/a/q`), [], "a channel's anchor has no children");

    const all = await c.ls("/...");
    assert.ok(all.includes(c.root), "/... starts at the servers");
    for (const p of [base, `${base}/a`, `${base}/a/q`, `${base}/b`]) assert.ok(all.includes(p), `${p} in ls /...`);
  });

  test("ls -l PATH/... shows kind and state for elements and none for bare anchors", async () => {
    const c = cli();
    const base = c.path("long");
    await c.ok(["mkchan", `${base}/a/q`, "2"]);
    await c.send(`${base}/a/q`, "x");
    const rows = new Map((await c.ls(`${base}/...`, "-l")).map((l) => [l.split(/\s+/)[0]!, l]));
    assert.deepEqual([...rows.keys()], [`${base}/a`, `${base}/a/q`]);
    assert.match(rows.get(`${base}/a/q`)!, /\schan\s.*cap=2.*len=1/);
    assert.doesNotMatch(rows.get(`${base}/a`)!, /chan/);
  });

  test("--json output parses, before or after the command", async () => {
    const c = cli();
    const base = c.path("json");
    await c.ok(["mkchan", `${base}/q`, "1"]);

    const plain = JSON.parse((await c.ok(["--json", "ls", `${base}/...`])).stdout.toString()) as { path: string }[];
    assert.deepEqual(
      plain.map((e) => e.path),
      [`${base}/q`],
    );
    const long = JSON.parse((await c.ok(["ls", "-l", `${base}/...`, "--json"])).stdout.toString()) as {
      path: string;
      kind?: string;
      state?: string;
    }[];
    assert.equal(long.length, 1);
    assert.equal(long[0]!.path, `${base}/q`);
    assert.equal(long[0]!.kind, "chan");
    assert.equal(typeof long[0]!.state, "string");

    const servers = JSON.parse((await c.ok(["ls", "--json", "/"])).stdout.toString()) as { path: string }[];
    assert.deepEqual(
      servers.map((e) => e.path),
      [c.root],
    );
  });

  test("ls of a missing anchor or server exits 1 with NotFound", async () => {
    const c = cli();
    assertFails(await c.run(["ls", `${c.root}/missing`]), 1, "NotFound");
    assertFails(await c.run(["ls", `${c.root}/missing/...`]), 1, "NotFound");
    assertFails(await c.run(["ls", "/Xffffffffffffffff"]), 1, "NotFound");
  });
});

describe("send and recv", () => {
  const cli = daemonFor();

  test("1 MiB of random bytes arrives byte for byte, buffered and unbuffered", async () => {
    const c = cli();
    const data = randomBytes(1 << 20);

    const buffered = await c.mkchan(1);
    await c.ok(["send", buffered], { input: data });
    const r = await c.ok(["recv", buffered]);
    assert.ok(r.stdout.equals(data), `recv wrote ${r.stdout.length} bytes that differ from the 1 MiB sent`);

    const unbuffered = await c.mkchan(0);
    const s = c.spawn(["send", unbuffered], { input: data });
    const r2 = await c.ok(["recv", unbuffered]);
    assert.ok(r2.stdout.equals(data), `recv wrote ${r2.stdout.length} bytes that differ from the 1 MiB sent`);
    assertOk(await within(5_000, s.result, "send to exit"));
  });

  test("byte values are written raw: an empty value and trailing newlines survive", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    await c.send(ch, "");
    await c.send(ch, "two\nlines\n\n");
    await c.send(ch, Buffer.from([0, 255, 10, 13, 0]));
    assert.equal((await c.ok(["recv", ch])).stdout.length, 0);
    assert.equal(await c.recv(ch), "two\nlines\n\n");
    assert.deepEqual([...(await c.ok(["recv", ch])).stdout], [0, 255, 10, 13, 0]);
  });

  test("--json send of an object: recv prints it as JSON and a newline", async () => {
    const c = cli();
    const ch = await c.mkchan(2);
    const obj = { job: "resize", sizes: [64, 128], meta: { done: false, note: null, ratio: 1.5, name: "ünï" } };
    await c.ok(["--json", "send", ch], { input: JSON.stringify(obj, null, 2) });
    await c.ok(["send", ch, "--json"], { input: JSON.stringify(obj) });
    for (const args of [
      ["recv", ch],
      ["--json", "recv", ch],
    ]) {
      const out = (await c.ok(args)).stdout.toString();
      assert.ok(out.endsWith("\n") && !out.slice(0, -1).includes("\n"), `one line of JSON: ${JSON.stringify(out)}`);
      assert.deepEqual(JSON.parse(out), obj);
    }
  });

  test("--json carries strings, numbers, booleans, null and arrays", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    for (const v of ["hello", "", 42, -0.25, true, null, [1, "a", [false]]]) {
      await c.ok(["--json", "send", ch], { input: JSON.stringify(v) });
      const out = (await c.ok(["recv", ch])).stdout.toString();
      assert.ok(out.endsWith("\n"), `JSON plus a newline: ${JSON.stringify(out)}`);
      assert.deepEqual(JSON.parse(out), v);
    }
  });

  test("--json send of invalid JSON is a usage error and sends nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    assertFails(await c.run(["--json", "send", ch], { input: "{not json" }), 2);
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("values come out in the order they went in", async () => {
    const c = cli();
    const ch = await c.mkchan(5);
    for (const v of ["1", "2", "3", "4", "5"]) await c.send(ch, v);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(await c.recv(ch));
    assert.deepEqual(got, ["1", "2", "3", "4", "5"]);
  });

  test("wrong targets fail with the matching error code", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    assertFails(await c.run(["mkchan", ch, "1"]), 1, "AnchorBusy");
    assertFails(await c.run(["send", `${c.root}/nowhere`], { input: "x" }), 1, "NotFound");
    assertFails(await c.run(["recv", `${c.root}/nowhere`]), 1, "NotFound");
    assertFails(await c.run(["recv", c.root]), 1, "WrongKind");
    assertFails(await c.run(["mkchan", c.root, "1"]), 1, "WrongKind");
  });
});
