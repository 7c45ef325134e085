// test-runner: heavy (a NATS cluster, leases with a 3 s TTL and a timed takeover)
// select over /@ replicated channels mixed with ordinary channels on other daemons (DESIGN §3.1,
// §12; docs/select.md, "Replicated channels"), end to end: a 3-node JetStream cluster and three
// daemons with --store; the /@ channels are hosted by daemon C, the ordinary ones live on A and B,
// and every client dials A or B. Racing send selects and receive selects: every value is received
// exactly once, from the channel its send select chose (so no select completed two cases and a
// losing send case was stored nowhere); default and abort leave no trace; a closed /@ channel
// answers as an ordinary one does; `recv`/`send --timeout 0` (a select with default) work on /@
// channels from the CLI; and with C killed (-9) while selects are pending, they carry
// on through the daemon that takes the channel over, with the same counts (a value taken from C
// and not yet acknowledged when C died is delivered again: such redeliveries are counted, and
// must have been first received before the kill, or within 2 s of it: C's last answers are read
// and their selects resolve a moment after it); selects pending on a host stopped with SIGSTOP
// complete through the daemon that takes its channel over.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Chan,
  ChannelClosed,
  type Client,
  dial,
  type ReplicatedChan,
  type SelectResult,
  select,
} from "../src/index.ts";
import { assertOk, assertTimedOut, Cli } from "./helpers/cli.ts";
import { type Daemon, killAll } from "./helpers/daemon.ts";
import { type StoreCircuit, startStoreCircuit } from "./helpers/store.ts";
import { until, within } from "./helpers/wait.ts";

after(killAll);

let sc: StoreCircuit;
let A: Daemon;
let B: Daemon;
let C: Daemon;
const clients: Client[] = [];

before(async () => {
  sc = await startStoreCircuit(3);
  [A, B, C] = sc.daemons as [Daemon, Daemon, Daemon];
});

after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await sc?.stop();
});

async function client(d: Daemon): Promise<Client> {
  const c = await dial(d.url);
  clients.push(c);
  return c;
}

let n = 0;
/** A new /@ channel, hosted by `d` (the first daemon asked about it takes its lease). */
async function rchan(cap: number, d = C): Promise<string> {
  const path = `/@/sel/r${++n}`;
  const c = await client(d);
  const ch = (await c.walk(path).makeChan(cap, { replicas: 3 })) as ReplicatedChan;
  assert.equal((await ch.stat()).host, d.id, `${path} is hosted by ${d.id}`);
  return path;
}

/** A new ordinary channel on `d`. */
async function ochan(d: Daemon, cap: number): Promise<string> {
  const path = `/${d.id}/sel/o${++n}`;
  const c = await client(d);
  await c.walk(path).makeChan(cap);
  return path;
}

async function open<T>(c: Client, path: string): Promise<Chan<T> | ReplicatedChan<T>> {
  // A /@ entry just made through another daemon can take a moment to be readable here (the
  // store's KV reads may be served by a replica that has not applied the write yet).
  let el: unknown;
  await until(`${path} visible`, 5000, async () => {
    el = await c
      .walk(path)
      .get()
      .catch((err: { code?: string }) => {
        if (err.code !== "NotFound") throw err;
      });
    return el !== undefined && el !== null;
  });
  return el as Chan<T> | ReplicatedChan<T>;
}

/** Everything left in a channel, without waiting. */
async function leftIn(c: Client, path: string): Promise<unknown[]> {
  const ch = await open(c, path);
  const out: unknown[] = [];
  for (;;) {
    const r = await select([ch.recvCase()], { default: true });
    if (r.index < 0 || r.closed) return out;
    out.push(r.value);
  }
}

interface Race {
  /** value → the channel path its send select chose */
  sentTo: Map<string, string>;
  /** value → when its send select resolved */
  sentAt: Map<string, number>;
  /** value → [channel path, time] of each receipt */
  got: Map<string, [string, number][]>;
}

