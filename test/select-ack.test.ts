// A value a select takes is acknowledged like a recv's (DESIGN §3.1, docs/select.md): selecting
// consumer processes killed with SIGKILL at random moments while a producer fills the channels lose
// nothing; a value shows up twice only if a killed consumer had it and had not acknowledged it.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, type Client, dial } from "../src/index.ts";
import { type Daemon, exited, killAll, killEach, onLines, ROOT, running, startDaemon } from "./helpers/daemon.ts";

const fixture = new URL("./fixtures/select-consumer.mjs", import.meta.url).pathname;

let d: Daemon;
let client: Client;
const children = new Set<ChildProcess>();

before(async () => {
  d = await startDaemon();
  client = await dial(d.url);
});

after(async () => {
  await killEach(children);
  await client?.close();
  await killAll();
});

interface Consumer {
  proc: ChildProcess;
  /** Values it printed, in order. */
  got: number[];
  killed: boolean;
  /** It printed "ready": its selects are running. */
  started: boolean;
  ready: Promise<void>;
}

function consumer(paths: string[]): Consumer {
  const proc = spawn(process.execPath, [fixture, d.url, ...paths], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(proc);
  const c: Consumer = { proc, got: [], killed: false, started: false, ready: Promise.resolve() };
  c.ready = new Promise((resolve) => {
    onLines(proc, (l) => {
      if (l === "ready") {
        c.started = true;
        resolve();
      } else c.got.push(Number(l));
    });
    proc.once("exit", () => resolve());
  });
  return c;
}

test("selecting consumers killed -9 at random moments lose no value", async () => {
  const KILLS = 8;
  const base = `/${d.id}/sel-ack`;
  const a = await client.walk(`${base}/a`).makeChan<number>(64);
  const b = await client.walk(`${base}/b`).makeChan<number>(64);
  const paths = [a.path, b.path];
  const consumers: Consumer[] = [consumer(paths), consumer(paths), consumer(paths)];
  await Promise.all(consumers.map((c) => c.ready));

  // Kills at random moments while the consumers work: the producer keeps both buffers full, so a
  // consumer is always somewhere in a select, and the moment between a value being taken and the
  // program having it is often hit (before the fix, values were lost that way). Each victim is a
  // consumer that is up and selecting; a fresh one replaces it.
  const deadline = Date.now() + 30_000;
  let kills = 0;
  const killer = (async () => {
    while (kills < KILLS && Date.now() < deadline) {
      await sleep(200 + Math.random() * 1000);
      const live = consumers.filter((c) => c.started && !c.killed && running(c.proc));
      if (live.length === 0) continue;
      const victim = live[Math.floor(Math.random() * live.length)] as Consumer;
      victim.killed = true;
      victim.proc.kill("SIGKILL");
      kills++;
      consumers.push(consumer(paths));
    }
    await sleep(300);
  })();
  let done = false;
  void killer.finally(() => {
    done = true;
  });

  const chans: Chan<number>[] = [a, b];
  let N = 0;
  while (!done) {
    await (chans[N % 2] as Chan<number>).send(N);
    N++;
  }
  await killer;
  await a.close();
  await b.close();
  // The survivors drain both channels and exit.
  const survivors = consumers.filter((c) => !c.killed);
  await Promise.race([
    Promise.all(survivors.map((c) => exited(c.proc))),
    sleep(30_000, undefined, { ref: false }).then(() =>
      assert.fail("the surviving consumers did not drain the channels within 30 s"),
    ),
  ]);
  for (const c of survivors) assert.equal(c.proc.exitCode, 0, "a surviving consumer failed");

  const seen = new Map<number, number>();
  for (const c of consumers) for (const v of c.got) seen.set(v, (seen.get(v) ?? 0) + 1);
  const lost = [];
  for (let i = 0; i < N; i++) if (!seen.has(i)) lost.push(i);
  assert.deepEqual(lost, [], `${lost.length} of ${N} values lost after ${kills} kills`);
  // A duplicate is the last value a killed consumer printed: it had it, and died before its
  // acknowledgement left.
  const lastOfKilled = new Set(consumers.filter((c) => c.killed && c.got.length > 0).map((c) => c.got.at(-1)));
  const dups = [...seen].filter(([, n]) => n > 1);
  for (const [v, n] of dups) {
    assert.equal(n, 2, `value ${v} seen ${n} times`);
    assert.ok(lastOfKilled.has(v), `value ${v} seen twice but no killed consumer had it last`);
  }
  assert.ok(kills >= 6, `only ${kills} kills happened within 30 s`);
  assert.ok(dups.length <= kills);
  const sa = await a.stat();
  const sb = await b.stat();
  assert.equal(sa.len + sb.len, 0);
  assert.equal(sa.numRecv + sb.numRecv, N, "every value was received for good exactly once");
  console.log(`# ${N} values, ${kills} kills of selecting consumers: 0 lost, ${dups.length} seen twice`);
});
