// test-runner: heavy (timeouts measured)
// The built \`circuit\` command line, driven the way a user drives it: one OS process per command
// against real daemons on 127.0.0.1 port 0. Blocking is shown by a process that is still running;
// every wait is bounded, and every process a test spawns is killed when the file ends. (--timeout and peek)

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { assertFails, assertOk, assertTimedOut, daemonFor, within } from "./helpers/cli.ts";
import { killAll } from "./helpers/daemon.ts";

after(killAll);

describe("--timeout", () => {
  const cli = daemonFor();

  test("recv --timeout on an empty channel exits 1 and consumes nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const t0 = Date.now();
    assertTimedOut(await c.run(["recv", "--timeout", "300", ch], { timeoutMs: 10_000 }));
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 5_000, `recv --timeout 300 took ${took} ms`);
    await c.until(ch, (s) => s.waitingReceivers === 0, "the timed-out receiver to be gone");

    // Were the timed-out recv still registered, this send would hand it the value and the recv
    // below would wait in vain.
    const s = c.spawn(["send", ch], { input: "after" });
    const r = await c.run(["recv", "--timeout", "5000", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "after");
    assertOk(await within(5_000, s.result, "send to exit"));
  });

  test("send --timeout on a full channel exits 1 and delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "first");
    const t0 = Date.now();
    assertTimedOut(await c.run(["send", "--timeout", "300", ch], { input: "late", timeoutMs: 10_000 }));
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 5_000, `send --timeout 300 took ${took} ms`);
    await c.until(ch, (s) => s.waitingSenders === 0, "the timed-out sender to be gone");
    assert.equal((await c.stat(ch)).len, 1);

    assert.equal(await c.recv(ch), "first");
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("send --timeout on an unbuffered channel with no receiver exits 1 and delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    assertTimedOut(await c.run(["send", ch, "--timeout", "300"], { input: "late", timeoutMs: 10_000 }));
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("recv --timeout with a value ready returns it", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "ready");
    const r = await c.run(["recv", "--timeout", "1000", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "ready");
  });

  test("recv --timeout 0 takes a value that is already there", {}, async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "ready");
    const r = await c.run(["recv", "--timeout", "0", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "ready");
  });

  test("send --timeout limits the wait for the channel, not for stdin", {}, async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    const s = c.spawn(["send", "--timeout", "500", ch], { openStdin: true });
    s.stdin!.write("slow ");
    await sleep(1_000);
    s.stdin!.end("producer");
    assertOk(await within(5_000, s.result, "send to exit"));
    assert.equal(await c.recv(ch), "slow producer");
  });
});

describe("peek", () => {
  const cli = daemonFor();

  test("peek /XID prints the server element with its id, url and pid", async () => {
    const c = cli();
    const s = JSON.parse((await c.ok(["peek", c.root])).stdout.toString()) as Record<string, unknown>;
    assert.equal(s.id, c.d.id);
    assert.equal(s.url, c.d.url);
    for (const k of ["startedAt", "joinedAt", "version", "host", "process", "elements"])
      assert.ok(k in s, `${k} in ${Object.keys(s)}`);
    assert.equal((s.process as { pid: number }).pid, c.d.pid);
    assert.equal(typeof (s.host as { cpus: unknown }).cpus, "number");
  });

  test("peek of a channel prints exactly the stat fields", async () => {
    const c = cli();
    const ch = await c.mkchan(4);
    await c.send(ch, "one");
    await c.send(ch, "two");
    await c.recv(ch);
    assert.deepEqual(await c.stat(ch), {
      cap: 4,
      len: 1,
      closed: false,
      aborted: false,
      numSend: 2,
      numRecv: 1,
      waitingSenders: 0,
      waitingReceivers: 0,
    });
    await c.ok(["close", ch]);
    assert.equal((await c.stat(ch)).closed, true);
  });

  test("peek of an anchor without an element exits 1 with NotFound", async () => {
    const c = cli();
    const dir = c.path("dir");
    await c.ok(["mkchan", `${dir}/q`, "0"]);
    assertFails(await c.run(["peek", dir]), 1, "NotFound");
    assertFails(await c.run(["peek", `${c.root}/nothing`]), 1, "NotFound");
  });
});