/**
 * Senders (dialled into A and B) each do `per` send selects over the /@ channel and one ordinary
 * channel; receivers select over all three until every value is in. `during` runs once a third
 * of the values are received (the kill).
 */
async function race(
  paths: { r: string; x: string; y: string },
  per: number,
  during?: () => Promise<void>,
): Promise<Race> {
  const sentTo = new Map<string, string>();
  const sentAt = new Map<string, number>();
  const got = new Map<string, [string, number][]>();
  const total = 4 * per;
  const stop = new AbortController();
  const senders = [A, B, A, B].map(async (d, k) => {
    const c = await client(d);
    const r = await open<string>(c, paths.r);
    const o = await open<string>(c, k % 2 ? paths.y : paths.x);
    const oPath = k % 2 ? paths.y : paths.x;
    for (let i = 0; i < per; i++) {
      const v = `s${k}-${i}`;
      const res = await within(30_000, select([r.sendCase(v), o.sendCase(v)]), `send select ${v}`);
      sentTo.set(v, res.index === 0 ? paths.r : oPath);
      sentAt.set(v, performance.now());
    }
  });
  let triggered = false;
  let distinct = 0;
  const receivers = [B, A, B].map(async (d) => {
    const c = await client(d);
    const chans = [await open<string>(c, paths.r), await open<string>(c, paths.x), await open<string>(c, paths.y)];
    const names = [paths.r, paths.x, paths.y];
    while (!stop.signal.aborted) {
      let res: SelectResult<string>;
      try {
        res = await select<string>(
          chans.map((ch) => ch.recvCase()),
          { signal: stop.signal },
        );
      } catch (err) {
        if (stop.signal.aborted) return;
        throw err;
      }
      const v = res.value as string;
      const seen = got.get(v) ?? [];
      if (seen.length === 0) distinct++;
      seen.push([names[res.index] as string, performance.now()]);
      got.set(v, seen);
      if (!triggered && during && distinct >= total / 3) {
        triggered = true;
        void during();
      }
      if (distinct === total) stop.abort(new Error("all received"));
    }
  });
  try {
    await within(35_000, Promise.all(senders), () => `senders (${distinct} of ${total} received)`);
    await within(35_000, Promise.all(receivers), () => `receivers (${distinct} of ${total} received)`);
  } finally {
    stop.abort(new Error("race over"));
  }
  assert.equal(sentTo.size, total, "every send select completed");
  return { sentTo, sentAt, got };
}

/**
 * Every value once, from the channel its send chose; redeliveries only of values first received
 * by `redeliverableUntil` (a value the dead host handed out and never saw acknowledged: its answer
 * may still be read, and its select resolve, a moment after the kill).
 */
function check(r: Race, redeliverableUntil = Number.NEGATIVE_INFINITY): number {
  let redelivered = 0;
  for (const [v, where] of r.sentTo) {
    const seen = r.got.get(v) ?? [];
    assert.ok(seen.length >= 1, `${v} (sent to ${where}) never received`);
    for (const [from] of seen) assert.equal(from, where, `${v} sent to ${where} but received from ${from}`);
    if (seen.length > 1) {
      assert.equal(seen.length, 2, `${v} received ${seen.length} times`);
      const first = (seen[0] as [string, number])[1];
      assert.ok(first <= redeliverableUntil, `${v} received twice, first at ${first}, after ${redeliverableUntil}`);
      redelivered++;
    }
  }
  for (const v of r.got.keys()) assert.ok(r.sentTo.has(v), `${v} received, never sent`);
  return redelivered;
}

