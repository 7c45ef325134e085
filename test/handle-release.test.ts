// test-runner: heavy (memory bounds)
// Handles of scrubbed elements are released (DESIGN §3.1): a connection can make and scrub
// channels forever with flat daemon memory, and a handle another connection's scrub released
// answers ChannelAborted, as the scrubbed channel did.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { type Chan, ChannelAborted, type Client, dial, select } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let a: Client;
let b: Client;

before(async () => {
  d = await startDaemon();
  a = await dial(d.url);
  b = await dial(d.url);
});

after(async () => {
  await a?.close();
  await b?.close();
  await killAll();
});

/** The daemon's resident set, from /proc. */
function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(m, "no VmRSS in /proc/PID/status");
  return Number(m[1]) * 1024;
}

/** White box: how many channels the client keeps send state for on its connection to the daemon. */
function clientChans(c: Client): number {
  const home = (c as unknown as { home: { chans: Map<number, unknown>; states: Set<unknown> } }).home;
  assert.equal(home.states.size, home.chans.size, "the client's two views of its channels differ");
  return home.chans.size;
}

test("70,000 make+scrub cycles on one connection succeed with flat daemon memory", async () => {
  const CYCLES = 70_000;
  const base = `/${d.id}/churn`;
  let next = 0;
  let done = 0;
  /** The daemon's RSS every 10,000 cycles. */
  const rss: number[] = [];
  const worker = async () => {
    while (next < CYCLES) {
      const i = next++;
      const ch = await a.walk(`${base}/c${i}`).makeChan(1);
      await ch.scrub();
      if (++done % 10_000 === 0) rss.push(rssOf(d.pid));
    }
  };
  const t0 = Date.now();
  // 64 cycles in flight at a time.
  await Promise.all(Array.from({ length: 64 }, worker));
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`# ${CYCLES} cycles in ${Date.now() - t0} ms; daemon RSS per 10,000 cycles: ${rss.map(mib)} MiB`);
  // Its heap settles at its working size over the first 10,000-20,000 cycles; from there on it
  // must stay flat (before handles were released, each cycle kept about 2.4 KB: +120 MiB here).
  const growth = (rss.at(-1) as number) - (rss[1] as number);
  assert.ok(growth < 30 * 2 ** 20, `the daemon grew by ${mib(growth)} MiB from cycle 20,000 to ${CYCLES}`);
  assert.equal(clientChans(a), 0, "the client keeps send state for scrubbed channels");
  const peek = (await a.walk(`/${d.id}`).peek()) as { elements: number };
  assert.equal(peek.elements, 0);
});

test("a handle another connection's scrub released answers ChannelAborted, and the connection lives on", async () => {
  const path = `/${d.id}/released`;
  const mine = await a.walk(path).makeChan<number>(4);
  const theirs = (await b.walk(path).get()) as Chan<number>;
  await theirs.send(1);
  const before = clientChans(b);
  await mine.scrub();
  // The release reaches b on its own connection: a round trip there has seen it.
  await b.servers();
  assert.equal(clientChans(b), before - 1, "b still keeps send state for the scrubbed channel");
  await assert.rejects(theirs.send(2), ChannelAborted);
  await assert.rejects(theirs.recv(), ChannelAborted);
  await assert.rejects(theirs.stat(), ChannelAborted);
  await assert.rejects(theirs.close(), ChannelAborted);
  await assert.rejects(select([theirs.recvCase()]), ChannelAborted);
  await assert.rejects(select([theirs.sendCase(3)]), ChannelAborted);
  const it = theirs.iterate({ prefetch: 4 });
  await assert.rejects(it.next(), ChannelAborted);
  await theirs.scrub();
  // Nothing of it broke b's connection.
  const fresh = await b.walk(`${path}2`).makeChan<number>(1);
  await fresh.send(7);
  assert.equal(await fresh.recv(), 7);
  await fresh.scrub();
});
