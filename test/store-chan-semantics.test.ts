// test-runner: heavy (a NATS cluster, leases with a 3 s TTL and timed takeovers)
// Go channel semantics on a replicated channel (DESIGN §3.1, §12) through the library, with the
// daemons and the 3-node JetStream cluster in their own processes; the last test takes the store
// away and shows that /@ fails clearly while ordinary channels keep working.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "nats";
import { keyOf } from "../src/daemon/store.ts";
import {
  AnchorBusy,
  ChannelAborted,
  ChannelClosed,
  type Client,
  dial,
  type ReplicatedChan,
  StoreUnavailable,
} from "../src/index.ts";
import { killAll } from "./helpers/daemon.ts";
import { type StoreCircuit, startStoreCircuit } from "./helpers/store.ts";
import { state as settledIn } from "./helpers/wait.ts";

after(killAll);

let n = 0;
const fresh = () => `/@/sem/q${++n}`;

/** How `p` stands after 300 ms (or `ms`). */
const state = (p: Promise<unknown>, ms = 300) => settledIn(p, ms);

describe("a replicated channel keeps Go's semantics", () => {
  let sc: StoreCircuit;
  let ca: Client;
  let cb: Client;
  before(async () => {
    sc = await startStoreCircuit(2);
    ca = await dial(sc.daemons[0]!.url);
    cb = await dial(sc.daemons[1]!.url);
  });
  after(async () => {
    await ca?.close();
    await cb?.close();
    await sc?.stop();
  });

  test("values of every kind come back exactly, in FIFO order, across daemons", async () => {
    const p = fresh();
    const tx = await ca.walk(p).makeChan(16, { replicas: 3 });
    const rx = (await cb.walk(p).get()) as ReplicatedChan;
    assert.equal(rx.cap, 16);
    assert.equal(rx.replicas, 3);
    const values = [1, "two", { three: [3n, null, true] }, Buffer.from([4, 4]), new Date(5)];
    for (const v of values) await tx.send(v);
    for (const v of values) assert.deepEqual(await rx.recv(), v);
    await assert.rejects(ca.walk(p).makeChan(1, { replicas: 3 }), AnchorBusy);
    await tx.scrub();
  });

  test("openChan under /@: producer and consumer racing through two daemons get the same channel", async () => {
    const p = fresh();
    const [x, y] = await Promise.all([
      ca.walk(p).openChan<string>(4, { replicas: 3 }),
      cb.walk(p).openChan<string>(8, { replicas: 3 }),
    ]);
    assert.equal(x.cap, y.cap, "one channel, one capacity");
    await x.send("same");
    assert.equal(await y.recv(), "same");
    await x.scrub();
  });

  test("a send into a full buffer waits until a receive makes room", async () => {
    const ch = await ca.walk(fresh()).makeChan(2, { replicas: 3 });
    await ch.send("a");
    await ch.send("b");
    const third = ch.send("c");
    assert.equal(await state(third), "pending");
    assert.equal((await ch.stat()).waitingSenders, 1);
    assert.equal(await ch.recv(), "a");
    await third;
    const s = await ch.stat();
    assert.deepEqual([s.len, s.waitingSenders], [2, 0]);
    await ch.scrub();
  });

  test("a receive waits for a send; cap 0 hands over directly", async () => {
    const p = fresh();
    const ch = await ca.walk(p).makeChan(0, { replicas: 1 });
    const other = (await cb.walk(p).get()) as ReplicatedChan<string>;
    const sent = ch.send("x");
    assert.equal(await state(sent), "pending", "an unbuffered send waits for a receiver");
    assert.equal(await other.recv(), "x");
    await sent;
    const got = other.recv();
    assert.equal(await state(got), "pending");
    await ch.send("y");
    assert.equal(await got, "y");
    await ch.scrub();
  });

  test("an aborted receive consumed nothing; an aborted send delivered nothing", async () => {
    const ch = await ca.walk(fresh()).makeChan(1, { replicas: 3 });
    await assert.rejects(ch.recv({ signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });
    await ch.send("kept");
    await assert.rejects(ch.send("dropped", { signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });
    assert.equal(await ch.recv(), "kept");
    assert.equal(await state(ch.recv({ signal: AbortSignal.timeout(500) }), 1000), "rejected");
    assert.equal((await ch.stat()).len, 0);
    await ch.scrub();
  });

  test("close: sends fail, the buffer drains, iterate with prefetch ends", async () => {
    const ch = await ca.walk(fresh()).makeChan(8, { replicas: 3 });
    for (let i = 0; i < 5; i++) await ch.send(i);
    await ch.close();
    await assert.rejects(ch.send(9), ChannelClosed);
    await assert.rejects(ch.close(), ChannelClosed);
    const got: unknown[] = [];
    for await (const v of ch.iterate({ prefetch: 4 })) got.push(v);
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    await assert.rejects(ch.recv(), ChannelClosed);
    assert.equal((await ch.stat()).closed, true);
    await ch.scrub();
  });

  test("consume hands each value in order; a throw stops it and leaves the rest in the channel", async () => {
    const ch = await ca.walk(fresh()).makeChan(8, { replicas: 3 });
    for (let i = 0; i < 6; i++) await ch.send(i);
    const got: unknown[] = [];
    const stop = new Error("stop at 2");
    await assert.rejects(
      ch.consume(
        (v) => {
          got.push(v);
          if (v === 2) throw stop;
        },
        { prefetch: 4 },
      ),
      (e) => e === stop,
    );
    await sleep(300);
    await ch.close();
    await ch.consume((v) => void got.push(v), { prefetch: 4 });
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5]);
    await ch.scrub();
  });

  test("a loop that breaks out of iterate leaves the values it did not take in the channel", async () => {
    const ch = await ca.walk(fresh()).makeChan(8, { replicas: 3 });
    for (let i = 0; i < 6; i++) await ch.send(i);
    const got: unknown[] = [];
    for await (const v of ch.iterate({ prefetch: 4 })) {
      got.push(v);
      if (got.length === 2) break;
    }
    await sleep(300);
    const rest: unknown[] = [];
    for (let i = 0; i < 4; i++) rest.push(await ch.recv());
    assert.deepEqual([...got, ...rest], [0, 1, 2, 3, 4, 5]);
    await ch.scrub();
  });

  test("scrub fails blocked operations with ChannelAborted and removes the anchor", async () => {
    const p = fresh();
    const ch = await ca.walk(p).makeChan(1, { replicas: 3 });
    const other = (await cb.walk(p).get()) as ReplicatedChan;
    const blocked = other.recv();
    assert.equal(await state(blocked), "pending");
    await ch.scrub();
    await assert.rejects(blocked, ChannelAborted);
    assert.equal(await ca.walk(p).get(), null);
  });

  test("acknowledged values are trimmed from the channel's log; what is still needed stays", async () => {
    const p = fresh();
    const ch = await ca.walk(p).makeChan<number>(2000, { replicas: 3 });
    const N = 1200;
    // Twelve rounds of 100 concurrent sends: a few records each (the sends that come while two
    // appends are in flight share the next record).
    for (let r = 0; r < 12; r++) await Promise.all(Array.from({ length: 100 }, (_, i) => ch.send(r * 100 + i)));
    const got: number[] = [];
    for await (const v of ch.iterate({ prefetch: 32 })) {
      got.push(v);
      if (got.length === N - 10) break;
    }
    assert.deepEqual(
      got,
      Array.from({ length: N - 10 }, (_, i) => i),
    );
    const nc = await connect({ servers: sc.nats.nodes.map((x) => `127.0.0.1:${x.port}`) });
    try {
      const e = await (await nc.jetstream().views.kv("circuit_tree")).get(keyOf(["@", ...p.split("/").slice(2)]));
      const stream = (JSON.parse(Buffer.from(e!.value).toString()) as { stream: string }).stream;
      const jsm = await nc.jetstreamManager();
      // The values left in the log's value records, and the types of its records.
      const log = async () => {
        const info = await jsm.streams.info(stream);
        let values = 0;
        const kinds: string[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
          if (!m) continue; // trimmed inside the stream (the ids' records stay)
          const t = m.header.get("C-T");
          kinds.push(t);
          if (t === "b") values += Number(m.header.get("C-N"));
        }
        return { values, kinds: kinds.join("") };
      };
      // Trims at 512 and 1024 acknowledgements drop the records whose values are all
      // acknowledged: left are the records from the one holding the oldest value still needed
      // (about the 1025th, with those delivered ahead) — each record holds at most 100 here.
      let l = await log();
      for (let i = 0; i < 20 && l.values > N - 1024 + 100; i++) {
        await sleep(100);
        l = await log();
      }
      assert.ok(l.values <= N - 1024 + 100, `${l.values} values left in the log (${l.kinds})`);
      assert.ok(l.values >= 10, `the values not acknowledged are still there: ${l.values}`);
      // The ids of the trimmed values are kept (a retried send is stored once), in records of their own.
      assert.equal(l.kinds.replace(/[^d]/g, ""), "dd", `one record of trimmed ids per trim: ${l.kinds}`);
    } finally {
      await nc.close();
    }
    const rest: number[] = [];
    for (let i = 0; i < 10; i++) rest.push(await ch.recv());
    assert.deepEqual(
      rest,
      Array.from({ length: 10 }, (_, i) => N - 10 + i),
    );
    await ch.scrub();
  });

  test("a store that goes away fails /@ operations with StoreUnavailable in bounded time; ordinary channels work", async () => {
    const ch = await ca.walk(fresh()).makeChan(4, { replicas: 3 });
    await ch.send("before");
    const plain = await ca.walk(`/${ca.serverId}/plain`).makeChan(1);
    await Promise.all(sc.nats.nodes.map((node) => node.kill()));
    const t0 = performance.now();
    await assert.rejects(ch.send("after"), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailable, `got ${(err as Error)?.name}: ${(err as Error)?.message}`);
      return true;
    });
    const took = performance.now() - t0;
    assert.ok(took < 15_000, `failed after ${Math.round(took)} ms`);
    await plain.send("still");
    assert.equal(await plain.recv(), "still");
  });
});