test("racing send and receive selects over a /@ channel and ordinary channels on two daemons: every value once", async () => {
  const paths = { r: await rchan(2), x: await ochan(A, 1), y: await ochan(B, 0) };
  const r = await race(paths, 20);
  assert.equal(check(r), 0, "no redelivery without a failure");
  const onR = [...r.sentTo.values()].filter((p) => p === paths.r).length;
  console.log(`race: ${r.sentTo.size} values, ${onR} through the /@ channel`);
  assert.ok(onR > 0 && onR < r.sentTo.size, "both kinds of case won sometimes");
  const c = await client(A);
  for (const p of Object.values(paths)) assert.deepEqual(await leftIn(c, p), [], `${p} is empty`);
});

test("the same race over a /@ channel of capacity 0: every value once", async () => {
  const paths = { r: await rchan(0), x: await ochan(A, 0), y: await ochan(B, 1) };
  const r = await race(paths, 10);
  assert.equal(check(r), 0, "no redelivery without a failure");
  console.log(
    `race, cap 0: ${r.sentTo.size} values, ${[...r.sentTo.values()].filter((p) => p === paths.r).length} through /@`,
  );
  const c = await client(A);
  for (const p of Object.values(paths)) assert.deepEqual(await leftIn(c, p), [], `${p} is empty`);
});

test("default: nothing ready answers -1 at once and leaves no trace; a ready /@ case is taken", async () => {
  const c = await client(A);
  const rp = await rchan(1);
  const r = await open<number>(c, rp);
  const x = await open<number>(c, await ochan(A, 1));
  const t0 = performance.now();
  assert.deepEqual(await select([r.recvCase(), x.recvCase()], { default: true }), { index: -1 });
  assert.ok(performance.now() - t0 < 1000, "default does not wait");
  const st = await r.stat();
  assert.equal(st.waitingReceivers, 0);
  await r.send(7);
  assert.deepEqual(await select([r.recvCase(), x.recvCase()], { default: true }), { index: 0, value: 7 });
  // Full: a send case with default does not happen, and its value is stored nowhere.
  await r.send(8);
  assert.deepEqual(await select([r.sendCase(9)], { default: true }), { index: -1 });
  assert.equal((await r.stat()).len, 1);
  assert.deepEqual(await leftIn(c, rp), [8]);
  assert.equal((await r.stat()).waitingSenders, 0);
});

test("abort: a pending select over /@ cases rejects and leaves nothing reserved or stored", async () => {
  const c = await client(B);
  const rp = await rchan(1);
  const r = await open<string>(c, rp);
  const x = await open<string>(c, await ochan(A, 0));
  // A pending receive, aborted: then a value sent goes to a plain receive.
  const ac = new AbortController();
  const p = select([r.recvCase(), x.recvCase()], { signal: ac.signal });
  p.catch(() => {});
  await until("the recv case waits on the host", 5000, async () => (await r.stat()).waitingReceivers === 1);
  ac.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  await until("the case is released", 5000, async () => (await r.stat()).waitingReceivers === 0);
  await r.send("a");
  assert.equal(await r.recv(), "a");
  // A pending send on a full channel, aborted: its value is stored nowhere.
  await r.send("b");
  const ac2 = new AbortController();
  const q = select([r.sendCase("lost"), x.sendCase("lost")], { signal: ac2.signal });
  q.catch(() => {});
  await until("the send case waits on the host", 5000, async () => (await r.stat()).waitingSenders === 1);
  ac2.abort(new Error("stop"));
  await assert.rejects(q, /stop/);
  await until("the send case is released", 5000, async () => (await r.stat()).waitingSenders === 0);
  assert.deepEqual(await leftIn(c, rp), ["b"]);
});

