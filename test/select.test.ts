// test-runner: heavy (idle checks after releases on other connections)
// select across machines, end to end: real daemons joined into one circuit, channels spread over
// them, clients dialled into different servers (DESIGN.md §3.1, §9; docs/select.md).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once, setMaxListeners } from "node:events";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Chan,
  ChannelClosed,
  type Client,
  dial,
  MessageTooLarge,
  type SelectResult,
  ServerGone,
  select,
} from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { type Daemon, killAll, ROOT } from "./helpers/daemon.ts";
import { until, within } from "./helpers/wait.ts";

after(killAll);

const fixture = new URL("./fixtures/select-client.ts", import.meta.url).pathname;

/** Like Promise.all, but waits for every promise, so that no rejection goes unhandled. */
async function all<T>(ps: Promise<T>[], what: () => string): Promise<T[]> {
  const rs = await Promise.allSettled(ps);
  const bad = rs.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => String(r.reason));
  if (bad.length > 0)
    throw new Error(`${what()}: ${bad.length} of ${ps.length} failed: ${[...new Set(bad)].join("; ")}`);
  return rs.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** Marks a promise as awaited later, so that a test failing before then does not also report it. */
function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

async function chanAt<T>(c: Client, path: string): Promise<Chan<T>> {
  const el = await c.walk(path).get();
  assert.equal(el?.kind, "chan", `no channel at ${path}`);
  return el as Chan<T>;
}

let seq = 0;
/** A fresh anchor path on server `d`. */
const fresh = (d: Daemon, what: string) => `/${d.id}/select/${what}-${++seq}`;

/**
 * Nothing waits on `ch`. A select resolves as soon as one case has happened; the releases of its
 * other cases travel to their servers on other connections, so they are given a moment to land.
 */
