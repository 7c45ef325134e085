// Chan.consume against a daemon in its own process: each value handed to a function in the
// channel's order; the run settles when the channel is closed and drained; a function that returns
// a promise is not called again until it settles; a throw, a rejection or an abort stops the run
// and puts every value not handed out back at the head of the channel, in order; bad input is
// refused before anything is taken. (Killed consumers: test/iterate-ack.test.ts runs consume() ones.)
import assert from "node:assert/strict";
import type { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { setTimeout as sleep, setImmediate as tick } from "node:timers/promises";
import { type Chan, ChannelAborted, type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let producer: Client;
let consumer: Client;
let n = 0;

before(async () => {
  d = await startDaemon();
  [producer, consumer] = await Promise.all([dial(d.url), dial(d.url)]);
});

after(async () => {
  await Promise.all([producer?.close(), consumer?.close()]);
  await killAll();
});

/** from, from + 1, …, to - 1. */
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** A fresh channel of `cap`, as the producer's and the consumer's handles. */
async function chan(cap: number): Promise<{ tx: Chan<number>; rx: Chan<number> }> {
  const path = `/${d.id}/each${++n}`;
  const tx = await producer.walk(path).makeChan<number>(cap);
  const rx = (await consumer.walk(path).getChan()) as Chan<number>;
  return { tx, rx };
}

/** Sends 0 … count-1 with 64 in flight, then closes the channel if `close`. */
async function fill(tx: Chan<number>, count: number, close: boolean): Promise<void> {
  const ring: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    ring.push(tx.send(i));
    if (ring.length >= 64) await ring.shift();
  }
  await Promise.all(ring);
  if (close) await tx.close();
}

/** Closes the channel and takes everything left in it. */
async function rest(rx: Chan<number>, tx: Chan<number>): Promise<number[]> {
  await tx.close();
  const got: number[] = [];
  for await (const v of rx.iterate({ prefetch: 64 })) got.push(v);
  return got;
}

test("hands every value in order and resolves once the channel is closed and drained", async () => {
  const { tx, rx } = await chan(64);
  const got: number[] = [];
  const run = rx.consume((v) => void got.push(v), { prefetch: 64 });
  await fill(tx, 5000, true);
  await run;
  assert.deepEqual(got, range(0, 5000));
  const st = await tx.stat();
  assert.equal(st.len, 0);
  assert.equal(st.numRecv, 5000);
});

test("a function returning a promise is not called again until it settles", async () => {
  const { tx, rx } = await chan(16);
  const got: number[] = [];
  let inside = false;
  let overlaps = 0;
  const run = rx.consume(
    async (v) => {
      if (inside) overlaps++;
      inside = true;
      // Some values take several turns: the values prefetched meanwhile wait.
      if (v % 7 === 0) await sleep(1);
      else await tick();
      got.push(v);
      inside = false;
    },
    { prefetch: 32 },
  );
  await fill(tx, 600, true);
  await run;
  assert.equal(overlaps, 0, "the function ran twice at once");
  assert.deepEqual(got, range(0, 600));
});

test("a throw stops the run: it rejects with the error, and the values after it are back in the channel in order", async () => {
  const { tx, rx } = await chan(256);
  await fill(tx, 200, false);
  const boom = new Error("boom at 37");
  const got: number[] = [];
  await assert.rejects(
    rx.consume(
      (v) => {
        got.push(v);
        if (v === 37) throw boom;
      },
      { prefetch: 64 },
    ),
    (e) => e === boom,
  );
  // The value it threw on was taken; the 62 prefetched after it, and the rest, were not.
  assert.deepEqual(got, range(0, 38));
  assert.deepEqual(await rest(rx, tx), range(38, 200));
});

test("a rejected promise stops the run the same way", async () => {
  const { tx, rx } = await chan(256);
  await fill(tx, 100, false);
  const got: number[] = [];
  await assert.rejects(
    rx.consume(
      async (v) => {
        got.push(v);
        await tick();
        if (v === 10) throw new RangeError("no 10");
      },
      { prefetch: 32 },
    ),
    RangeError,
  );
  assert.deepEqual(got, range(0, 11));
  assert.deepEqual(await rest(rx, tx), range(11, 100));
});

test("an abort stops the run with the signal's reason; nothing is lost or taken twice", async () => {
  // Room for every value: the sends complete whether or not the run takes them.
  const { tx, rx } = await chan(4096);
  const ac = new AbortController();
  const got: number[] = [];
  const run = rx.consume(
    (v) => {
      got.push(v);
      if (got.length === 1000) ac.abort(new Error("enough"));
    },
    { prefetch: 128, signal: ac.signal },
  );
  const sent = fill(tx, 3000, false);
  await assert.rejects(run, /enough/);
  await sent;
  assert.deepEqual(got, range(0, 1000));
  assert.deepEqual(await rest(rx, tx), range(1000, 3000));
});

test("an abort while the function's promise is pending settles the run at once", async () => {
  const { tx, rx } = await chan(8);
  await fill(tx, 8, false);
  const ac = new AbortController();
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  const got: number[] = [];
  const run = rx.consume(
    (v) => {
      got.push(v);
      return held;
    },
    { prefetch: 4, signal: ac.signal },
  );
  while (got.length === 0) await sleep(5);
  ac.abort(new ChannelAborted("stop"));
  await assert.rejects(run, ChannelAborted);
  release();
  await tick();
  assert.deepEqual(got, [0]);
  assert.deepEqual(await rest(rx, tx), [1, 2, 3, 4, 5, 6, 7]);
});

test("bad input is refused before anything is taken", async () => {
  const { tx, rx } = await chan(4);
  await fill(tx, 3, false);
  for (const prefetch of [0, -1, 1.5, 65537, Number.NaN]) {
    await assert.rejects(
      rx.consume(() => {}, { prefetch }),
      RangeError,
    );
  }
  await assert.rejects(rx.consume(undefined as unknown as () => void), TypeError);
  const ac = new AbortController();
  ac.abort(new Error("already"));
  await assert.rejects(
    rx.consume(() => {}, { signal: ac.signal }),
    /already/,
  );
  assert.equal((await tx.stat()).len, 3);
  assert.deepEqual(await rest(rx, tx), [0, 1, 2]);
});

test("a stream message is handed over as a Readable, between the values around it", async () => {
  const path = `/${d.id}/each-stream`;
  const tx = await producer.walk(path).makeChan<unknown>(4);
  const rx = (await consumer.walk(path).getChan()) as Chan<unknown>;
  const got: unknown[] = [];
  const run = rx.consume(
    async (v) => {
      if (typeof v === "string") got.push(v);
      else {
        let bytes = 0;
        for await (const chunk of v as Readable) bytes += (chunk as Buffer).length;
        got.push(bytes);
      }
    },
    { prefetch: 4 },
  );
  await tx.send("before");
  // A stream message is sent once a receiver has taken it: the run above takes it.
  const w = tx.sendStream();
  w.end(Buffer.alloc(300_000, 9));
  await w.sent;
  await tx.send("after");
  await tx.close();
  await run;
  assert.deepEqual(got, ["before", 300_000, "after"]);
});

test("await using ends a run as a break ends a loop: it resolves and the values not handed out stay", async () => {
  const { tx, rx } = await chan(64);
  await fill(tx, 50, false);
  const got: number[] = [];
  let run: Promise<void> | undefined;
  {
    await using scoped = (await consumer.walk(rx.path).getChan()) as Chan<number>;
    run = scoped.consume(
      (v) => {
        got.push(v);
        return got.length === 10 ? sleep(50) : undefined;
      },
      { prefetch: 32 },
    );
    while (got.length < 10) await sleep(5);
  }
  await run;
  assert.deepEqual(got, range(0, 10));
  assert.deepEqual(await rest(rx, tx), range(10, 50));
});

test("a subscription's consume() hands each event: the server there, then one that joins", async () => {
  const joins = await consumer.walk(`/${d.id}/each-joins`).makeOnJoin();
  const got: string[] = [];
  const ac = new AbortController();
  const run = joins.consume(
    (p) => {
      got.push(p);
      if (got.length === 2) ac.abort(new Error("both seen"));
    },
    { signal: ac.signal },
  );
  const b = await startDaemon(["--join", d.url]);
  await assert.rejects(run, /both seen/);
  assert.deepEqual(got, [`/${d.id}`, `/${b.id}`]);
});
