// test-runner: heavy (restart timing)
// Durable channels across a kill -9 and a restart on the same --data (DESIGN §3.6), through the
// library and the CLI: cap, closed flag, order and bytes come back; values delivered and not
// acknowledged are back at the head; a channel scrubbed before the crash stays gone; without
// --data a durable channel is Unsupported and nothing is created; a corrupt store stops the daemon
// at start-up with one line naming the file.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type Chan, dial, select, Unsupported } from "../src/index.ts";
import { type Daemon, runCli, startDaemon } from "./helpers/daemon.ts";
import { crashAndRestart, dataDirs, startOn } from "./helpers/durable.ts";

const tmp = dataDirs();

describe("durable channel restart", () => {
  test("cap, closed flag, order, bytes and unacknowledged values survive kill -9", async () => {
    const dir = tmp("restart");
    let d: Daemon = await startOn(dir);
    // This client dies with the daemon (a refused reconnection ends it), its receiver with it.
    const c = await dial(d.url);
    try {
      const open = await c.walk(`/${d.id}/open`).makeChan<number>(1_000_000_000, { durable: true });
      const shut = await c.walk(`/${d.id}/shut`).makeChan<string>(5, { durable: true });
      const gone = await c.walk(`/${d.id}/gone`).makeChan<string>(5, { durable: true });
      await Promise.all(Array.from({ length: 100 }, (_, i) => open.send(i)));
      for (const s of ["a", "b", "c"]) await shut.send(s);
      await shut.close();
      await gone.send("x");
      await gone.scrub();
      // A receiver that took 10 values and acknowledged none of them (its prefetch is out).
      const it = open.iterate({ prefetch: 10 });
      assert.equal((await it.next()).value, 0);
      await new Promise((r) => setTimeout(r, 100));
      const before = await open.stat();
      assert.equal(before.durable, true);
      assert.equal(before.len, 90);
      // bytes counts what the store holds: the 90 buffered and the 10 handed out.
      const bytes = before.bytes as number;
      assert.ok(bytes >= 100, `bytes ${bytes}`);

      // Restarted only once this client has given up (its receiver ended): a client that reached
      // the restarted daemon in time would carry its receiver over and take the ten again.
      // (The nine it still holds come first; nothing it does now reaches any daemon.)
      d = await crashAndRestart(d, dir, [], async () => {
        try {
          for (let i = 0; i < 20; i++) if ((await it.next()).done) return;
        } catch {
          // ServerGone: the receiver ended with its connection.
        }
      });
      const c2 = await dial(d.url);
      try {
        const o2 = (await c2.walk(`/${d.id}/open`).get()) as Chan<number>;
        const s2 = (await c2.walk(`/${d.id}/shut`).get()) as Chan<string>;
        assert.equal(await c2.walk(`/${d.id}/gone`).get(), null, "a scrubbed channel stays gone");
        const st = await o2.stat();
        assert.deepEqual(
          { cap: st.cap, len: st.len, closed: st.closed, durable: st.durable, bytes: st.bytes },
          { cap: 1_000_000_000, len: 100, closed: false, durable: true, bytes },
        );
        const ss = await s2.stat();
        assert.deepEqual([ss.cap, ss.len, ss.closed], [5, 3, true]);
        await assert.rejects(s2.send("late"), { code: "ChannelClosed" });
        const got: string[] = [];
        for await (const v of s2) got.push(v);
        assert.deepEqual(got, ["a", "b", "c"]);
        // Every value, in order: the unacknowledged ten at the head.
        await o2.close();
        const all: number[] = [];
        for await (const v of o2.iterate({ prefetch: 32 })) all.push(v);
        assert.deepEqual(
          all,
          Array.from({ length: 100 }, (_, i) => i),
        );
        assert.equal((await o2.stat()).bytes, 0);
      } finally {
        await c2.close();
      }
    } finally {
      await c.close().catch(() => {});
      await d.stop();
    }
  });

  test("a backlog larger than the read-ahead window comes back in order, with values handed out at the head", async () => {
    const dir = tmp("backlog");
    let d: Daemon = await startOn(dir);
    const N = 5000;
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/big`).makeChan<number>(N, { durable: true });
      const inflight: Promise<void>[] = [];
      for (let i = 0; i < N; i++) inflight.push(ch.send(i));
      await Promise.all(inflight);
      // A receiver takes the first 300 and never acknowledges them.
      const it = ch.iterate({ prefetch: 300 });
      assert.equal((await it.next()).value, 0);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await ch.stat()).len, N - 300);
    } finally {
      await c.close().catch(() => {});
    }
    d = await crashAndRestart(d, dir);
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/big`).get()) as Chan<number>;
      assert.equal((await ch.stat()).len, N);
      await ch.close();
      let next = 0;
      for await (const v of ch.iterate({ prefetch: 128 })) {
        assert.equal(v, next, "in order");
        next++;
      }
      assert.equal(next, N);
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("select: a received value is acknowledged (gone after a restart); a sent one is stored", async () => {
    const dir = tmp("select");
    let d: Daemon = await startOn(dir);
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/q`).makeChan<number>(10, { durable: true });
      for (let i = 0; i < 5; i++) await ch.send(i);
      for (let i = 0; i < 3; i++) {
        const r = await select([ch.recvCase()]);
        assert.deepEqual([r.index, r.value], [0, i]);
      }
      assert.equal((await select([ch.sendCase(9)])).index, 0);
      // The last select's acknowledgement travels with its end; a close issued after it is
      // answered once synced, and the store commits in order: the removals are synced too.
      await ch.close();
    } finally {
      await c.close().catch(() => {});
    }
    d = await crashAndRestart(d, dir);
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/q`).get()) as Chan<number>;
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).closed], [3, true]);
      assert.deepEqual([await ch.recv(), await ch.recv(), await ch.recv()], [3, 4, 9]);
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("CLI: mkchan --durable, peek and ls show it, send/recv across a restart", async () => {
    const dir = tmp("cli");
    let d: Daemon = await startOn(dir);
    const cli = (args: string[], input?: string) => runCli(["--dial", d.url, ...args], { input });
    try {
      const q = `/${d.id}/q`;
      assert.equal((await cli(["mkchan", "--durable", q, "2147483647"])).code, 0);
      const bad = await cli(["mkchan", "--durable", `/${d.id}/z`, "2147483648"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /from 0 to 2147483647/);
      for (const v of ["one", "two"]) assert.equal((await cli(["send", q], v)).code, 0);
      d = await crashAndRestart(d, dir);
      const peek = JSON.parse((await cli(["--json", "peek", q])).stdout.toString());
      assert.equal(peek.durable, true);
      assert.equal(peek.len, 2);
      assert.ok(peek.bytes > 0);
      assert.match((await cli(["ls", "-l", `/${d.id}`])).stdout.toString(), /q\s+chan\s+cap=2147483647 len=2 durable/);
      assert.equal((await cli(["recv", q])).stdout.toString().trim(), "one");
    } finally {
      await d.stop();
    }
  });

  test("without --data: Unsupported before anything is created", async () => {
    const d = await startDaemon();
    const c = await dial(d.url);
    try {
      await assert.rejects(c.walk(`/${d.id}/q`).makeChan(10, { durable: true }), Unsupported);
      assert.equal(await c.walk(`/${d.id}/q`).get(), null);
      const r = await runCli(["--dial", d.url, "mkchan", "--durable", `/${d.id}/q`, "10"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /^circuit: Unsupported: .*--data/);
      await assert.rejects(
        () => c.walk(`/${d.id}/q`).makeChan(2 ** 31, { durable: true }),
        RangeError,
        "a cap beyond 2^31-1 is refused before any I/O",
      );
    } finally {
      await c.close();
      await d.stop();
    }
  });

  test("a corrupt store stops the daemon at start-up with one line naming the file", async () => {
    const dir = tmp("corrupt");
    const d = await startOn(dir);
    const c = await dial(d.url);
    await (await c.walk(`/${d.id}/q`).makeChan(4, { durable: true })).send("v");
    await c.close();
    await d.stop();
    const file = join(dir, "chans.mdb");
    writeFileSync(file, Buffer.alloc(64 * 1024, 0x5a));
    const r = await runCli(["start", "--addr", "127.0.0.1:0", "--data", dir]);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0]?.includes(file), r.stderr);
    assert.equal(r.stdout.length, 0);
  });
});
