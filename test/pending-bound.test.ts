// A daemon takes a bounded number of blocked sends and of receivers from one connection
// (`--max-pending`, 65,536 by default; more is a protocol error that closes the connection). Its
// HELLO says the bound, and the client holds the rest back itself, in issue order: a program that
// starts more sends or receives at once than that gets them all done, none lost or reordered, and
// an aborted one that was held back has not happened. Selects count against the same bound, and so
// does a stream message (a send until a receiver takes it, though its bytes have ended); a
// select with a default past it does not wait: its cases there count as not ready. The same holds
// for stream messages being sent (`--max-streams`, 1,024 by default). Here the daemon's bounds are
// 50 and 8.
import assert from "node:assert/strict";
import type { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { type Client, dial, select } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { cuttingRelay } from "./helpers/relay.ts";
import { readAll } from "./helpers/streams.ts";

/** The next n stream messages received on `ch`, each read whole as text. */
async function messages(ch: { iterate(): AsyncIterable<unknown> }, n: number): Promise<string[]> {
  const out: string[] = [];
  for await (const r of ch.iterate()) {
    out.push((await readAll(r as Readable)).toString());
    if (out.length === n) break;
  }
  return out;
}

const BOUND = 50;
const STREAMS = 8;
let d: Daemon;
let a: Client;
let b: Client;
let n = 0;
const fresh = () => `/${d.id}/pending/t${++n}`;

before(async () => {
  d = await startDaemon(["--max-pending", String(BOUND), "--max-streams", String(STREAMS)]);
  a = await dial(d.url);
  b = await dial(d.url);
});

after(async () => {
  await a?.close();
  await b?.close();
  await killAll();
});

test("1,000 unbuffered sends started at once arrive in order; the connection stays up", async () => {
  const path = fresh();
  const rx = await b.walk(path).makeChan<number>(0);
  const tx = await a.walk(path).getChan<number>();
  const sends = Array.from({ length: 1000 }, (_, i) => tx.send(i));
  const got: number[] = [];
  for await (const v of rx.iterate({ prefetch: 8 })) {
    got.push(v);
    if (got.length === 1000) break;
  }
  await Promise.all(sends);
  assert.deepEqual(
    got,
    Array.from({ length: 1000 }, (_, i) => i),
  );
  assert.equal((await tx.stat()).waitingSenders, 0);
  assert.equal(d.stderr().includes("too many"), false, d.stderr());
});

test("one blocked send on each of 120 buffered channels, all full: every one completes", async () => {
  const chans = await Promise.all(
    Array.from({ length: 120 }, async () => {
      const path = fresh();
      const rx = await b.walk(path).makeChan<string>(1);
      const tx = await a.walk(path).getChan<string>();
      return { rx, tx };
    }),
  );
  // The first send on each fills its buffer; the second and third block: at the server for up to
  // 50 of them, here for the rest, in the order they were started. (So a send waits behind
  // blocked sends on other channels once 50 are blocked: the receives below go round the
  // channels, as the held-back sends do.)
  const sends = chans.flatMap(({ tx }, i) => [tx.send(`${i}a`), tx.send(`${i}b`), tx.send(`${i}c`)]);
  for (const round of ["a", "b", "c"]) {
    for (const [i, { rx }] of chans.entries()) assert.equal(await rx.recv(), `${i}${round}`);
  }
  await Promise.all(sends);
});

test("1,000 receives started at once take 1,000 values in order; held-back ones aborted take none", async () => {
  const path = fresh();
  const rx = await b.walk(path).makeChan<number>(0);
  const tx = await a.walk(path).getChan<number>();
  const controllers = Array.from({ length: 1000 }, () => new AbortController());
  const recvs = controllers.map((c) => rx.recv({ signal: c.signal }));
  const settled = Promise.allSettled(recvs);
  // Receives past the first 50 wait in the client; every fourth of them is withdrawn.
  const withdrawn = new Set<number>();
  for (let i = BOUND + 10; i < 1000; i += 4) {
    withdrawn.add(i);
    controllers[i]?.abort(new Error("withdrawn"));
  }
  const left = 1000 - withdrawn.size;
  for (let i = 0; i < left; i++) await tx.send(i);
  const results = await settled;
  let next = 0;
  for (const [i, r] of results.entries()) {
    if (withdrawn.has(i)) {
      assert.equal(r.status, "rejected");
      assert.equal((r as PromiseRejectedResult).reason.message, "withdrawn");
    } else {
      assert.equal(r.status, "fulfilled", `receive ${i}`);
      assert.equal((r as PromiseFulfilledResult<number>).value, next++, "blocked receivers are served in order");
    }
  }
  assert.equal(next, left);
  const st = await rx.stat();
  assert.equal(st.waitingReceivers, 0);
  assert.equal(st.len, 0);
});

test("an iteration opened while 50 receives are open starts once they end", async () => {
  const path = fresh();
  const rx = await b.walk(path).makeChan<number>(4);
  const tx = await a.walk(path).getChan<number>();
  const recvs = Array.from({ length: BOUND }, () => rx.recv());
  const it = rx.iterate({ prefetch: 4 })[Symbol.asyncIterator]();
  const first = it.next();
  for (let i = 0; i < BOUND + 3; i++) await tx.send(i);
  assert.deepEqual(
    await Promise.all(recvs),
    Array.from({ length: BOUND }, (_, i) => i),
  );
  assert.deepEqual(await first, { value: BOUND, done: false });
  assert.deepEqual(await it.next(), { value: BOUND + 1, done: false });
  assert.deepEqual(await it.next(), { value: BOUND + 2, done: false });
  await it.return?.();
});

test("sends and receives held back here carry over a broken connection", async () => {
  const relay = await cuttingRelay(Number(/:(\d+)\//.exec(d.url)?.[1]));
  const c = await dial(`${relay.url}/${d.id}`);
  try {
    const pathS = fresh();
    const pathR = fresh();
    const sink = await b.walk(pathS).makeChan<number>(0);
    const source = await b.walk(pathR).makeChan<number>(0);
    const tx = await c.walk(pathS).getChan<number>();
    const rx = await c.walk(pathR).getChan<number>();
    // 70 blocked sends and 70 receivers: 50 of each at the server, 20 of each here.
    const sends = Array.from({ length: 70 }, (_, i) => tx.send(i));
    const recvs = Array.from({ length: 70 }, () => rx.recv());
    await new Promise((r) => setTimeout(r, 200));
    relay.cut();
    const got: number[] = [];
    for await (const v of sink.iterate()) {
      got.push(v);
      if (got.length === 70) break;
    }
    for (let i = 0; i < 70; i++) await source.send(100 + i);
    await Promise.all(sends);
    assert.deepEqual(
      got,
      Array.from({ length: 70 }, (_, i) => i),
    );
    assert.deepEqual(
      await Promise.all(recvs),
      Array.from({ length: 70 }, (_, i) => 100 + i),
    );
  } finally {
    await c.close();
    relay.close();
  }
});

test("40 stream messages started at once with 8 streams allowed: all arrive whole, in order", async () => {
  const path = fresh();
  const rx = await b.walk(path).makeChan(0);
  const tx = await a.walk(path).getChan();
  const aborter = new AbortController();
  const writers = Array.from({ length: 40 }, (_, i) => {
    const w = tx.sendStream(i === 30 ? { signal: aborter.signal } : undefined);
    // Past the first 8 they wait in the client, their bytes with them.
    w.write(`message ${i}, `);
    if (i !== 20) w.end(`end of ${i}`);
    return w;
  });
  const outcomes = Promise.allSettled(writers.map((w) => w.sent));
  // Two are withdrawn while they wait: one by its signal, one broken off by its writer.
  aborter.abort(new Error("withdrawn"));
  writers[20]?.destroy(new Error("given up"));
  const got = await messages(rx, 38);
  const kept = Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 20 && i !== 30);
  assert.deepEqual(
    got,
    kept.map((i) => `message ${i}, end of ${i}`),
  );
  const results = await outcomes;
  assert.equal(results[30]?.status, "rejected");
  assert.equal((results[30] as PromiseRejectedResult).reason.message, "withdrawn");
  assert.equal(results[20]?.status, "rejected");
  for (const i of kept) assert.equal(results[i]?.status, "fulfilled", `message ${i}`);
  assert.equal((await rx.stat()).waitingSenders, 0);
});

test("stream messages count as blocked sends until taken: 70 small ones waiting, then 20 sends; all arrive", async () => {
  const streamPath = fresh();
  const sendPath = fresh();
  const srx = await b.walk(streamPath).makeChan(0);
  const stx = await a.walk(streamPath).getChan();
  const rx = await b.walk(sendPath).makeChan<number>(0);
  const tx = await a.walk(sendPath).getChan<number>();
  // Each message ends at once: its stream closes, but its send waits for a receiver at the server.
  const writers = Array.from({ length: 70 }, (_, i) => {
    const w = stx.sendStream();
    w.end(`message ${i}`);
    return w;
  });
  const t0 = Date.now();
  while ((await srx.stat()).waitingSenders < BOUND) {
    assert.ok(Date.now() - t0 < 10_000, "stream messages never reached the server");
    await new Promise((r) => setTimeout(r, 20));
  }
  // The daemon now holds BOUND blocked sends of this connection: the library keeps the rest here.
  assert.equal((await srx.stat()).waitingSenders, BOUND);
  const sends = Array.from({ length: 20 }, (_, i) => tx.send(i));
  const texts = await messages(srx, 70);
  const got: number[] = [];
  for await (const v of rx.iterate()) {
    got.push(v);
    if (got.length === 20) break;
  }
  assert.deepEqual(
    texts,
    Array.from({ length: 70 }, (_, i) => `message ${i}`),
  );
  assert.deepEqual(
    got,
    Array.from({ length: 20 }, (_, i) => i),
  );
  await Promise.all([...writers.map((w) => w.sent), ...sends]);
  assert.equal(d.stderr().includes("too many"), false, d.stderr());
});

test("60 selects at once with 50 allowed: the rest register in order as earlier ones end; a default one does not wait", async () => {
  const pairs = await Promise.all(
    Array.from({ length: 60 }, async () => {
      const path = fresh();
      const tx = await b.walk(path).makeChan<number>(1);
      const rx = await a.walk(path).getChan<number>();
      return { tx, rx };
    }),
  );
  const aborter = new AbortController();
  const state: string[] = Array.from({ length: 60 }, () => "waiting");
  const selects = pairs.map(({ rx }, i) =>
    select([rx.recvCase()], i === 55 ? { signal: aborter.signal } : undefined).then(
      (r) => {
        state[i] = `took ${r.value}`;
      },
      (e: Error) => {
        state[i] = `failed: ${e.message}`;
      },
    ),
  );
  const settle = () => new Promise((r) => setTimeout(r, 300));
  // Select 55 waits in the client; it is withdrawn there.
  aborter.abort(new Error("withdrawn"));
  // Values for the ten held back: none is taken while 50 selects are open at the server.
  for (let i = 50; i < 60; i++) await pairs[i]?.tx.send(i);
  await settle();
  assert.deepEqual(state.slice(50), [...Array(5).fill("waiting"), "failed: withdrawn", ...Array(4).fill("waiting")]);
  // A select with a default whose case is ready, while 50 are open there: it returns at once, its
  // case counted as not ready, and the value stays in the channel.
  const extra = await b.walk(fresh()).makeChan<number>(1);
  await extra.send(99);
  const ex = await a.walk(extra.path).getChan<number>();
  assert.equal((await select([ex.recvCase()], { default: true })).index, -1);
  assert.equal((await ex.stat()).len, 1);
  // Ten of the first fifty end: the nine still held back register, in order, and take their values.
  for (let i = 0; i < 10; i++) await pairs[i]?.tx.send(i);
  await settle();
  assert.deepEqual(
    state.slice(0, 10),
    Array.from({ length: 10 }, (_, i) => `took ${i}`),
  );
  for (let i = 50; i < 60; i++) assert.equal(state[i], i === 55 ? "failed: withdrawn" : `took ${i}`, `select ${i}`);
  assert.equal((await pairs[55]?.tx.stat())?.len, 1, "the withdrawn select took nothing");
  for (let i = 10; i < 50; i++) await pairs[i]?.tx.send(i);
  await Promise.all(selects);
  for (let i = 10; i < 50; i++) assert.equal(state[i], `took ${i}`);
  // With room again, the default select takes the ready value.
  assert.deepEqual(await select([ex.recvCase()], { default: true }), { index: 0, value: 99 });
  assert.equal(d.stderr().includes("too many"), false, d.stderr());
});

test("over a broken connection, selects open at the server fail (outcome unknown); ones held back here register on the new one", async () => {
  const relay = await cuttingRelay(Number(/:(\d+)\//.exec(d.url)?.[1]));
  const c = await dial(`${relay.url}/${d.id}`);
  try {
    const pairs = await Promise.all(
      Array.from({ length: BOUND + 5 }, async () => {
        const path = fresh();
        const tx = await b.walk(path).makeChan<number>(1);
        const rx = await c.walk(path).getChan<number>();
        return { tx, rx };
      }),
    );
    const outcomes = Promise.allSettled(pairs.map(({ rx }) => select([rx.recvCase()])));
    await new Promise((r) => setTimeout(r, 200));
    relay.cut();
    for (const [i, { tx }] of pairs.entries()) await tx.send(i);
    const results = await outcomes;
    for (const [i, r] of results.entries()) {
      if (i < BOUND) {
        assert.equal(r.status, "rejected", `select ${i}`);
        assert.equal((r as PromiseRejectedResult).reason.code, "ServerGone");
      } else assert.deepEqual((r as PromiseFulfilledResult<unknown>).value, { index: 0, value: i }, `select ${i}`);
    }
  } finally {
    await c.close();
    relay.close();
  }
});

test("sends carried over a broken connection beyond the bound (a channel filled meanwhile): 50 wait at the server, the rest here; all arrive in order", async () => {
  const relay = await cuttingRelay(Number(/:(\d+)\//.exec(d.url)?.[1]));
  const c = await dial(`${relay.url}/${d.id}`);
  try {
    const path = fresh();
    const rx = await b.walk(path).makeChan<string>(200);
    const tx = await c.walk(path).getChan<string>();
    const pathY = fresh();
    const ry = await b.walk(pathY).makeChan<number>(0);
    const ty = await c.walk(pathY).getChan<number>();
    // The first send gets the connection credits for the channel's buffer.
    await tx.send("first");
    assert.equal(await rx.recv(), "first");
    // 120 sends leave c and are held in the relay, then lost with the connection: c keeps them.
    relay.pause();
    const sends = Array.from({ length: 120 }, (_, i) => tx.send(`c${i}`));
    // And 50 unbuffered sends on another channel: with them, every send carried over waits here at
    // first (the channel opened first goes first).
    const blocked = Array.from({ length: BOUND }, (_, i) => ty.send(i));
    await new Promise((r) => setTimeout(r, 100));
    relay.cut();
    // Meanwhile another client fills the channel, so every send c carries over blocks there.
    await Promise.all(Array.from({ length: 200 }, (_, i) => rx.send(`b${i}`)));
    relay.resume();
    const got: string[] = [];
    for await (const v of rx.iterate({ prefetch: 16 })) {
      got.push(v);
      if (got.length === 320) break;
    }
    await Promise.all(sends);
    const gotY: number[] = [];
    for (let i = 0; i < BOUND; i++) gotY.push(await ry.recv());
    await Promise.all(blocked);
    assert.deepEqual(
      gotY,
      Array.from({ length: BOUND }, (_, i) => i),
    );
    assert.deepEqual(got, [
      ...Array.from({ length: 200 }, (_, i) => `b${i}`),
      ...Array.from({ length: 120 }, (_, i) => `c${i}`),
    ]);
    assert.equal(d.stderr().includes("too many"), false, d.stderr());
  } finally {
    await c.close();
    relay.close();
  }
});