test("a value reserved for a /@ recv case that lost goes back to the head of its channel, in order", async () => {
  const c = await client(A);
  const rp = await rchan(4);
  const r = await open<string>(c, rp);
  const x = await open<string>(c, await ochan(B, 4));
  let lostR = 0;
  for (let i = 0; i < 12; i++) {
    await r.send(`a${i}`);
    await r.send(`b${i}`);
    await x.send(`x${i}`);
    const res = await select([r.recvCase(), x.recvCase()]);
    if (res.index === 0) {
      assert.equal(res.value, `a${i}`);
      assert.equal(await x.recv(), `x${i}`);
      assert.equal(await r.recv(), `b${i}`);
    } else {
      lostR++;
      assert.equal(res.value, `x${i}`);
      // The /@ case's reservation was released: the head is where it was.
      assert.equal(await r.recv(), `a${i}`);
      assert.equal(await r.recv(), `b${i}`);
    }
  }
  console.log(`reservation order: /@ case lost ${lostR} of 12 rounds`);
  assert.deepEqual(await leftIn(c, rp), []);
});

test("a closed /@ channel: a recv case reports closed once drained, a send case fails with ChannelClosed", async () => {
  const c = await client(B);
  const rp = await rchan(2);
  const r = await open<number>(c, rp);
  const x = await open<number>(c, await ochan(A, 0));
  await r.send(1);
  await r.close();
  assert.deepEqual(await select([r.recvCase(), x.recvCase()]), { index: 0, value: 1 });
  assert.deepEqual(await select([r.recvCase(), x.recvCase()]), { index: 0, closed: true });
  await assert.rejects(select([r.sendCase(2)]), ChannelClosed);
  // A pending select on it wakes up when it closes.
  const rp2 = await rchan(0);
  const r2 = await open<number>(c, rp2);
  const p = select([r2.recvCase(), x.recvCase()]);
  await until("the recv case waits", 5000, async () => (await r2.stat()).waitingReceivers === 1);
  await r2.close();
  assert.deepEqual(await within(5000, p, "select on the closing channel"), { index: 0, closed: true });
});

test("CLI: recv and send --timeout 0 on a /@ channel happen only if they can at once", async () => {
  const cli = new Cli(A);
  const rp = await rchan(1);
  assertTimedOut(await cli.run(["recv", "--timeout", "0", rp], { timeoutMs: 10_000 }));
  assertOk(await cli.run(["send", "--timeout", "0", rp], { input: "one", timeoutMs: 10_000 }));
  // Full: the second send does not happen, and is stored nowhere.
  assertTimedOut(await cli.run(["send", "--timeout", "0", rp], { input: "two", timeoutMs: 10_000 }));
  const r = await cli.run(["recv", "--timeout", "0", rp], { timeoutMs: 10_000 });
  assertOk(r);
  assert.equal(r.stdout.toString(), "one");
  // The value was acknowledged before the CLI closed its connection: it is not delivered again.
  assertTimedOut(await cli.run(["recv", "--timeout", "0", rp], { timeoutMs: 10_000 }));
});