async function idle(ch: Chan): Promise<void> {
  let st = await ch.stat();
  const deadline = Date.now() + 2000;
  while ((st.waitingSenders > 0 || st.waitingReceivers > 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    st = await ch.stat();
  }
  assert.equal(st.waitingSenders, 0, `${ch.path}: ${JSON.stringify(st)}`);
  assert.equal(st.waitingReceivers, 0, `${ch.path}: ${JSON.stringify(st)}`);
}

describe("select over channels on three servers", () => {
  let ds: Daemon[] = [];
  let clients: Client[] = [];
  const extra: Client[] = [];

  before(async () => {
    ds = await circuit(3);
    clients = await Promise.all(ds.map((x) => dial(x.url)));
  });

  after(async () => {
    await Promise.all([...clients, ...extra].map((c) => c.close().catch(() => {})));
    await Promise.all(ds.map((d) => d.stop()));
  });

  const d = (i: number) => ds[i] as Daemon;
  const c = (i: number) => clients[i] as Client;
  async function dialMore(i: number): Promise<Client> {
    const cl = await dial(d(i % 3).url);
    extra.push(cl);
    return cl;
  }

  test("every value is received exactly once while senders race selecting receivers", async () => {
    const caps = [0, 3, 16];
    const paths = [0, 1, 2].map((i) => fresh(d(i), "race"));
    const made = await Promise.all(
      paths.map((p, i) =>
        c(i)
          .walk(p)
          .makeChan<string>(caps[i] as number),
      ),
    );
    const SENDERS = 8;
    const PER = 500;
    const RECEIVERS = 4;
    // Normally done in a second or two; the bound keeps a hang from eating the file's time.
    const deadline = AbortSignal.timeout(12_000);
    setMaxListeners(64, deadline);
    const sent = new Set<string>();
    const notSent = new Set<string>();
    const got = new Map<string, number>();
    const take = (v: string) => got.set(v, (got.get(v) ?? 0) + 1);

    const senders = Array.from({ length: SENDERS }, async (_, s) => {
      const cl = await dialMore(s);
      const chs = await Promise.all(paths.map((p) => chanAt<string>(cl, p)));
      for (let k = 0; k < PER; k++) {
        const v = `s${s}.${k}`;
        const i = (s + k) % 3;
        if (k % 4 === 3) {
          // A select send over two channels: exactly one of the two values goes out.
          const j = (i + 1) % 3;
          const vs = [`${v}@${i}`, `${v}@${j}`];
          const r = await select([(chs[i] as Chan<string>).sendCase(vs[0]), (chs[j] as Chan<string>).sendCase(vs[1])], {
            signal: deadline,
          });
          sent.add(vs[r.index] as string);
          notSent.add(vs[1 - r.index] as string);
        } else {
          await (chs[i] as Chan<string>).send(v, { signal: deadline });
          sent.add(v);
        }
      }
    });
    const receivers = Array.from({ length: RECEIVERS }, async (_, r) => {
      const cl = await dialMore(r + 1);
      const chs = await Promise.all(paths.map((p) => chanAt<string>(cl, p)));
      let open = [0, 1, 2];
      while (open.length > 0) {
        const res: SelectResult<string> = await select(
          open.map((i) => (chs[i] as Chan<string>).recvCase()),
          { signal: deadline },
        );
        if (res.closed) open = open.filter((_, x) => x !== res.index);
        else take(res.value as string);
      }
    });
    // And one plain receiver with a prefetch window, competing with the selects.
    const plain = (async () => {
      const ch = await chanAt<string>(await dialMore(2), paths[2] as string);
      for await (const v of ch.iterate({ prefetch: 8, signal: deadline })) take(v);
    })();

    const receiving = Promise.allSettled([...receivers, plain]);
    const progress = () => `sent ${sent.size} of ${SENDERS * PER}, received ${got.size}`;
    const sending = await within(15_000, Promise.allSettled(senders), progress);
    await Promise.all(made.map((ch) => ch.close()));
    const outcome = [...sending, ...(await within(5000, receiving, progress))];
    const failed = outcome.filter((o) => o.status === "rejected");
    const dups = [...got].filter(([, n]) => n > 1).map(([v]) => v);
    const missing = [...sent].filter((v) => !got.has(v));
    const ghosts = [...notSent].filter((v) => got.has(v));
    const left = await Promise.all(made.map((ch) => ch.stat()));
    assert.deepEqual(
      { dups, missing, ghosts, failed: failed.map((f) => String((f as PromiseRejectedResult).reason)) },
      { dups: [], missing: [], ghosts: [], failed: [] },
      `sent ${sent.size}, received ${got.size}; channels afterwards ${JSON.stringify(left)}`,
    );
    assert.equal(got.size, SENDERS * PER);
  });

  test("select-vs-select on unbuffered channels never deadlocks", async () => {
    // select([a.sendCase(x), b.recvCase()]) against select([a.recvCase(), b.sendCase(y)]): every
    // round, the two selects meet on one of the channels.
    const a = await c(0)
      .walk(fresh(d(0), "a"))
      .makeChan<string>(0);
    const b = await c(1)
      .walk(fresh(d(1), "b"))
      .makeChan<string>(0);
    const ROUNDS = 300;
    const deadline = AbortSignal.timeout(8000);
    const xa = await chanAt<string>(c(1), a.path);
    const xb = await chanAt<string>(c(1), b.path);
    const ya = await chanAt<string>(c(2), a.path);
    const yb = await chanAt<string>(c(2), b.path);
    const xs: string[] = [];
    const ys: string[] = [];
    const x = (async () => {
      for (let r = 0; r < ROUNDS; r++) {
        const res = await select([xa.sendCase(`x${r}`), xb.recvCase()], { signal: deadline });
        xs.push(res.index === 0 ? `sent x${r}` : `got ${res.value}`);
      }
    })();
    const y = (async () => {
      for (let r = 0; r < ROUNDS; r++) {
        const res = await select([ya.recvCase(), yb.sendCase(`y${r}`)], { signal: deadline });
        ys.push(res.index === 1 ? `sent y${r}` : `got ${res.value}`);
      }
    })();
    const progress = () => `rounds done: x ${xs.length}, y ${ys.length} of ${ROUNDS}`;
    await within(10_000, all([x, y], progress), progress);
    // Round r of one side met round r of the other.
    for (let r = 0; r < ROUNDS; r++) {
      const want = xs[r] === `sent x${r}` ? `got x${r}` : `sent y${r}`;
      assert.equal(ys[r], want, `round ${r}: x ${xs[r]}, y ${ys[r]}`);
    }
    await idle(a);
    await idle(b);
  });

  test("two selects on each side of two unbuffered channels all complete, each value once", async () => {
    const a = await c(0)
      .walk(fresh(d(0), "a2"))
      .makeChan<string>(0);
    const b = await c(1)
      .walk(fresh(d(1), "b2"))
      .makeChan<string>(0);
    const ROUNDS = 150;
    const deadline = AbortSignal.timeout(8000);
    const sent: string[] = [];
    const got: string[] = [];
    const side = async (who: string, home: number, sendOn: Chan<string>, recvOn: Chan<string>) => {
      const cl = await dialMore(home);
      const s = await chanAt<string>(cl, sendOn.path);
      const r = await chanAt<string>(cl, recvOn.path);
      for (let k = 0; k < ROUNDS; k++) {
        const v = `${who}.${k}`;
        const res = await select([s.sendCase(v), r.recvCase()], { signal: deadline });
        if (res.index === 0) sent.push(v);
        else got.push(res.value as string);
      }
    };
    // Each side has equally many rounds on each direction's senders and receivers, so whichever way
    // the rounds pair up, every select finds a partner.
    const progress = () => `${sent.length} sent, ${got.length} received of ${4 * ROUNDS} rounds`;
    await within(
      10_000,
      all([side("x1", 1, a, b), side("x2", 2, a, b), side("y1", 0, b, a), side("y2", 2, b, a)], progress),
      progress,
    );
    assert.deepEqual([...got].sort(), [...sent].sort());
    assert.equal(new Set(got).size, got.length);
    await idle(a);
    await idle(b);
  });

  test("an aborted or timed-out select leaves no trace", async () => {
    const a = await c(0)
      .walk(fresh(d(1), "abort-a"))
      .makeChan<string>(0);
    const b = await c(0)
      .walk(fresh(d(2), "abort-b"))
      .makeChan<string>(1);
    const t0 = Date.now();
    await assert.rejects(
      select([a.recvCase(), b.recvCase(), a.sendCase("never")], { signal: AbortSignal.timeout(150) }),
      { name: "TimeoutError" },
    );
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 2000, `gave up after ${took} ms`);
    const ac = new AbortController();
    const p = select([a.recvCase(), b.sendCase("gone")], { signal: ac.signal });
    // b has room: the send case is offered at once, but the abort comes first.
    ac.abort();
    await assert.rejects(p, { name: "AbortError" });
    // Stat travels behind the release on the same connections.
    await idle(a);
    assert.equal((await b.stat()).len, 0, "the aborted select's send happened");
    await idle(b);

    // A plain pair still matches on both channels, from other servers' clients.
    const a2 = await chanAt<string>(c(2), a.path);
    const rx = later(a2.recv({ signal: AbortSignal.timeout(5000) }));
    await a.send("after", { signal: AbortSignal.timeout(5000) });
    assert.equal(await rx, "after");
    await b.send("kept");
    // A select aborted while a value waited for it leaves the value where it was.
    const ac2 = new AbortController();
    const q = select([b.recvCase()], { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(q, { name: "AbortError" });
    assert.equal(await (await chanAt<string>(c(1), b.path)).recv({ signal: AbortSignal.timeout(5000) }), "kept");
    await idle(a);
    await idle(b);
  });

  test("with default, select never blocks: -1 when nothing is ready, the ready case when one is", async () => {
    const a = await c(0)
      .walk(fresh(d(1), "def-a"))
      .makeChan<string>(0);
    const b = await c(0)
      .walk(fresh(d(2), "def-b"))
      .makeChan<string>(1);
    assert.deepEqual(await select([a.recvCase(), b.recvCase()], { default: true }), { index: -1 });
    assert.deepEqual(await select([a.sendCase("nobody")], { default: true }), { index: -1 });
    await idle(a);
    await b.send("ready");
    assert.deepEqual(await select([a.recvCase(), b.recvCase()], { default: true }), { index: 1, value: "ready" });
    // An unbuffered channel with a blocked sender is ready.
    const blocked = later((await chanAt<string>(c(2), a.path)).send("waiting"));
    await until("the sender waits", 5000, async () => (await a.stat()).waitingSenders === 1);
    assert.deepEqual(await select([b.recvCase(), a.recvCase()], { default: true }), { index: 1, value: "waiting" });
    await blocked;
    // And so is a send case with a receiver waiting.
    const rx = later((await chanAt<string>(c(1), a.path)).recv());
    await until("the receiver waits", 5000, async () => (await a.stat()).waitingReceivers === 1);
    assert.deepEqual(await select([a.sendCase("taken")], { default: true }), { index: 0 });
    assert.equal(await rx, "taken");
    await idle(a);
    await idle(b);
  });

  test("values of every kind travel through cases, and a stream message arrives as a Readable", async () => {
    const a = await c(0)
      .walk(fresh(d(1), "kinds"))
      .makeChan<unknown>(0);
    const idleCh = await c(0)
      .walk(fresh(d(2), "kinds-idle"))
      .makeChan<unknown>(0);
    const value = { n: 2n ** 62n + 1n, at: new Date(1_700_000_000_000), bytes: new Uint8Array([0, 1, 255]), s: "é" };
    // Byte arrays come back as Buffers (a Uint8Array): compare their bytes.
    const same = (v: unknown) => {
      const o = v as typeof value;
      return { ...o, bytes: o?.bytes instanceof Uint8Array ? [...o.bytes] : o?.bytes };
    };
    const rx = later((await chanAt<unknown>(c(2), a.path)).recv({ signal: AbortSignal.timeout(5000) }));
    assert.deepEqual(await select([idleCh.recvCase(), a.sendCase(value)]), { index: 1 });
    assert.deepEqual(same(await rx), same(value));
    const tx = later((await chanAt<unknown>(c(1), a.path)).send(value));
    const got = await select([a.recvCase(), idleCh.recvCase()]);
    assert.equal(got.index, 0);
    assert.deepEqual(same(got.value), same(value));
    await tx;

    const data = randomBytes(700_000);
    const w = (await chanAt<unknown>(c(2), a.path)).sendStream();
    w.end(data);
    const r = await select([idleCh.recvCase(), a.recvCase()], { signal: AbortSignal.timeout(5000) });
    assert.equal(r.index, 1);
    assert.ok(r.value instanceof Readable, `got ${typeof r.value}`);
    assert.ok(Buffer.concat(await r.value.toArray()).equals(data), "the stream's bytes differ");
    await w.sent;
    await idle(a);
    await idle(idleCh);
  });

  test("bad arguments fail before anything is sent", async () => {
    const a = await c(0)
      .walk(fresh(d(1), "args"))
      .makeChan<unknown>(0);
    await assert.rejects(select([]), TypeError);
    await assert.rejects(select(Array.from({ length: 1025 }, () => a.recvCase())), RangeError);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(select([a.recvCase()], { signal: ac.signal }), { name: "AbortError" });
    assert.throws(() => a.sendCase(new Uint8Array(16 * 1024 * 1024 + 1)), MessageTooLarge);
    await idle(a);
  });

  for (const where of ["on two servers", "on one server"]) {
    test(`ready cases are chosen uniformly at random (${where})`, async () => {
      const ROUNDS = 400;
      const a = await c(0)
        .walk(fresh(d(1), "fair-a"))
        .makeChan<number>(ROUNDS);
      const b = await c(0)
        .walk(fresh(d(where === "on two servers" ? 2 : 1), "fair-b"))
        .makeChan<number>(ROUNDS);
      for (let i = 0; i < ROUNDS; i++) {
        await a.send(i);
        await b.send(i);
      }
      await until("both full", 5000, async () => (await a.stat()).len === ROUNDS && (await b.stat()).len === ROUNDS);
      const picked = [0, 0];
      for (let i = 0; i < ROUNDS; i++) {
        const r = await select([a.recvCase(), b.recvCase()]);
        picked[r.index] = (picked[r.index] as number) + 1;
      }
      const share = (picked[0] as number) / ROUNDS;
      assert.ok(share >= 0.4 && share <= 0.6, `case 0 chosen ${picked[0]} times, case 1 ${picked[1]} times`);
    });
  }

  test("closed channels: a recv case reports closed, a send case fails with ChannelClosed", async () => {
    const a = await c(0)
      .walk(fresh(d(1), "closed-a"))
      .makeChan<string>(0);
    const b = await c(0)
      .walk(fresh(d(2), "closed-b"))
      .makeChan<string>(0);
    const buffered = await c(0)
      .walk(fresh(d(0), "closed-c"))
      .makeChan<string>(2);
    await a.close();
    assert.deepEqual(await select([b.recvCase(), a.recvCase()]), { index: 1, closed: true });
    // A closed channel drains first.
    await buffered.send("one");
    await buffered.send("two");
    await buffered.close();
    assert.deepEqual(await select([buffered.recvCase(), b.recvCase()]), { index: 0, value: "one" });
    assert.deepEqual(await select([buffered.recvCase(), b.recvCase()]), { index: 0, value: "two" });
    assert.deepEqual(await select([buffered.recvCase(), b.recvCase()]), { index: 0, closed: true });
    // A send case on a closed channel is ready, and fails as a send would.
    await assert.rejects(select([a.sendCase("late"), b.recvCase()]), ChannelClosed);
    await assert.rejects(select([buffered.sendCase("late"), b.recvCase()]), ChannelClosed);
    const st = await buffered.stat();
    assert.equal(st.len, 0, `a select sent into a closed channel: ${JSON.stringify(st)}`);
    await idle(b);
  });

  test("a selector killed while holding reservations loses nothing", async () => {
    const q = await c(0)
      .walk(fresh(d(1), "lease-q"))
      .makeChan<string>(1);
    const u = await c(0)
      .walk(fresh(d(2), "lease-u"))
      .makeChan<string>(0);
    const child = spawn(process.execPath, ["--import", "tsx", fixture, d(0).url, q.path, u.path], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    try {
      await until("the child selects", 15_000, () => out.includes("selecting\n") || child.exitCode !== null);
      assert.ok(out.includes("selecting"), `child: ${out} ${err}`);
      // Stopped, the selector can never commit: whatever its cases are offered stays reserved.
      child.kill("SIGSTOP");
      await q.send("leased");
      const blocked = later(u.send("held", { signal: AbortSignal.timeout(15_000) }));
      await until("both are reserved for the stopped select", 5000, async () => {
        const [sq, su] = await Promise.all([q.stat(), u.stat()]);
        return sq.len === 0 && sq.numSend === 1 && su.waitingSenders === 0;
      });
      assert.equal(out.includes("selected"), false);
      child.kill("SIGKILL");
      await once(child, "exit");
      // Its connections are gone; the reservations went back where they came from.
      assert.equal(await q.recv({ signal: AbortSignal.timeout(5000) }), "leased");
      assert.equal(await u.recv({ signal: AbortSignal.timeout(5000) }), "held");
      await blocked;
      await idle(q);
      await idle(u);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    }
  });

  test("examples/fan-in consumes from three servers and gives up after its timeout", async () => {
    const p = spawn(process.execPath, ["--import", "tsx", "examples/fan-in/main.ts"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    const timer = setTimeout(() => p.kill("SIGKILL"), 50_000);
    const [code] = (await once(p, "exit")) as [number | null];
    clearTimeout(timer);
    assert.equal(code, 0, `${out}\n${err}`);
    const got = out.split("\n").filter((l) => l.startsWith("got "));
    assert.equal(got.length, 15, out);
    const servers = new Set(got.map((l) => / on (X[0-9a-f]{16}) /.exec(l)?.[1]));
    assert.equal(servers.size, 3, out);
    for (const q of ["q0", "q1", "q2"]) {
      const texts = got.filter((l) => l.includes(`from ${q} `)).map((l) => /"reading (\d+)/.exec(l)?.[1]);
      assert.deepEqual(texts, ["1", "2", "3", "4", "5"], `${q} in order:\n${out}`);
    }
    assert.match(out, /no message for 3000 ms; giving up after 15 messages/);
  });
});

describe("select when a server dies", () => {
  test("cases on a dead or silent server disappear; the select completes on the others", async () => {
    const ds = await circuit(3);
    const clients = await Promise.all(ds.map((x) => dial(x.url)));
    const [home, one, two] = ds as [Daemon, Daemon, Daemon];
    const client = clients[0] as Client;
    try {
      const here = await client.walk(fresh(home, "here")).makeChan<string>(0);
      const there = await client.walk(fresh(one, "there")).makeChan<string>(0);
      const silent = await client.walk(fresh(two, "silent")).makeChan<string>(0);

      // A silent machine: SIGSTOP. Its cases vanish within the failure-detection bound (5 s); a
      // select with nothing else fails with ServerGone, one with other cases goes on.
      const both = later(select([there.recvCase(), silent.recvCase()]));
      const alone = later(select([silent.recvCase()]));
      await sleep(100);
      const t0 = Date.now();
      process.kill(two.pid, "SIGSTOP");
      await assert.rejects(alone, ServerGone);
      const detected = Date.now() - t0;
      assert.ok(detected < 6500, `ServerGone after ${detected} ms`);
      const sender = await chanAt<string>(clients[1] as Client, there.path);
      await sender.send("still here", { signal: AbortSignal.timeout(5000) });
      assert.deepEqual(await both, { index: 0, value: "still here" });
      two.kill("SIGKILL");

      // A crashed process: kill -9. Detected at once through the reset connection, and a select
      // can wait for the news itself: a @leave subscription is a case like any other.
      const leaves = await client.walk(fresh(home, "leaves")).makeOnLeave();
      const mixed = later(select([here.recvCase(), there.recvCase()]));
      const only = later(select([there.recvCase()]));
      const news = later(select([there.recvCase(), leaves.recvCase()]));
      await sleep(100);
      const t1 = Date.now();
      one.kill("SIGKILL");
      await assert.rejects(only, ServerGone);
      assert.ok(Date.now() - t1 < 2000, `ServerGone after ${Date.now() - t1} ms`);
      let heard = await news;
      assert.equal(heard.index, 1);
      // The silent server's departure may be news too; the killed one's follows within 1 s.
      while (heard.value !== `/${one.id}`) {
        assert.equal(heard.value, `/${two.id}`);
        heard = await select([leaves.recvCase()], { signal: AbortSignal.timeout(2000) });
      }
      assert.ok(Date.now() - t1 < 2500, `@leave after ${Date.now() - t1} ms`);
      await here.send("home", { signal: AbortSignal.timeout(5000) });
      assert.deepEqual(await mixed, { index: 0, value: "home" });
      // A select whose every case is on a dead server fails at once.
      await assert.rejects(select([there.recvCase(), silent.recvCase()]), ServerGone);
      await idle(here);
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      for (const d of ds) d.kill("SIGCONT");
      await Promise.all(ds.map((d) => d.stop()));
    }
  });
});
