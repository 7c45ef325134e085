// A client on a slow link that asks for many big values at once (a prefetch of 32 values of
// 1 MiB, 32 MiB, against a daemon that cuts off a peer with more than 8 MiB unsent to it as one
// that does not read) is not cut off: the daemon hands values to its receivers only while the
// bytes already queued for the connection are under half that bound, and the rest stay in the
// channel meanwhile. Every value arrives once, in order, at the link's pace. Stream messages read
// at once on such a link are paced the same way: their bytes wait in the daemon (and their senders
// for credit) while the connection is backed up.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { slowRelay } from "./helpers/relay.ts";

const MIB = 1024 * 1024;
let d: Daemon;
let producer: Client;

before(async () => {
  d = await startDaemon(["--max-unsent", String(8 * MIB), "--max-value", String(2 * MIB)]);
  producer = await dial(d.url);
});

after(async () => {
  await producer?.close();
  await killAll();
});

test("a prefetch of 32 MiB over an 8 MB/s link, 8 MiB unsent allowed: 24 values of 1 MiB arrive once each, in order", async () => {
  const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
  const relay = await slowRelay(port, 8e6);
  const consumer = await dial(relay.url);
  try {
    const path = `/${d.id}/slow`;
    const tx = await producer.walk(path).makeChan<Uint8Array>(32);
    const rx = await consumer.walk(path).getChan<Uint8Array>();
    const sends = (async () => {
      for (let i = 0; i < 24; i++) await tx.send(new Uint8Array(MIB).fill(i));
    })();
    const t0 = Date.now();
    const got: number[] = [];
    for await (const v of rx.iterate({ prefetch: 32 })) {
      assert.equal(v.length, MIB);
      assert.equal(v[MIB - 1], v[0]);
      got.push(v[0] as number);
      if (got.length === 24) break;
    }
    const took = Date.now() - t0;
    await sends;
    assert.deepEqual(
      got,
      Array.from({ length: 24 }, (_, i) => i),
    );
    // At the link's pace (24 MiB at 8 MB/s is about 3 s), not faster: the relay did hold it back.
    assert.ok(took > 2000, `took ${took} ms`);
    const st = await tx.stat();
    assert.equal(st.len, 0);
    assert.equal(st.numRecv, 24);
    assert.doesNotMatch(d.stderr(), /not reading/);
  } finally {
    await consumer.close();
    relay.close();
  }
});

test("twelve receivers waiting on one slow connection, 48 MiB sent to them at once: every value arrives once", async () => {
  const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
  const relay = await slowRelay(port, 16e6);
  const consumer = await dial(relay.url);
  try {
    const names = Array.from({ length: 12 }, (_, i) => `/${d.id}/many${i}`);
    const txs = await Promise.all(names.map((n) => producer.walk(n).makeChan<Uint8Array>(4)));
    const rxs = await Promise.all(names.map((n) => consumer.walk(n).getChan<Uint8Array>()));
    const receiving = Promise.all(
      rxs.map(async (rx) => {
        const firsts: number[] = [];
        for await (const v of rx.iterate({ prefetch: 4 })) {
          assert.equal(v[MIB - 1], v[0]);
          firsts.push(v[0] as number);
          if (firsts.length === 4) break;
        }
        return firsts;
      }),
    );
    // Every receiver waits in its channel before any value is sent: each value sent now could be
    // handed over at once, on every channel.
    for (const tx of txs) {
      const t0 = Date.now();
      while ((await tx.stat()).waitingReceivers < 4) {
        assert.ok(Date.now() - t0 < 5000, "receivers never waited");
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const value = (c: number, i: number) => new Uint8Array(MIB).fill(c * 4 + i);
    await Promise.all(txs.map((tx, c) => Promise.all([0, 1, 2, 3].map((i) => tx.send(value(c, i))))));
    assert.deepEqual(
      await receiving,
      Array.from({ length: 12 }, (_, c) => [0, 1, 2, 3].map((i) => c * 4 + i)),
    );
    for (const tx of txs) assert.equal((await tx.stat()).numRecv, 4);
    assert.doesNotMatch(d.stderr(), /not reading/);
  } finally {
    await consumer.close();
    relay.close();
  }
});

test("eight stream messages of 4 MiB read at once over a 16 MB/s link, 8 MiB unsent allowed: each arrives whole, the reader not cut off", async () => {
  const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
  const relay = await slowRelay(port, 16e6);
  const consumer = await dial(relay.url);
  try {
    const size = 4 * MIB;
    const names = Array.from({ length: 8 }, (_, i) => `/${d.id}/streams${i}`);
    const txs = await Promise.all(names.map((n) => producer.walk(n).makeChan<unknown>(1)));
    const rxs = await Promise.all(names.map((n) => consumer.walk(n).getChan<unknown>()));
    // Each reader grants its whole window at once, so the daemon could queue up to eight windows
    // for this one connection: far past the 8 MiB bound, unless it holds the streams' bytes back.
    const reading = Promise.all(
      rxs.map(async (rx, c) => {
        const r = await rx.recvStream();
        let n = 0;
        for await (const chunk of r) {
          for (let i = 0; i < (chunk as Buffer).length; i += 65536)
            assert.equal((chunk as Buffer)[i], c, `stream ${c} at byte ${n + i}`);
          n += (chunk as Buffer).length;
        }
        return n;
      }),
    );
    await Promise.all(
      txs.map(async (tx, c) => {
        const w = tx.sendStream();
        w.end(Buffer.alloc(size, c));
        await w.sent;
      }),
    );
    assert.deepEqual(await reading, Array(8).fill(size));
    assert.doesNotMatch(d.stderr(), /not reading/);
  } finally {
    await consumer.close();
    relay.close();
  }
});