test("kill -9 of the /@ host while selects are pending: they carry on through the new host, counts exact", async () => {
  const paths = { r: await rchan(2), x: await ochan(A, 1), y: await ochan(B, 0) };
  // Selects that only a /@ case can complete (their ordinary case is on a channel nobody else uses),
  // pending on C when it dies: receives on an empty channel, sends to a full one.
  const cw = await client(B);
  const idleR = await open<string>(cw, await ochan(A, 0));
  const idleS = await open<string>(cw, await ochan(B, 0));
  const empty = await open<string>(cw, await rchan(4));
  const full = await open<string>(cw, await rchan(1));
  await full.send("f");
  const waitingRecv = [0, 1, 2].map(() => select([empty.recvCase(), idleR.recvCase()]));
  const waitingSend = [0, 1, 2].map((i) => select([full.sendCase(`w${i}`), idleS.sendCase(`w${i}`)]));
  for (const p of [...waitingRecv, ...waitingSend]) p.catch(() => {});
  await until("the selects wait on C", 5000, async () => {
    const [e, f] = [await empty.stat(), await full.stat()];
    return e.waitingReceivers === 3 && f.waitingSenders === 3;
  });
  let killedAt = Number.POSITIVE_INFINITY;
  const r = await race(paths, 30, async () => {
    await sleep(Math.random() * 50);
    killedAt = performance.now();
    C.kill("SIGKILL");
  });
  assert.ok(Number.isFinite(killedAt), "the host was killed during the race");
  // Answers the host sent before it died can be read (and their selects resolve) a little later.
  const redelivered = check(r, killedAt + 2000);
  const c = await client(A);
  const host = (await (await open(c, paths.r)).stat()) as { host: string };
  assert.notEqual(host.host, C.id, "another daemon hosts the channel");
  const viaNewHost = [...r.sentTo].filter(([v, p]) => p === paths.r && (r.sentAt.get(v) ?? 0) > killedAt);
  const first = Math.min(...viaNewHost.map(([v]) => (r.sentAt.get(v) ?? 0) - killedAt));
  console.log(
    `after kill -9 of the host: ${r.sentTo.size} values, ${viaNewHost.length} resolved through /@ after the kill ` +
      `(first ${Math.round(first)} ms after the kill), ${redelivered} redelivered (taken, unacknowledged)`,
  );
  for (const p of Object.values(paths)) assert.deepEqual(await leftIn(c, p), [], `${p} is empty`);
  // The selects pending on C complete through the new host: each receive select gets one value
  // sent after the kill; each send select's value is stored once (the full channel yields it once).
  for (let i = 0; i < 3; i++) await empty.send(`e${i}`);
  const gotRecv = await within(20_000, Promise.all(waitingRecv), "receive selects pending at the kill");
  assert.deepEqual(
    gotRecv.map((x) => x.index),
    [0, 0, 0],
  );
  assert.deepEqual(gotRecv.map((x) => x.value).sort(), ["e0", "e1", "e2"]);
  const drained: unknown[] = [];
  for (let i = 0; i < 4; i++) drained.push(await within(20_000, full.recv(), "the full channel"));
  const sent = await within(20_000, Promise.all(waitingSend), "send selects pending at the kill");
  assert.deepEqual(
    sent.map((x) => x.index),
    [0, 0, 0],
  );
  assert.equal(drained[0], "f");
  assert.deepEqual(drained.slice(1).sort(), ["w0", "w1", "w2"]);
  assert.deepEqual(await leftIn(c, full.path), [], "each send stored once");
  assert.deepEqual(await leftIn(c, empty.path), []);
});

test("SIGSTOP of the /@ host with selects pending: they complete through the daemon that took the channel over", async () => {
  // A fourth daemon hosts this channel; C is gone by now.
  const D = await sc.add();
  const rp = await rchan(4, D);
  const cA = await client(A);
  const r = await open<string>(cA, rp);
  const idle = await open<string>(cA, await ochan(A, 0));
  const pending = [0, 1, 2].map(() => select([r.recvCase(), idle.recvCase()]));
  for (const p of pending) p.catch(() => {});
  await until("the selects wait on D", 5000, async () => (await r.stat()).waitingReceivers === 3);
  D.kill("SIGSTOP");
  const t0 = performance.now();
  try {
    // Sent through B: once D's lease has lapsed, another daemon hosts the channel.
    const s = await open<string>(await client(B), rp);
    for (let i = 0; i < 3; i++) await within(20_000, s.send(`z${i}`), "a send while the host is stopped");
    const moved = performance.now() - t0;
    D.kill("SIGCONT");
    const got = await within(20_000, Promise.all(pending), "selects pending on the stopped host");
    console.log(
      `SIGSTOP: sends through the new host after ${Math.round(moved)} ms, selects done after ${Math.round(performance.now() - t0)} ms`,
    );
    assert.deepEqual(
      got.map((x) => x.index),
      [0, 0, 0],
    );
    assert.deepEqual(got.map((x) => x.value).sort(), ["z0", "z1", "z2"]);
    assert.notEqual(((await r.stat()) as { host: string }).host, D.id);
    assert.deepEqual(await leftIn(cA, rp), []);
  } finally {
    D.kill("SIGCONT");
  }
});
