// When an iterating consumer hands credit back. Loops that ran dry hand theirs back together, all
// in one write (a program iterating many channels made one write per channel before: a system
// call and a wake-up of the daemon each). At half its prefetch, a loop that still has values to go
// through hands it back at once if the connection's loops hold more values than it gives back (the
// daemon can send more while they work), else with the write of its running dry or of the turn's
// end (one write a read, not two). Observed at the client's socket writes, against a daemon in its
// own process.
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial } from "../src/index.ts";
import { T } from "../src/wire/protocol.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let consumer: Client;
let producer: Client;
/** What happened, in order: "v<i>" as the loop takes value i, "credit" for a socket write carrying RECV frames. */
const events: string[] = [];
/** RECV frames in each write that carried any. */
const recvWrites: number[] = [];
const write = Socket.prototype.write;

/** RECV frames among the whole frames of `chunk` ([u32 length][u8 type][body] each). */
function recvFrames(chunk: unknown): number {
  if (!(chunk instanceof Uint8Array)) return 0;
  const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let n = 0;
  for (let o = 0; o + 5 <= b.length; o += 4 + b.readUInt32BE(o)) if (b[o + 4] === T.RECV) n++;
  return n;
}

before(async () => {
  d = await startDaemon();
  [consumer, producer] = await Promise.all([dial(d.url), dial(d.url)]);
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    const n = recvFrames(chunk);
    if (n > 0) {
      recvWrites.push(n);
      events.push("credit");
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof write;
});

after(async () => {
  Socket.prototype.write = write;
  await Promise.all([consumer?.close(), producer?.close()]);
  await killAll();
});

/** Until `f()` holds (every 10 ms, at most 5 s). */
async function until(f: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !f(); i++) await sleep(10);
  assert.ok(f(), `timed out waiting for ${what}`);
}

test("loops over many channels that ran dry hand their credit back in one write", async () => {
  const CHANNELS = 32;
  const root = `/${consumer.serverId}/credit-many`;
  const inboxes = await Promise.all(
    Array.from({ length: CHANNELS }, (_, i) => consumer.walk(`${root}/${i}`).makeChan<number>(4)),
  );
  const outboxes = await Promise.all(inboxes.map((_, i) => producer.walk(`${root}/${i}`).getChan<number>()));
  const got = new Array<number>(CHANNELS).fill(0);
  const loops = inboxes.map(async (ch, i) => {
    for await (const _ of ch.iterate({ prefetch: 4 })) got[i] = (got[i] as number) + 1;
  });
  // Every loop has asked for its values (its opening RECV frame); from here on, credits only.
  await until(() => recvWrites.reduce((a, b) => a + b, 0) >= CHANNELS, "the loops to open");
  await sleep(50);
  recvWrites.length = 0;
  // One value into each channel, in one turn (one write from the producer).
  await Promise.all(outboxes.map((ch, i) => ch.send(i)));
  await until(() => got.every((n) => n === 1), "every loop to get its value");
  await until(() => recvWrites.reduce((a, b) => a + b, 0) >= CHANNELS, "the credits");
  await sleep(50);
  assert.equal(
    recvWrites.reduce((a, b) => a + b, 0),
    CHANNELS,
    "one credit frame for each loop",
  );
  // The values arrive together, so the loops run dry in one turn: one write, a few if the
  // daemon's write was read in pieces; one for each loop before.
  assert.ok(recvWrites.length <= 4, `credits handed back in ${recvWrites.length} writes: ${recvWrites}`);
  // Closed channels end the loops.
  await Promise.all(outboxes.map((ch) => ch.close()));
  await Promise.all(loops);
});

/** A fresh channel of capacity `cap` on the consumer's server with `n` values waiting in it. */
async function filled(name: string, cap: number, n: number) {
  const path = `/${consumer.serverId}/${name}`;
  const inbox = await consumer.walk(path).makeChan<number>(cap);
  const outbox = await producer.walk(path).getChan<number>();
  await Promise.all(Array.from({ length: n }, (_, i) => outbox.send(i)));
  return inbox;
}

test("a loop going through the values of one read hands credit back once, as it runs dry", async () => {
  // Six values waiting before the loop starts: the daemon hands all six over in one write.
  const path = `/${consumer.serverId}/credit-one-read`;
  const inbox = await consumer.walk(path).makeChan<number>(8);
  const outbox = await producer.walk(path).getChan<number>();
  await Promise.all(Array.from({ length: 6 }, (_, i) => outbox.send(i)));
  events.length = 0;
  recvWrites.length = 0;
  const loop = inbox.iterate({ prefetch: 8 })[Symbol.asyncIterator]();
  for (let i = 0; i < 6; i++) events.push(`v${(await loop.next()).value}`);
  // The loop asks for a seventh value and finds none: it has run dry.
  const seventh = loop.next();
  await sleep(50);
  // Half the prefetch (four) was taken with two values still queued, fewer than the four it gives
  // back: that credit went with the one written when the loop ran dry (two RECV frames in one
  // write), not in a write of its own mid-loop (a system call and a wake-up of the daemon more).
  // (The first write with a RECV frame opened the loop, before its first value.)
  assert.equal(events[0], "credit", `${events}`);
  const credit = events.indexOf("credit", 1);
  assert.ok(credit > events.indexOf("v5"), `a credit was written before the loop ran dry: ${events}`);
  assert.deepEqual(recvWrites, [1, 2], `RECV frames in each write: ${recvWrites}`);
  await outbox.send(6);
  assert.equal((await seventh).value, 6);
  await loop.return?.();
});

/** Takes the eight values waiting in `inbox` (prefetch 8), noting each; `between` runs after each but the last. */
async function takeEight(inbox: Awaited<ReturnType<typeof filled>>, between?: () => Promise<void>): Promise<void> {
  events.length = 0;
  let taken = 0;
  for await (const v of inbox.iterate({ prefetch: 8 })) {
    events.push(`v${v}`);
    if (++taken === 8) break;
    await between?.();
  }
}

/** The loop's first credit (after the write that opened it) left before it took its last value. */
function creditBeforeLast(): void {
  assert.equal(events[0], "credit", `${events}`);
  const credit = events.indexOf("credit", 1);
  assert.ok(credit >= 0, `no credit written: ${events}`);
  assert.ok(credit < events.indexOf("v7"), `the credit waited for the loop to run dry: ${events}`);
}

test("a loop with values left to go through on a busy connection hands credit back at once", async () => {
  // Another loop on the same connection holds twelve values it has not gone through yet.
  const other = await filled("credit-busy-other", 16, 13);
  const otherLoop = other.iterate({ prefetch: 16 })[Symbol.asyncIterator]();
  await otherLoop.next();
  await takeEight(await filled("credit-busy", 8, 8));
  // The first four taken, half the prefetch: with the connection's loops holding more values than
  // that gives back, its credit leaves before the loop goes on (the daemon can send more meanwhile).
  creditBeforeLast();
  await otherLoop.return?.();
});

test("a loop that waits between values hands its credit back at the end of the turn", async () => {
  // Work that leaves the turn (I/O, a timer) between values.
  await takeEight(await filled("credit-slow", 8, 8), () => new Promise((r) => setImmediate(r)));
  creditBeforeLast();
});
