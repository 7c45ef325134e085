// test-runner: heavy (a NATS cluster, leases with a 3 s TTL and timed takeovers)
// Circuit-wide anchors from the command line (DESIGN §12): daemons started with --store share one
// /@ tree kept in a 3-node JetStream cluster; without --store, /@ does not exist.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertFails, assertOk, Cli, deadPort, within } from "./helpers/cli.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { type StoreCircuit, startStoreCircuit } from "./helpers/store.ts";

after(killAll);

describe("without --store", () => {
  let c: Cli;
  before(async () => {
    c = new Cli(await startDaemon());
  });
  after(() => c.d.stop());

  test("ls / shows no /@, and every /@ operation fails with Unsupported", async () => {
    assert.deepEqual(await c.ls("/"), [c.root]);
    assertFails(await c.run(["ls", "/@"]), 1, "Unsupported");
    assertFails(await c.run(["mkchan", "/@/jobs", "4"]), 1, "Unsupported");
    assertFails(await c.run(["mkchan", "--replicas", "3", "/@/jobs", "4"]), 1, "Unsupported");
    assertFails(await c.run(["send", "/@/jobs"], { input: "x" }), 1, "Unsupported");
    assertFails(await c.run(["recv", "/@/jobs"]), 1, "Unsupported");
  });

  test("--replicas outside /@ or not 1, 3 or 5 is a usage error", async () => {
    assertFails(await c.run(["mkchan", "--replicas", "3", c.path("q"), "4"]), 2);
    assertFails(await c.run(["mkchan", "--replicas", "2", "/@/q", "4"]), 2);
  });

  test("start --store with a malformed address is a usage error", async () => {
    const r = await runCli(["start", "--addr", "127.0.0.1:0", "--store", "http://x"], { timeoutMs: 10_000 });
    assertFails(r, 2);
    const r2 = await runCli(["start", "--addr", "127.0.0.1:0", "--store-creds", "/nonexistent/creds"], {
      timeoutMs: 10_000,
    });
    assertFails(r2, 2);
  });

  test("start --store with nobody listening fails with one clear line", async () => {
    const port = await deadPort();
    const t0 = performance.now();
    const r = await runCli(["start", "--addr", "127.0.0.1:0", "--store", `nats://127.0.0.1:${port}`], {
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /circuit: .*cannot reach the store at nats:\/\/127\.0\.0\.1:\d+/);
    assert.ok(performance.now() - t0 < 15_000, "it fails within the store's bound");
  });
});

describe("with --store", () => {
  let sc: StoreCircuit;
  let a: Cli;
  let b: Cli;
  before(async () => {
    sc = await startStoreCircuit(2);
    a = new Cli(sc.daemons[0]!);
    b = new Cli(sc.daemons[1]!);
  });
  after(() => sc?.stop());

  test("ls / shows /@ beside the servers, from every daemon", async () => {
    const servers = [a.root, b.root].sort();
    assert.deepEqual(await within(10_000, a.ls("/"), "ls"), [...servers, "/@"]);
    assert.deepEqual(await b.ls("/"), [...servers, "/@"]);
    assert.deepEqual(await a.ls("/@"), []);
  });

  test("a channel made through one daemon is seen, fed and drained through the other", async () => {
    await a.ok(["mkchan", "--replicas", "3", "/@/jobs/q", "4"]);
    assert.deepEqual(await b.ls("/@"), ["/@/jobs"]);
    assert.deepEqual(await b.ls("/@/...", "-l"), ["/@/jobs    -", "/@/jobs/q  chan    cap=4 replicas=3"]);
    assertFails(await b.run(["mkchan", "/@/jobs/q", "1"]), 1, "AnchorBusy");
    assertOk(await b.run(["mkchan", "-o", "/@/jobs/q", "1"]));
    for (const v of ["one", "two", "three"]) await b.send("/@/jobs/q", v);
    const st = JSON.parse((await a.ok(["peek", "/@/jobs/q"])).stdout.toString()) as Record<string, unknown>;
    assert.equal(st.len, 3);
    assert.equal(st.cap, 4);
    assert.equal(st.replicas, 3);
    assert.ok(st.host === a.d.id || st.host === b.d.id, `host ${st.host}`);
    assert.equal(await a.recv("/@/jobs/q"), "one");
    assert.equal(await b.recv("/@/jobs/q"), "two");
    assertOk(await a.run(["close", "/@/jobs/q"]));
    assertFails(await b.run(["send", "/@/jobs/q"], { input: "late" }), 1, "ChannelClosed");
    assert.equal(await b.recv("/@/jobs/q"), "three", "buffered values stay receivable after close");
    assertFails(await a.run(["recv", "/@/jobs/q"]), 1, "ChannelClosed");
    assertFails(await a.run(["close", "/@/jobs/q"]), 1, "ChannelClosed");
    assertOk(await b.run(["scrub", "/@/jobs/q"]));
    assert.deepEqual(await a.ls("/@"), []);
    assertFails(await a.run(["recv", "/@/jobs/q"]), 1, "NotFound");
  });

  test("recv --timeout on an empty /@ channel gives up and consumes nothing", async () => {
    await a.ok(["mkchan", "--replicas", "1", "/@/empty", "1"]);
    const r = await b.run(["recv", "--timeout", "300", "/@/empty"], { timeoutMs: 10_000 });
    assert.equal(r.code, 1, r.stderr);
    await a.send("/@/empty", "later");
    assert.equal(await b.recv("/@/empty"), "later");
    await a.ok(["scrub", "/@/empty"]);
  });
});
