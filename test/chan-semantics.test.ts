// test-runner: heavy (checks that an operation is still pending after a few ms)
// Go channel semantics across real processes: a daemon in its own process, clients here and in
// child processes.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AnchorBusy,
  type Chan,
  ChannelAborted,
  ChannelClosed,
  type Client,
  dial,
  MessageTooLarge,
  NotFound,
  ServerGone,
  StreamBroken,
  WrongKind,
} from "../src/index.ts";
import { startDaemon } from "./helpers/daemon.ts";
import { state as settledIn } from "./helpers/wait.ts";

const fixture = new URL("./fixtures/chan-client.ts", import.meta.url).pathname;
let n = 0;
const fresh = () => `t${++n}`;

/** How `p` stands after 200 ms (or `ms`). */
const state = (p: Promise<unknown>, ms = 200) => settledIn(p, ms);

/** A client in a child process; resolves once it printed `line`. */
function child(url: string, path: string, mode: string, arg: string, line: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", fixture, url, path, mode, arg], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`child did not print ${line}: ${err}`)), 15_000);
    p.stdout.on("data", (d) => {
      out += d;
      if (out.includes(line)) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    p.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited ${code}: ${err}`));
    });
  });
}

function killed(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    p.removeAllListeners("exit");
    p.once("exit", () => resolve());
    p.kill("SIGKILL");
  });
}

describe("channels across processes", () => {
  let d: Awaited<ReturnType<typeof startDaemon>>;
  let a: Client;
  let b: Client;
  const chan = async <T = unknown>(cap: number): Promise<[Chan<T>, Chan<T>, string]> => {
    const path = `/${d.id}/${fresh()}`;
    const ca = await a.walk(path).makeChan<T>(cap);
    const cb = (await b.walk(path).get()) as Chan<T>;
    return [ca, cb, path];
  };

  before(async () => {
    d = await startDaemon();
    a = await dial(d.url);
    b = await dial(d.url);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await d?.stop();
  });

  test("an unbuffered send completes only when a receiver takes the value", async () => {
    const [x, y] = await chan<string>(0);
    const s = x.send("hi");
    assert.equal(await state(s), "pending");
    assert.equal(await y.recv(), "hi");
    await s;
  });

  test("a buffered channel takes cap values without a receiver, then blocks", async () => {
    const [x, y] = await chan<number>(3);
    for (let i = 0; i < 3; i++) await x.send(i);
    const fourth = x.send(3);
    assert.equal(await state(fourth), "pending");
    assert.equal((await y.stat()).len, 3);
    assert.equal(await y.recv(), 0);
    await fourth;
    assert.deepEqual([await y.recv(), await y.recv(), await y.recv()], [1, 2, 3]);
  });

  test("blocked senders and receivers are served in FIFO order across clients", async () => {
    const [x, y] = await chan<string>(0);
    const s1 = x.send("a1");
    await sleep(30);
    const s2 = y.send("b1");
    await sleep(30);
    const s3 = x.send("a2");
    await sleep(30);
    assert.deepEqual([await y.recv(), await x.recv(), await y.recv()], ["a1", "b1", "a2"]);
    await Promise.all([s1, s2, s3]);
    const r1 = x.recv();
    await sleep(30);
    const r2 = y.recv();
    await sleep(30);
    await x.send("first");
    await x.send("second");
    assert.deepEqual(await Promise.all([r1, r2]), ["first", "second"]);
  });

  test("a second sender is not blocked by credits another client holds", async () => {
    const [x, y] = await chan<number>(4);
    await x.send(1); // x now holds credits for the remaining slots
    await sleep(50);
    for (let i = 2; i <= 4; i++) assert.equal(await state(y.send(i), 2000), "resolved", `send ${i} must complete`);
    const fifth = y.send(5);
    assert.equal(await state(fifth), "pending");
    assert.equal((await x.stat()).len, 4);
    const got = [];
    for (let i = 0; i < 5; i++) got.push(await x.recv());
    await fifth;
    assert.deepEqual(got, [1, 2, 3, 4, 5]);
  });

  test("after close completes, a client holding credits cannot send", async () => {
    const [x, y] = await chan<number>(8);
    await x.send(1);
    await sleep(50);
    await y.close();
    await assert.rejects(x.send(2), ChannelClosed);
    assert.equal(await y.recv(), 1);
    await assert.rejects(y.recv(), ChannelClosed);
  });

  test("close: buffered values drain, then receivers fail; blocked senders fail; second close fails", async () => {
    const [x, y] = await chan<number>(1);
    await x.send(1);
    const blocked = x.send(2);
    assert.equal(await state(blocked), "pending");
    await y.close();
    await assert.rejects(blocked, ChannelClosed);
    await assert.rejects(x.send(3), ChannelClosed);
    await assert.rejects(y.close(), ChannelClosed);
    const all = [];
    for await (const v of y) all.push(v);
    assert.deepEqual(all, [1]);
    await assert.rejects(x.recv(), ChannelClosed);
    const st = await x.stat();
    assert.equal(st.closed, true);
  });

  test("close wakes blocked receivers with ChannelClosed", async () => {
    const [x, y] = await chan(0);
    const r = y.recv();
    assert.equal(await state(r), "pending");
    await x.close();
    await assert.rejects(r, ChannelClosed);
  });

  test("scrub aborts every blocked op and removes the element", async () => {
    const [x, y, path] = await chan(0);
    const r = y.recv();
    const s = (await chan(0))[0];
    void s;
    assert.equal(await state(r), "pending");
    await x.scrub();
    await assert.rejects(r, ChannelAborted);
    await assert.rejects(y.send(1), ChannelAborted);
    assert.equal(await a.walk(path).get(), null);
    await assert.rejects(a.walk(path).peek(), NotFound);
  });

  test("scrubbing the last element removes the empty ancestors", async () => {
    const base = `/${d.id}/${fresh()}`;
    await a.walk(`${base}/x/y/z`).makeChan(0);
    assert.deepEqual([...(await a.walk(base).view()).keys()], ["x"]);
    await a.walk(`${base}/x/y/z`).scrub();
    await assert.rejects(a.walk(base).view(), NotFound);
    const top = (await a.walk(`/${d.id}`).list()).map((e) => e.path);
    assert.ok(!top.includes(base));
  });

  test("an aborted recv consumed nothing; an aborted send delivered nothing", async () => {
    const [x, y] = await chan<string>(0);
    const ac = new AbortController();
    const r = y.recv({ signal: ac.signal });
    await sleep(50);
    ac.abort();
    await assert.rejects(r, { name: "AbortError" });
    await assert.rejects(y.recv({ signal: AbortSignal.timeout(100) }), { name: "TimeoutError" });
    // A later pair still matches: the cancelled receives are gone.
    const s = x.send("v");
    assert.equal(await y.recv(), "v");
    await s;
    const ac2 = new AbortController();
    const s2 = x.send("never", { signal: ac2.signal });
    await sleep(50);
    ac2.abort();
    await assert.rejects(s2, { name: "AbortError" });
    const s3 = x.send("later");
    assert.equal(await y.recv(), "later");
    await s3;
    const st = await x.stat();
    assert.equal(st.waitingSenders + st.waitingReceivers, 0);
  });

  test("a recv aborted while a value is in flight leaves the value in the channel", async () => {
    const [x, y] = await chan<number>(100);
    // Race many aborts against sends; every value must be received exactly once in the end.
    const got: number[] = [];
    for (let i = 0; i < 100; i++) {
      const ac = new AbortController();
      const r = y.recv({ signal: ac.signal }).then(
        (v) => got.push(v),
        () => {},
      );
      await x.send(i);
      ac.abort();
      await r;
    }
    await x.close();
    for await (const v of y) got.push(v);
    assert.deepEqual(
      got.sort((p, q) => p - q),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  test("values of every MessagePack type arrive intact", async () => {
    const [x, y] = await chan(16);
    const values: unknown[] = [
      { a: 1, nested: { list: [1, "two", null, true] } },
      "unicode ✓ ☃",
      -42,
      3.25,
      2 ** 53 - 1,
      12345678901234567890n,
      false,
      null,
      new Date("2024-01-02T03:04:05.678Z"),
      new Uint8Array([0, 1, 2, 255]),
      [],
    ];
    for (const v of values) await x.send(v);
    for (const v of values) {
      const got = await y.recv();
      if (v instanceof Uint8Array) assert.deepEqual(new Uint8Array(got as Uint8Array), v);
      else assert.deepEqual(got, v);
    }
  });

  test("a value over 16 MiB encoded fails with MessageTooLarge before anything is sent", async () => {
    const [x, y] = await chan(2);
    // bin 32 adds 5 bytes of header: this value encodes to exactly 16 MiB.
    const max = new Uint8Array(16 * 1024 * 1024 - 5);
    max[max.length - 1] = 9;
    await x.send(max);
    await assert.rejects(x.send(new Uint8Array(16 * 1024 * 1024 - 4)), MessageTooLarge);
    const got = (await y.recv()) as Uint8Array;
    assert.equal(got.length, max.length);
    assert.equal(got[got.length - 1], 9);
    assert.equal((await y.stat()).len, 0);
  });

  test("iterate with prefetch receives everything in order", async () => {
    const [x, y] = await chan<number>(1024);
    const N = 20_000;
    const consumer = (async () => {
      const out: number[] = [];
      for await (const v of y.iterate({ prefetch: 64 })) {
        out.push(v);
        if (out.length === N) break;
      }
      return out;
    })();
    for (let i = 0; i < N; i++) await x.send(i);
    const out = await consumer;
    assert.equal(out.length, N);
    assert.ok(out.every((v, i) => v === i));
  });

  test("sends of one turn share frames: byte values of every size and other values arrive intact, in order", async () => {
    const [x, y] = await chan<unknown>(512);
    // Byte values take the direct-encoding path, others the encoder; sizes straddle the bin headers
    // and the batch-frame limit.
    const sizes = [0, 1, 255, 256, 65535, 65536, 100_000, 100];
    const values: unknown[] = [];
    for (let i = 0; i < 400; i++) {
      if (i % 3 === 0) values.push({ i, s: "x".repeat(i % 50) });
      else values.push(new Uint8Array(sizes[i % sizes.length] as number).fill(i & 0xff));
    }
    const consumer = (async () => {
      const out: unknown[] = [];
      for await (const v of y.iterate({ prefetch: 32 })) {
        out.push(v);
        if (out.length === values.length) break;
      }
      return out;
    })();
    // No await between sends while credits last: many sends leave in one turn.
    await Promise.all(values.map((v) => x.send(v)));
    const out = await consumer;
    assert.equal(out.length, values.length);
    for (let i = 0; i < values.length; i++) {
      const want = values[i];
      if (want instanceof Uint8Array) assert.ok(Buffer.from(want).equals(out[i] as Uint8Array), `value ${i}`);
      else assert.deepEqual(out[i], want, `value ${i}`);
    }
  });

  test("breaking out of a prefetching loop returns unconsumed values to the channel in order", async () => {
    const [x, y] = await chan<number>(10);
    for (let i = 0; i < 10; i++) await x.send(i);
    for await (const v of y.iterate({ prefetch: 8 })) {
      assert.equal(v, 0);
      break;
    }
    const rest = [];
    for (let i = 0; i < 9; i++) rest.push(await x.recv());
    assert.deepEqual(rest, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("wrong kind, busy anchor and bad paths are clear errors", async () => {
    const [, , path] = await chan(0);
    await assert.rejects(a.walk(path).makeChan(1), AnchorBusy);
    await assert.rejects(a.walk(`/${d.id}`).makeChan(1), WrongKind);
    assert.throws(() => a.walk("relative/path"), TypeError);
    assert.throws(() => a.walk(`/${d.id}/bad name`), TypeError);
    await assert.rejects(a.walk(`/${d.id}/x`).makeChan(-1), RangeError);
    await assert.rejects(a.walk(`/${d.id}/x`).makeChan(1.5), RangeError);
    await assert.rejects(a.walk("/X0000000000000000/x").makeChan(1), NotFound);
    assert.equal(await a.walk(`/${d.id}/no/such/thing`).get(), null);
    await assert.rejects(a.walk(`/${d.id}/no/such`).list(), NotFound);
  });

  test("a stream message carries 1 MiB exactly", async () => {
    const [x, y] = await chan(0);
    const data = randomBytes(1024 * 1024);
    const w = x.sendStream();
    const r = y.recvStream();
    w.end(data);
    const parts: Buffer[] = [];
    for await (const c of await r) parts.push(c as Buffer);
    assert.ok(Buffer.concat(parts).equals(data));
    await w.sent;
  });

  test("a plain byte value can be read with recvStream; other values are WrongKind", async () => {
    const [x, y] = await chan(2);
    await x.send(new Uint8Array([1, 2, 3]));
    await x.send({ not: "bytes" });
    const parts: Buffer[] = [];
    for await (const c of await y.recvStream()) parts.push(c as Buffer);
    assert.deepEqual([...Buffer.concat(parts)], [1, 2, 3]);
    await assert.rejects(y.recvStream(), WrongKind);
  });

  test("a client killed mid-send withdraws its send", async () => {
    const [x, , path] = await chan<string>(0);
    const p = await child(d.url, path, "send", "ghost", "sending");
    await sleep(200);
    assert.equal((await x.stat()).waitingSenders, 1);
    await killed(p);
    await sleep(200);
    assert.equal((await x.stat()).waitingSenders, 0);
    await assert.rejects(x.recv({ signal: AbortSignal.timeout(300) }), { name: "TimeoutError" });
  });

  test("values prefetched by a client that dies go back to the head of the channel in order", async () => {
    const [x, , path] = await chan<number>(10);
    for (let i = 0; i < 10; i++) await x.send(i);
    const p = await child(d.url, path, "prefetch", "6", "got 0");
    await sleep(100);
    assert.equal((await x.stat()).len, 4);
    await killed(p);
    await sleep(200);
    // The value the child got but never acknowledged comes back too (documented: seen twice).
    const got = [];
    for (let i = 0; i < 10; i++) got.push(await x.recv());
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("a stream whose sender dies is delivered as an error, never as a short message", async () => {
    const [x, , path] = await chan(0);
    const r = x.recvStream();
    const p = await child(d.url, path, "stream-partial", String(100_000), "wrote");
    const stream = await r;
    await killed(p);
    let bytes = 0;
    await assert.rejects(
      (async () => {
        for await (const c of stream) bytes += (c as Buffer).length;
      })(),
      StreamBroken,
    );
    assert.ok(bytes <= 100_000);
  });
});

describe("when the server dies", () => {
  test("blocked operations fail with ServerGone", async () => {
    const d = await startDaemon();
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/q`).makeChan(0);
      const other = await c.walk(`/${d.id}/p`).makeChan(0);
      const r = ch.recv();
      const s = other.send("x");
      await sleep(100);
      assert.equal(await state(r), "pending");
      d.kill("SIGKILL");
      await assert.rejects(r, ServerGone);
      await assert.rejects(s, ServerGone);
      await assert.rejects(ch.send(1), ServerGone);
      await assert.rejects(c.servers(), ServerGone);
    } finally {
      await c.close();
      await d.stop();
    }
  });

  test("a silent (stopped) dial-in server fails its waiters with ServerGone within about 5 s", async () => {
    const d = await startDaemon();
    const c = await dial(d.url);
    try {
      const ch = await c.walk(`/${d.id}/q`).makeChan(0);
      const r = ch.recv();
      r.catch(() => {});
      process.kill(d.pid, "SIGSTOP");
      const t0 = Date.now();
      await assert.rejects(r, ServerGone);
      const took = Date.now() - t0;
      assert.ok(took >= 3000 && took < 7000, `failed after ${took} ms`);
    } finally {
      process.kill(d.pid, "SIGCONT");
      await c.close();
      await d.stop();
    }
  });

  test("dialling nothing fails with ServerGone", async () => {
    const d = await startDaemon();
    const url = d.url;
    await d.stop();
    await assert.rejects(dial(url), ServerGone);
  });
});
