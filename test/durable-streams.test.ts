// test-runner: heavy (kill -9 and restart timing)
// Stream messages in durable channels (DESIGN §3.1 streams, §3.6): a message is stored chunk by
// chunk as it arrives and `sent` resolves only once the whole of it is synced; a receiver reads it
// back as a Readable (recv, iterate, select); after kill -9 a completed message is back whole and
// an incomplete one is gone without a trace; capacity 0 waits for a receiver; cancelling leaves
// nothing.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, dial, select } from "../src/index.ts";
import { type Daemon, spawnCli } from "./helpers/daemon.ts";
import { crashAndRestart, dataDirs, startOn } from "./helpers/durable.ts";
import { readAll } from "./helpers/streams.ts";

const tmp = dataDirs();

/** Writes `data` in pieces of `piece` bytes, honouring backpressure; does not end the writer. */
async function writeAll(w: Writable, data: Buffer, piece = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += piece) {
    if (!w.write(data.subarray(off, off + piece))) {
      await new Promise<void>((resolve, reject) => {
        const onErr = (e: Error) => reject(e);
        w.once("drain", () => {
          w.off("error", onErr);
          resolve();
        });
        w.once("error", onErr);
      });
    }
  }
}

async function sendMessage(ch: Chan<unknown>, data: Buffer): Promise<void> {
  const w = ch.sendStream();
  await writeAll(w, data);
  w.end();
  await w.sent;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("durable channel stream messages", () => {
  test("stored whole, read back by recv, iterate and select, and back whole after kill -9", async () => {
    const dir = tmp("streams");
    let d: Daemon = await startOn(dir);
    const msgs = [randomBytes(3 * 1024 * 1024 + 17), randomBytes(1), randomBytes(700 * 1024), Buffer.alloc(0)];
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/s`).makeChan<unknown>(8, { durable: true });
      for (const m of msgs) await sendMessage(ch, m);
      await ch.send("after");
      const st = await ch.stat();
      assert.equal(st.len, 5);
      // bytes counts the messages' lengths, not their markers.
      const total = msgs.reduce((n, m) => n + m.length, 0);
      assert.ok((st.bytes as number) >= total, `bytes ${st.bytes} < ${total}`);
      // The first one is read now (and acknowledged), the rest stay.
      const r0 = await ch.recvStream();
      assert.equal(sha(await readAll(r0)), sha(msgs[0] as Buffer));
      // The removal is written in the next commit; a synced send after it (commits are in order)
      // makes sure it is on disk before the crash.
      await (await c.walk(`/${d.id}/barrier`).makeChan<number>(1, { durable: true })).send(1);
    } finally {
      await c.close().catch(() => {});
    }
    d = await crashAndRestart(d, dir);
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/s`).get()) as Chan<unknown>;
      const st = await ch.stat();
      assert.equal(st.len, 4, "the message read and acknowledged is gone, the others are back");
      const r1 = await select([ch.recvCase()]);
      assert.equal(sha(await readAll(r1.value as Readable)), sha(msgs[1] as Buffer));
      const it = ch.iterate({ prefetch: 4 });
      for (const m of msgs.slice(2)) {
        const n = await it.next();
        assert.equal(sha(await readAll(n.value as Readable)), sha(m), "whole and in order");
      }
      assert.equal((await it.next()).value, "after");
      await it.return?.();
      await sleep(50);
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).bytes], [0, 0]);
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("kill -9 while messages are being written: completed ones back whole, the rest without a trace", async () => {
    const dir = tmp("streams-crash");
    let d: Daemon = await startOn(dir);
    const c = await dial(d.url);
    const completed = new Map<number, string>();
    const all = new Map<number, string>();
    try {
      const ch = await c.walk(`/${d.id}/s`).makeChan<unknown>(1000, { durable: true });
      // Three writers keep sending messages of 64 KiB to 2 MiB, each starting with its number.
      let next = 0;
      const writer = async () => {
        for (;;) {
          const i = next++;
          const body = randomBytes(64 * 1024 + ((i * 377_003) % (2 * 1024 * 1024)));
          body.writeUInt32BE(i, 0);
          all.set(i, sha(body));
          try {
            await sendMessage(ch, body);
            completed.set(i, sha(body));
          } catch {
            return;
          }
        }
      };
      const writers = [writer(), writer(), writer()];
      await sleep(300 + Math.floor(Math.random() * 700));
      // Restarted once every writer has failed (a client that reached the restarted daemon in
      // time would carry its operations over).
      d = await crashAndRestart(d, dir, [], () => Promise.all(writers));
    } finally {
      await c.close().catch(() => {});
    }
    assert.ok(completed.size > 0, "some messages completed before the crash");
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/s`).get()) as Chan<unknown>;
      await ch.close();
      const got = new Set<number>();
      for await (const r of ch.iterate({ prefetch: 2 })) {
        const b = await readAll(r as Readable);
        const i = b.readUInt32BE(0);
        assert.equal(sha(b), all.get(i), `message ${i} is whole`);
        assert.ok(!got.has(i), `message ${i} once`);
        got.add(i);
      }
      for (const i of completed.keys()) assert.ok(got.has(i), `completed message ${i} came back`);
      // At most the three in flight at the crash may be there without having completed.
      assert.ok(got.size - completed.size <= 3, `${got.size} back, ${completed.size} completed`);
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).bytes], [0, 0]);
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("an unfinished message at kill -9 leaves no trace; a cancelled one neither", async () => {
    const dir = tmp("streams-half");
    let d: Daemon = await startOn(dir);
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/s`).makeChan<unknown>(4, { durable: true });
      const ac = new AbortController();
      const cancelled = ch.sendStream({ signal: ac.signal });
      await writeAll(cancelled, randomBytes(2 * 1024 * 1024));
      ac.abort();
      await assert.rejects(cancelled.sent, { name: "AbortError" });
      const half = ch.sendStream();
      await writeAll(half, randomBytes(2 * 1024 * 1024));
      await sleep(200);
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).bytes], [0, 0], "nothing in the channel yet");
      d = await crashAndRestart(d, dir, [], () => assert.rejects(half.sent, { code: "ServerGone" }));
    } finally {
      await c.close().catch(() => {});
    }
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/s`).get()) as Chan<unknown>;
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).bytes], [0, 0]);
      await sendMessage(ch, Buffer.from("whole"));
      assert.equal((await readAll(await ch.recvStream())).toString(), "whole");
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("a receiver killed in the middle of a message: the message goes back whole", async () => {
    const dir = tmp("streams-lost");
    const d: Daemon = await startOn(dir);
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/s`).makeChan<unknown>(2, { durable: true });
      const data = randomBytes(64 * 1024 * 1024);
      await sendMessage(ch, data);
      // `circuit recv` takes it (and acknowledges it at once) and is killed once bytes flow.
      const recv = spawnCli(["--dial", d.url, "recv", `/${d.id}/s`]);
      let first = 0;
      await new Promise<void>((resolve) =>
        recv.stdout?.on("data", (b: Buffer) => {
          if (first === 0) {
            first = b.length;
            recv.kill("SIGKILL");
            resolve();
          }
        }),
      );
      await recv.result;
      assert.ok(first > 0 && first < data.length);
      const r = await ch.recvStream({ signal: AbortSignal.timeout(10_000) });
      assert.equal(sha(await readAll(r)), sha(data), "whole, from its first byte");
      await sleep(50);
      assert.deepEqual([(await ch.stat()).len, (await ch.stat()).bytes], [0, 0]);
    } finally {
      await c.close();
      await d.stop();
    }
  });

  test("kill -9 while a receiver reads a message: it is back whole after the restart", async () => {
    const dir = tmp("streams-midread");
    let d: Daemon = await startOn(dir);
    const data = randomBytes(32 * 1024 * 1024);
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/s`).makeChan<unknown>(2, { durable: true });
      await sendMessage(ch, data);
      const r = await ch.recvStream();
      // Read a little, then stop reading: the rest waits in the daemon and the socket.
      const first = (await r[Symbol.asyncIterator]().next()).value as Buffer;
      assert.ok(first.length > 0 && first.length < data.length);
      r.pause();
      d = await crashAndRestart(d, dir, [], async () => {
        r.resume();
        await assert.rejects(readAll(r), "the message broke off: never a short message");
      });
    } finally {
      await c.close().catch(() => {});
    }
    const c2 = await dial(d.url);
    try {
      const ch = (await c2.walk(`/${d.id}/s`).get()) as Chan<unknown>;
      assert.equal((await ch.stat()).len, 1);
      assert.equal(sha(await readAll(await ch.recvStream())), sha(data), "whole, from its first byte");
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("capacity 0: the message waits for a receiver; sent resolves once handed over and stored", async () => {
    const dir = tmp("streams-unbuf");
    const d: Daemon = await startOn(dir);
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/u`).makeChan<unknown>(0, { durable: true });
      const data = randomBytes(1024 * 1024);
      const w = ch.sendStream();
      await writeAll(w, data);
      w.end();
      let sent = false;
      void w.sent.then(() => {
        sent = true;
      });
      await sleep(300);
      assert.equal(sent, false, "no receiver yet: not sent");
      const r = await ch.recvStream();
      await w.sent;
      assert.equal(sha(await readAll(r)), sha(data));
      await sleep(50);
      assert.equal((await ch.stat()).bytes, 0, "read whole and acknowledged: gone from the store");
    } finally {
      await c.close();
      await d.stop();
    }
  });
});
