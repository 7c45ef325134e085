// Credited sends that leave a client in one write share one promise (Connection.synced): it
// resolves once the daemon has stored the last of them, every value arrives once and in order,
// a durable channel's sends keep promises of their own, and send sequence numbers are compared
// around their wrap from 2^32 − 1 to 1 (the client's acknowledgements and the daemon's record of
// what it stored). Against a daemon in its own process.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { ChanState } from "../src/client/kept-sends.ts";
import { type Chan, type Client, dial } from "../src/index.ts";
import { seqAtMost } from "../src/wire/protocol.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";

const dir = mkdtempSync(join(tmpdir(), "circuit-shared-"));
let d: Daemon;
let producer: Client;
let consumer: Client;
let n = 0;

before(async () => {
  d = await startDaemon(["--data", dir]);
  [producer, consumer] = await Promise.all([dial(d.url), dial(d.url)]);
});

after(async () => {
  await Promise.all([producer?.close(), consumer?.close()]);
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

const bytes = (i: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setUint32(0, i);
  return b;
};
const num = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);

async function chan(cap: number, durable = false): Promise<{ tx: Chan<Uint8Array>; rx: Chan<Uint8Array> }> {
  const path = `/${d.id}/shared${++n}`;
  const tx = await producer.walk(path).makeChan<Uint8Array>(cap, { durable });
  const rx = (await consumer.walk(path).getChan()) as Chan<Uint8Array>;
  return { tx, rx };
}

/** The client's send state of a channel (its sequence numbers). */
const stateOf = (ch: Chan<Uint8Array>) => (ch as unknown as { st: ChanState }).st;

async function take(rx: Chan<Uint8Array>, count: number): Promise<number[]> {
  const got: number[] = [];
  for await (const v of rx.iterate({ prefetch: 64 })) {
    got.push(num(v));
    if (got.length === count) break;
  }
  return got;
}

test("seqAtMost counts around the wrap", () => {
  assert.equal(seqAtMost(5, 5), true);
  assert.equal(seqAtMost(4, 5), true);
  assert.equal(seqAtMost(6, 5), false);
  assert.equal(seqAtMost(0xffffffff, 1), true, "2^32 − 1 comes before 1");
  assert.equal(seqAtMost(1, 0xffffffff), false);
  assert.equal(seqAtMost(0xfffffff0, 0x10), true);
});

test("sends written out together share a promise that resolves once all of them are stored", async () => {
  const { tx, rx } = await chan(1024);
  // The first send goes as one that may block (no credit yet); its answer brings credit.
  await tx.send(bytes(0));
  const ps = Array.from({ length: 300 }, (_, i) => tx.send(bytes(i + 1)));
  const distinct = new Set(ps);
  assert.ok(distinct.size < ps.length, `${distinct.size} promises for ${ps.length} sends`);
  // Each shared promise resolves once the last send sharing it is in the buffer (nothing is taken
  // out meanwhile, so the length counts them).
  for (const p of distinct) {
    await p;
    assert.ok((await tx.stat()).len >= ps.lastIndexOf(p) + 2, "every send of the promise is stored");
  }
  assert.equal((await tx.stat()).len, 301);
  assert.deepEqual(
    await take(rx, 301),
    Array.from({ length: 301 }, (_, i) => i),
  );
});

test("a big value leaves in writes of its own, and so does not share a promise with its neighbours", async () => {
  const { tx, rx } = await chan(1024);
  await tx.send(bytes(0));
  const big = new Uint8Array(100_000).fill(7);
  const ps = [tx.send(bytes(1)), tx.send(bytes(2)), tx.send(big), tx.send(bytes(3)), tx.send(bytes(4))];
  assert.equal(ps[0], ps[1], "two small sends in one write");
  assert.notEqual(ps[1], ps[2]);
  assert.notEqual(ps[2], ps[3], "the sends after the big one leave in the next write");
  assert.equal(ps[3], ps[4]);
  await Promise.all(ps);
  const got: Uint8Array[] = [];
  for await (const v of rx.iterate({ prefetch: 8 })) {
    got.push(v);
    if (got.length === 6) break;
  }
  assert.deepEqual(
    got.map((v) => (v.length === big.length ? "big" : num(v))),
    [0, 1, 2, "big", 3, 4],
  );
});

test("a durable channel's sends keep promises of their own", async () => {
  const { tx, rx } = await chan(1024, true);
  await tx.send(bytes(0));
  const ps = Array.from({ length: 100 }, (_, i) => tx.send(bytes(i + 1)));
  assert.equal(new Set(ps).size, ps.length);
  await Promise.all(ps);
  assert.deepEqual(
    await take(rx, 101),
    Array.from({ length: 101 }, (_, i) => i),
  );
});

for (const cap of [0, 4]) {
  // A send lost at the wrap leaves the receiver waiting: the timeout makes that this test's failure.
  test(`sends across the wrap of sequence numbers are all stored once, in order (capacity ${cap})`, {
    timeout: 15_000,
  }, async () => {
    await acrossTheWrap(cap);
  });
}

/**
 * Sends that may block (all of them on an unbuffered channel; on a small buffer, some among the
 * credited ones) are checked by the daemon against the highest sequence number it stored from this
 * client: 1 after 2^32 − 1 is a new send, not one stored before.
 */
async function acrossTheWrap(cap: number): Promise<void> {
  const { tx, rx } = await chan(cap);
  stateOf(tx).seq = 0xffffffff - 40;
  const count = 400;
  const got = take(rx, count);
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    inFlight.push(tx.send(bytes(i)));
    if (inFlight.length >= 32) await inFlight.shift();
  }
  await Promise.all(inFlight);
  assert.ok(stateOf(tx).seq < 1000, `the sequence numbers wrapped (now ${stateOf(tx).seq})`);
  assert.deepEqual(
    await got,
    Array.from({ length: count }, (_, i) => i),
  );
  assert.equal((await tx.stat()).len, 0);
}
