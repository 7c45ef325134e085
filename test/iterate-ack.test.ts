// Many producers into one channel that iterating consumers drain with a prefetch, the consumers
// killed with SIGKILL at random moments: a value handed to a consumer is acknowledged only from a
// later turn of its loop, so one that dies gives back what it had not acknowledged (prefetched
// values, and the ones its loop got since its last acknowledgement). Nothing is lost; a value shows
// up twice only if a killed consumer printed it among its last unacknowledged ones. The same with
// consumers that take each value in a function passed to Chan.consume.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, exited, killAll, killEach, onLines, ROOT, running, startDaemon } from "./helpers/daemon.ts";

const fixture = new URL("./fixtures/chan-client.ts", import.meta.url).pathname;

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

const PREFETCH = 32;

interface Consumer {
  proc: ChildProcess;
  /** Values it printed ("PID I"), in order. */
  got: string[];
  killed: boolean;
  /** It printed "ready" (or exited). */
  ready: Promise<void>;
}

function start(path: string, mode: string, arg: string, onLine: (l: string) => void): ChildProcess {
  const proc = spawn(process.execPath, ["--import", "tsx", fixture, d.url, path, mode, arg], {
    cwd: ROOT,
    // Consumers slower than the producers: the buffer stays full and each has values prefetched
    // and values not yet acknowledged when it is killed.
    env: { ...process.env, CONSUME_US: "150" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(proc);
  onLines(proc, onLine);
  return proc;
}

function consumer(path: string, mode: string): Consumer {
  const c = { got: [], killed: false } as unknown as Consumer;
  c.ready = new Promise((resolve) => {
    c.proc = start(path, mode, String(PREFETCH), (l) => {
      if (l === "ready") resolve();
      else c.got.push(l);
    });
    c.proc.once("exit", () => resolve());
  });
  return c;
}

/** Consumers running fixture mode `mode` (iterate: consume; Chan.consume: consume-fn), killed and replaced. */
async function killConsumers(mode: string, label: string): Promise<void> {
  const N = 6000;
  const PRODUCERS = 4;
  const KILLS = 6;
  const x = await client.walk(`/${d.id}/iter-ack-${mode}`).makeChan<[number, number]>(64);
  const consumers = [consumer(x.path, mode), consumer(x.path, mode), consumer(x.path, mode)];
  await Promise.all(consumers.map((c) => c.ready));
  const producers = Array.from({ length: PRODUCERS }, () => start(x.path, "produce-report", String(N), () => {}));
  let producing = true;
  const produced = Promise.all(producers.map(exited)).finally(() => {
    producing = false;
  });

  // Each victim is a consumer that is up and iterating; a fresh one replaces it. The producers
  // keep the buffer full, so a victim has values prefetched and values not yet acknowledged.
  let kills = 0;
  const deadline = Date.now() + 60_000;
  while (producing && kills < KILLS && Date.now() < deadline) {
    await sleep(100 + Math.random() * 300);
    const live = consumers.filter((c) => c.got.length > 0 && !c.killed && running(c.proc));
    if (!producing || live.length === 0) continue;
    const victim = live[Math.floor(Math.random() * live.length)] as Consumer;
    victim.killed = true;
    victim.proc.kill("SIGKILL");
    kills++;
    consumers.push(consumer(x.path, mode));
  }
  for (const p of await produced) assert.equal(p.code, 0, "a producer failed");
  await x.close();
  const survivors = consumers.filter((c) => !c.killed);
  await Promise.race([
    Promise.all(survivors.map((c) => exited(c.proc))),
    sleep(30_000, undefined, { ref: false }).then(() =>
      assert.fail("the survivors did not drain the channel within 30 s"),
    ),
  ]);
  for (const c of survivors) assert.equal(c.proc.exitCode, 0, "a surviving consumer failed");

  // Every value every producer sent (all its sends completed: it exited 0) was printed somewhere.
  const seen = new Set<string>();
  for (const c of consumers) for (const v of c.got) seen.add(v);
  const lost: string[] = [];
  for (const p of producers) for (let i = 0; i < N; i++) if (!seen.has(`${p.pid} ${i}`)) lost.push(`${p.pid} ${i}`);
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${PRODUCERS * N} values lost after ${kills} kills`);
  // A value comes again only after a killed consumer had it unacknowledged, so among the last values
  // its loop got: an acknowledgement covers PREFETCH / 2 values and leaves in the event loop's next
  // turn, while the loop may take every prefetched value without yielding; 2 × PREFETCH bounds them.
  // So of a value's sightings, at most one lies outside a killed consumer's last 2 × PREFETCH (the
  // one that took it for good), and no consumer that lived saw it twice.
  const outside = new Map<string, number>();
  let again = 0;
  for (const c of consumers) {
    const recent = c.killed ? new Set(c.got.slice(-2 * PREFETCH)) : new Set<string>();
    for (const v of c.got) if (!recent.has(v)) outside.set(v, (outside.get(v) ?? 0) + 1);
  }
  for (const [v, n] of outside)
    assert.ok(n <= 1, `value ${v} taken ${n} times outside a killed consumer's last values`);
  const times = new Map<string, number>();
  for (const c of consumers) for (const v of c.got) times.set(v, (times.get(v) ?? 0) + 1);
  for (const n of times.values()) if (n > 1) again++;
  assert.ok(kills >= 3, `only ${kills} kills happened while the producers sent`);
  const st = await x.stat();
  assert.equal(st.len, 0);
  assert.equal(st.numRecv, PRODUCERS * N, "every value was received for good exactly once");
  console.log(`# ${PRODUCERS * N} values, ${kills} kills of ${label} consumers: 0 lost, ${again} seen again`);
}

test("iterating consumers killed -9 at random moments while four producer processes fill the channel lose no value", () =>
  killConsumers("consume", "iterating"));

test("consume() consumers killed -9 at random moments while four producer processes fill the channel lose no value", () =>
  killConsumers("consume-fn", "consume()"));
