// test-runner: heavy (blocked processes released within bounds)
// The built \`circuit\` command line, driven the way a user drives it: one OS process per command
// against real daemons on 127.0.0.1 port 0. Blocking is shown by a process that is still running;
// every wait is bounded, and every process a test spawns is killed when the file ends. (blocking, close and scrub)

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { assertFails, assertOk, assertTimedOut, daemonFor, within } from "./helpers/cli.ts";
import { killAll } from "./helpers/daemon.ts";

after(killAll);

describe("blocking", () => {
  const cli = daemonFor();

  test("send on an unbuffered channel blocks until a recv takes the value", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "hello" });
    await c.assertBlocked(s, ch, "waitingSenders");
    assert.equal(await c.recv(ch), "hello");
    assertOk(await within(5_000, s.result, "send to exit after the recv"));
  });

  test("recv on an empty channel blocks until a send arrives", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    await c.send(ch, "late");
    const got = await within(5_000, r.result, "recv to exit after the send");
    assertOk(got);
    assert.equal(got.stdout.toString(), "late");
  });

  test("a cap-2 channel takes two sends at once; the third blocks until a recv", async () => {
    const c = cli();
    const ch = await c.mkchan(2);
    await c.send(ch, "a");
    await c.send(ch, "b");
    const third = c.spawn(["send", ch], { input: "c" });
    await c.assertBlocked(third, ch, "waitingSenders");
    assert.equal((await c.stat(ch)).len, 2);

    assert.equal(await c.recv(ch), "a");
    assertOk(await within(5_000, third.result, "third send to exit after a recv"));
    assert.equal(await c.recv(ch), "b");
    assert.equal(await c.recv(ch), "c");
  });

  test("blocked receivers are served first come, first served", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const first = c.spawn(["recv", ch]);
    await c.until(ch, (s) => s.waitingReceivers === 1, "first receiver waiting");
    const second = c.spawn(["recv", ch]);
    await c.until(ch, (s) => s.waitingReceivers === 2, "second receiver waiting");
    const s1 = c.spawn(["send", ch], { input: "one" });
    assertOk(await within(5_000, s1.result, "first send"));
    const s2 = c.spawn(["send", ch], { input: "two" });
    assertOk(await within(5_000, s2.result, "second send"));
    assert.equal((await within(5_000, first.result, "first recv")).stdout.toString(), "one");
    assert.equal((await within(5_000, second.result, "second recv")).stdout.toString(), "two");
  });

  test("a blocked send whose process is killed delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "ghost" });
    await c.assertBlocked(s, ch, "waitingSenders");
    s.kill("SIGKILL");
    await s.result;
    await c.until(ch, (st) => st.waitingSenders === 0, "the dead sender to be forgotten");
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("a blocked recv whose process is killed consumes nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    r.kill("SIGKILL");
    await r.result;
    await c.until(ch, (st) => st.waitingReceivers === 0, "the dead receiver to be forgotten");
    const s = c.spawn(["send", ch], { input: "kept" });
    const got = await c.run(["recv", "--timeout", "5000", ch]);
    assertOk(got);
    assert.equal(got.stdout.toString(), "kept");
    assertOk(await within(5_000, s.result, "send to exit"));
  });
});

describe("close", () => {
  const cli = daemonFor();

  test("buffered values stay receivable after close, then recv fails with ChannelClosed", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    await c.send(ch, "a");
    await c.send(ch, "b");
    await c.ok(["close", ch]);
    const st = await c.stat(ch);
    assert.equal(st.closed, true);
    assert.equal(st.len, 2);
    assert.equal(await c.recv(ch), "a");
    assert.equal(await c.recv(ch), "b");
    assertFails(await c.run(["recv", ch]), 1, "ChannelClosed");
  });

  test("send after close and a second close fail with ChannelClosed", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.ok(["close", ch]);
    assertFails(await c.run(["send", ch], { input: "late" }), 1, "ChannelClosed");
    assertFails(await c.run(["close", ch]), 1, "ChannelClosed");
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("a blocked send fails with ChannelClosed when the channel is closed", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "v" });
    await c.assertBlocked(s, ch, "waitingSenders");
    await c.ok(["close", ch]);
    assertFails(await within(5_000, s.result, "blocked send to fail"), 1, "ChannelClosed");
  });

  test("a blocked recv fails with ChannelClosed when the channel is closed", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    await c.ok(["close", ch]);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ChannelClosed");
  });
});

describe("scrub", () => {
  const cli = daemonFor();

  test("scrub aborts a blocked recv and removes the element and its empty anchors", async () => {
    const c = cli();
    const dir = c.path("scrubbed");
    const ch = `${dir}/q`;
    await c.ok(["mkchan", ch, "0"]);
    const keep = await c.mkchan(0, "keep");
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");

    await c.ok(["scrub", ch]);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ChannelAborted");
    const all = await c.ls(`${c.root}/...`);
    assert.ok(!all.includes(ch), `${ch} still listed`);
    assert.ok(!all.includes(dir), `empty ancestor ${dir} still listed`);
    assert.ok(all.includes(keep), "other anchors stay");
    assertFails(await c.run(["peek", ch]), 1, "NotFound");
    assertFails(await c.run(["scrub", ch]), 1, "NotFound");
  });

  test("scrub aborts a blocked send and drops the buffered values", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "buffered");
    const s = c.spawn(["send", ch], { input: "waiting" });
    await c.assertBlocked(s, ch, "waitingSenders");
    await c.ok(["scrub", ch]);
    assertFails(await within(5_000, s.result, "blocked send to fail"), 1, "ChannelAborted");
    // A new channel at the same anchor starts empty.
    await c.ok(["mkchan", ch, "1"]);
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("scrub of the server element is refused", async () => {
    const c = cli();
    assertFails(await c.run(["scrub", c.root]), 1, "WrongKind");
    assert.deepEqual(await c.ls("/"), [c.root]);
  });
});
