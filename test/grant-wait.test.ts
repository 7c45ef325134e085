// A credit holder that has spent every credit waits for the next grant (CWAIT) instead of sending a
// send that may block, which would take every sender's credits back: what the daemon says on the
// wire, and what a program sees through the client library, with producers in their own processes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, ChannelClosed, type Client, dial } from "../src/index.ts";
import { batchTail } from "../src/wire/frame.ts";
import { decode, encode, T } from "../src/wire/protocol.ts";
import { onLines, startDaemon } from "./helpers/daemon.ts";
import { type Frame, Raw } from "./helpers/raw.ts";
import { countingRelay } from "./helpers/relay.ts";
import { state as settledIn, until } from "./helpers/wait.ts";

const fixture = new URL("./fixtures/chan-client.ts", import.meta.url).pathname;

/** How `p` stands after 200 ms (or `ms`). */
const state = (p: Promise<unknown>, ms = 200) => settledIn(p, ms);

/** The next frame of `r` that is not a TICK (heartbeat). */
async function nextFrame(r: Raw, ms = 3000): Promise<Frame> {
  for (;;) {
    const f = await r.next(ms);
    assert.ok(f, "the connection closed");
    if (f.type !== T.TICK) return f;
  }
}

/** No frame but heartbeats arrives on `r` within `ms`. */
async function quiet(r: Raw, ms: number): Promise<void> {
  await sleep(ms);
  const seen = r.frames.filter((f) => f.type !== T.TICK).map((f) => f.type);
  assert.deepEqual(seen, []);
}

const u32 = (f: Frame, i: number) => f.body.readUInt32BE(4 * i);

/**
 * `r` asks for credit on `handle` and is refused (REVOKE), releases, and its send that may block
 * (request id 3, sequence number `seq`) then fails with `code`.
 */
async function askRefusedThenFails(r: Raw, handle: number, want: number, seq: number, code: string): Promise<void> {
  r.frame(T.CWAIT, [handle, 1, want]);
  const refused = await nextFrame(r);
  assert.deepEqual([refused.type, u32(refused, 0)], [T.REVOKE, handle]);
  r.frame(T.RELEASE, [handle]);
  r.frame(T.SEND, [3, handle, want, seq], encode(`v${seq}`));
  const err = await nextFrame(r);
  assert.deepEqual([err.type, u32(err, 0)], [T.ERR, 3]);
  assert.equal((decode(err.body.subarray(4)) as { code: string }).code, code);
}

/**
 * Iterates `c` (prefetch 32) until it is closed and drained, checking that each producer's values
 * [PID, I] come in increasing order, and passes each to `each`.
 */
async function takeInOrder(
  c: Chan<[number, number]>,
  each: (pid: number, i: number) => void | Promise<void>,
): Promise<void> {
  const last = new Map<number, number>();
  for await (const [pid, i] of c.iterate({ prefetch: 32 })) {
    assert.ok(i > (last.get(pid) ?? -1), `producer ${pid}: ${i} after ${last.get(pid)}`);
    last.set(pid, i);
    await each(pid, i);
  }
}

/** Sends `values` on credit from sequence number `seq`, and checks the CACK that answers them. */
async function csendAcked(r: Raw, handle: number, seq: number, values: string[]): Promise<void> {
  r.frame(T.CSEND, [handle, seq], batchTail(values.map((v) => encode(v))));
  const ack = await nextFrame(r);
  assert.deepEqual([ack.type, u32(ack, 0), u32(ack, 1)], [T.CACK, handle, seq + values.length - 1]);
}

describe("waiting for a grant (CWAIT)", () => {
  let d: Awaited<ReturnType<typeof startDaemon>>;
  let port: number;
  let a: Client;
  let b: Client;
  let n = 0;
  const path = () => `/${d.id}/gw${++n}`;

  before(async () => {
    d = await startDaemon();
    port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    a = await dial(d.url);
    b = await dial(d.url);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await d?.stop();
  });

  /** A raw connection holding credits on a new channel of capacity `cap`: [raw, handle, channel path]. */
  async function rawHolder(cap: number, want: number): Promise<[Raw, number, string, number]> {
    const p = path();
    const r = new Raw(port);
    const hello = await r.hello();
    assert.equal(hello.grantWait, true, "the server's HELLO offers grantWait");
    assert.equal(hello.grantAsk, true, "the server's HELLO offers grantAsk");
    r.request(1, { op: "mkchan", path: p.split("/").slice(1), cap });
    const res = await nextFrame(r);
    assert.equal(res.type, T.RES);
    const { handle } = decode(res.body.subarray(4)) as { handle: number };
    // One send that may block, asking for credits afterwards.
    r.frame(T.SEND, [2, handle, want, 1], encode("v1"));
    const done = await nextFrame(r);
    assert.deepEqual([done.type, u32(done, 0)], [T.RES, 2]);
    const grant = await nextFrame(r);
    assert.deepEqual([grant.type, u32(grant, 0)], [T.GRANT, handle]);
    return [r, handle, p, u32(grant, 1)];
  }

  test("on the wire: a waiting holder is counted, gets the freed slots first, and keeps its turn before a later blocked sender", async () => {
    const [r, handle, p, granted] = await rawHolder(4, 4);
    assert.equal(granted, 3);
    try {
      await csendAcked(r, handle, 2, ["v2", "v3", "v4"]);
      const ch = await b.walk(p).getChan<string>();
      assert.equal((await ch.stat()).waitingSenders, 0);
      // Every credit spent on a full buffer: the holder says it waits, and is told nothing yet.
      r.frame(T.CWAIT, [handle, 1]);
      await quiet(r, 150);
      assert.equal((await ch.stat()).waitingSenders, 1);
      // A value taken: the slot is granted to it at once, as it waits (a holder not waiting gets
      // credit only once it is half its want short).
      assert.equal(await ch.recv(), "v1");
      const more = await nextFrame(r);
      assert.deepEqual([more.type, u32(more, 0), u32(more, 1)], [T.GRANT, handle, 1]);
      assert.equal((await ch.stat()).waitingSenders, 0);
      await csendAcked(r, handle, 5, ["v5"]);
      // The next freed slot is granted, but not told while the holder does not wait for it...
      assert.equal(await ch.recv(), "v2");
      await quiet(r, 150);
      // ...and told at once when it says it waits.
      r.frame(T.CWAIT, [handle, 1]);
      const next = await nextFrame(r);
      assert.deepEqual([next.type, u32(next, 0), u32(next, 1)], [T.GRANT, handle, 1]);
      assert.equal((await ch.stat()).waitingSenders, 0);
      await csendAcked(r, handle, 6, ["v6"]);
      // It waits again, holding nothing. Another connection's send must block: the holder is not
      // revoked (it reserves nothing) but waits on, before that sender, which came later.
      r.frame(T.CWAIT, [handle, 1]);
      await quiet(r, 100);
      const other = ch.send("other");
      await until("both wait", 3000, async () => (await ch.stat()).waitingSenders === 2);
      await quiet(r, 100);
      // The slot freed next is the holder's: one credit, then REVOKE, as a sender still waits.
      assert.equal(await ch.recv(), "v3");
      const one = await nextFrame(r);
      assert.deepEqual([one.type, u32(one, 0), u32(one, 1)], [T.GRANT, handle, 1]);
      const revoke = await nextFrame(r);
      assert.deepEqual([revoke.type, u32(revoke, 0)], [T.REVOKE, handle]);
      assert.equal(await state(other), "pending");
      await csendAcked(r, handle, 7, ["v7"]);
      r.frame(T.RELEASE, [handle]);
      // The next slot is the other sender's.
      assert.equal(await ch.recv(), "v4");
      await other;
      // No longer a holder: a CWAIT without a want is answered with REVOKE at once...
      r.frame(T.CWAIT, [handle, 1]);
      const again = await nextFrame(r);
      assert.deepEqual([again.type, u32(again, 0)], [T.REVOKE, handle]);
      r.frame(T.RELEASE, [handle]);
      // ...one with a want (grantAsk) makes it a holder that waits for credit.
      r.frame(T.CWAIT, [handle, 1, 4]);
      await quiet(r, 100);
      assert.equal((await ch.stat()).waitingSenders, 1);
      assert.equal(await ch.recv(), "v5");
      const asked = await nextFrame(r);
      assert.deepEqual([asked.type, u32(asked, 0), u32(asked, 1)], [T.GRANT, handle, 1]);
      await csendAcked(r, handle, 8, ["v8"]);
      const got = [];
      for (let i = 0; i < 4; i++) got.push(await ch.recv());
      assert.deepEqual(got, ["v6", "v7", "other", "v8"]);
      // The slots freed were granted to it (told late, as it did not wait); the close takes them
      // back, and completes once it has released them.
      const closed = ch.close();
      let back = await nextFrame(r);
      for (; back.type === T.GRANT; back = await nextFrame(r)) assert.equal(u32(back, 0), handle);
      assert.deepEqual([back.type, u32(back, 0)], [T.REVOKE, handle]);
      assert.equal(await state(closed), "pending");
      r.frame(T.RELEASE, [handle]);
      await closed;
      // On a closed channel an ask is refused, and the send that may block fails.
      await askRefusedThenFails(r, handle, 4, 9, "ChannelClosed");
    } finally {
      r.destroy();
    }
  });

  test("on the wire: a holder that still has credit is told a grant with the acknowledgement of its next batch", async () => {
    const [r, handle, p, granted] = await rawHolder(8, 8);
    assert.equal(granted, 7);
    try {
      await csendAcked(r, handle, 2, ["v2", "v3", "v4"]);
      // Four values taken: the holder, four credits short of its want, is granted the slot freed
      // first (then it is less than half short), which it is not told yet (it still has four).
      const ch = await b.walk(p).getChan<string>();
      for (const v of ["v1", "v2", "v3", "v4"]) assert.equal(await ch.recv(), v);
      await quiet(r, 150);
      assert.equal((await ch.stat()).len, 0);
      // Its next batch is acknowledged, and the grant comes in the same write, with the three
      // slots that batch left free.
      await csendAcked(r, handle, 5, ["v5"]);
      const grant = await nextFrame(r, 100);
      assert.deepEqual([grant.type, u32(grant, 0), u32(grant, 1)], [T.GRANT, handle, 4]);
      // It holds 7 again: 7 more sends complete without a receiver, the 8th would need one.
      r.frame(T.CSEND, [handle, 6], batchTail(["a", "b", "c", "d", "e", "f", "g"].map((v) => encode(v))));
      assert.equal((await nextFrame(r)).type, T.CACK);
      assert.equal((await ch.stat()).len, 8);
    } finally {
      r.destroy();
    }
  });

  test("on the wire: an idle holder's unused credits do not keep a waiting holder out of free room", async () => {
    // The raw connection takes 4 of 8 slots and never uses them.
    const [idle, handle, p] = await rawHolder(8, 4);
    try {
      const ch = await a.walk(p).getChan<number>();
      // The busy sender takes the 3 slots left (1 holds idle's value, 4 are reserved for it) and
      // is granted the last 2 of them after its first send.
      for (let i = 0; i < 3; i++) assert.equal(await state(ch.send(i), 3000), "resolved", `send ${i}`);
      await quiet(idle, 100);
      // Out of credit, the next send waits for a grant; the free room is idle's, so idle is
      // revoked (Go's send on a buffer with room does not wait for a receiver).
      const fourth = ch.send(3);
      const revoke = await nextFrame(idle);
      assert.deepEqual([revoke.type, u32(revoke, 0)], [T.REVOKE, handle]);
      idle.frame(T.RELEASE, [handle]);
      assert.equal(await state(fourth, 3000), "resolved");
      // With idle's slots back, the buffer fills to its capacity, and no further.
      for (let i = 4; i < 7; i++) assert.equal(await state(ch.send(i), 3000), "resolved", `send ${i}`);
      const ninth = ch.send(7);
      assert.equal(await state(ninth), "pending");
      assert.equal((await ch.stat()).len, 8);
      const rx = await b.walk(p).getChan<string | number>();
      const got = [];
      for (let i = 0; i < 9; i++) got.push(await rx.recv());
      await ninth;
      assert.deepEqual(got, ["v1", 0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      idle.destroy();
    }
  });

  test("a producer whose credits a blocked sender took asks for credit and waits its turn: no sends that may block, Go's order kept", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<string>(8);
    const relay = await countingRelay(port);
    const pc = await dial(relay.url);
    try {
      const pch = (await pc.walk(p).get()) as Chan<string>;
      // Its first send may block (it holds no credit yet); the next seven go on credit.
      for (let i = 0; i < 8; i++) await pch.send(`p${i}`);
      assert.equal(relay.sent.get(T.SEND), 1);
      // Another connection's send blocks on the full buffer: every reservation goes back.
      const q = x.send("q");
      await until("q waits", 3000, async () => (await x.stat()).waitingSenders === 1);
      // The producer's next sends: it asks for credit (CWAIT with its want) and waits behind q.
      const later = Array.from({ length: 20 }, (_, i) => pch.send(`p${i + 8}`));
      await until("the producer waits too", 3000, async () => (await x.stat()).waitingSenders === 2);
      const got: string[] = [];
      for (let i = 0; i < 29; i++) got.push(await x.recv());
      await Promise.all([q, ...later]);
      assert.deepEqual(got, [
        ...Array.from({ length: 8 }, (_, i) => `p${i}`),
        "q",
        ...Array.from({ length: 20 }, (_, i) => `p${i + 8}`),
      ]);
      // Without asking, they would have gone as sends that may block, one at a time.
      assert.equal(relay.sent.get(T.SEND), 1);
      assert.ok((relay.sent.get(T.CWAIT) ?? 0) >= 1);
    } finally {
      await pc.close();
      relay.close();
    }
  });

  test("on the wire: an ask on a handle a scrub released is refused, and the send that may block fails", async () => {
    const [r, handle, p] = await rawHolder(2, 2);
    try {
      const ch = await b.walk(p).getChan<string>();
      const scrubbed = ch.scrub();
      const revoke = await nextFrame(r);
      assert.deepEqual([revoke.type, u32(revoke, 0)], [T.REVOKE, handle]);
      r.frame(T.RELEASE, [handle]);
      await scrubbed;
      // The handle is released; an ask sent before the client learnt of it gets REVOKE.
      const push = await nextFrame(r);
      assert.equal(push.type, T.PUSH);
      assert.deepEqual(decode(push.body), { ev: "released", handle });
      await askRefusedThenFails(r, handle, 2, 2, "ChannelAborted");
    } finally {
      r.destroy();
    }
  });

  test("on the wire: CWAIT on a handle never given closes the connection", async () => {
    const r = new Raw(port);
    await r.hello();
    r.frame(T.CWAIT, [999, 1]);
    const errs = await r.untilClosed();
    assert.ok(r.closed);
    assert.equal(errs[0]?.code, "NotFound");
  });

  test("a send waiting for a grant is cancelled by its signal and delivers nothing; close fails the next one", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<number>(4);
    const y = (await b.walk(p).get()) as Chan<number>;
    for (let i = 0; i < 4; i++) await x.send(i);
    const ac = new AbortController();
    const fifth = x.send(4, { signal: ac.signal });
    assert.equal(await state(fifth), "pending");
    await until("the waiting send is counted", 3000, async () => (await y.stat()).waitingSenders === 1);
    ac.abort();
    await assert.rejects(fifth, { name: "AbortError" });
    await until("the cancelled send is no longer counted", 3000, async () => (await y.stat()).waitingSenders === 0);
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await y.recv());
    assert.deepEqual(got, [0, 1, 2, 3]);
    await assert.rejects(y.recv({ signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });
    // Full again, a send waits for a grant; the close fails it.
    for (let i = 10; i < 14; i++) await x.send(i);
    const blocked = x.send(14);
    assert.equal(await state(blocked), "pending");
    await y.close();
    await assert.rejects(blocked, ChannelClosed);
    const rest = [];
    for (let i = 0; i < 4; i++) rest.push(await y.recv());
    assert.deepEqual(rest, [10, 11, 12, 13]);
    await assert.rejects(y.recv(), ChannelClosed);
  });

  test("byte values held for a grant: they go in order once room comes; close fails those still held", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<Uint8Array>(4);
    const y = (await b.walk(p).get()) as Chan<Uint8Array>;
    const bytes = (i: number) => new Uint8Array([i, i + 1, i + 2]);
    for (let i = 0; i < 4; i++) await x.send(bytes(i));
    // Eight more wait here for credit (held), in the order they were sent.
    const held = Array.from({ length: 8 }, (_, i) => x.send(bytes(10 + i)));
    assert.equal(await state(held[0] as Promise<void>), "pending");
    const got = [];
    for (let i = 0; i < 8; i++) got.push([...(await y.recv())]);
    await Promise.all(held.slice(0, 4));
    assert.deepEqual(
      got,
      [...[0, 1, 2, 3], ...[10, 11, 12, 13]].map((i) => [i, i + 1, i + 2]),
    );
    // The buffer holds 14..17; two more wait, and the close fails them.
    await Promise.all(held);
    const late = [x.send(bytes(20)), x.send(bytes(21))];
    assert.equal(await state(late[0] as Promise<void>), "pending");
    await y.close();
    for (const l of late) await assert.rejects(l, ChannelClosed);
    const rest = [];
    for (let i = 0; i < 4; i++) rest.push((await y.recv())[0]);
    assert.deepEqual(rest, [14, 15, 16, 17]);
    await assert.rejects(y.recv(), ChannelClosed);
  });

  test("a producer killed with -9 while it waits for a grant: no longer counted, the buffer holds exactly what it sent, in order", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<[number, number]>(64);
    // It fills the buffer, then its sends wait for a grant that a receiver would bring.
    const pr = spawn(process.execPath, ["--import", "tsx", fixture, d.url, p, "produce", "1000"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await until("the buffer is full and the producer waits", 15_000, async () => {
        const st = await x.stat();
        return st.len === 64 && st.waitingSenders === 1;
      });
      // A random moment of its wait.
      await sleep(Math.floor(Math.random() * 200));
      pr.kill("SIGKILL");
      await once(pr, "exit");
      await until("the killed producer is no longer counted", 5000, async () => (await x.stat()).waitingSenders === 0);
      const got: number[] = [];
      for (let i = 0; i < 64; i++) got.push((await x.recv())[1]);
      assert.deepEqual(
        got,
        Array.from({ length: 64 }, (_, i) => i),
      );
      await assert.rejects(x.recv({ signal: AbortSignal.timeout(300) }), { name: "TimeoutError" });
      assert.equal((await x.stat()).len, 0);
    } finally {
      if (pr.exitCode === null && pr.signalCode === null) pr.kill("SIGKILL");
    }
  });

  test("eight producer processes on a full channel, three killed with -9 at random moments: every completed send arrives once, each producer's values a prefix in order", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<[number, number]>(64);
    const y = (await b.walk(p).get()) as Chan<[number, number]>;
    const N = 4000;
    const procs = Array.from({ length: 8 }, () =>
      spawn(process.execPath, ["--import", "tsx", fixture, d.url, p, "produce-report", String(N)], {
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
    // The last "ok I" each producer printed: its sends up to I completed.
    const completed = new Map<number, number>();
    const done = new Set<number>();
    for (const pr of procs) {
      const pid = pr.pid as number;
      completed.set(pid, -1);
      onLines(pr, (l) => {
        if (l === "done") done.add(pid);
        else if (l.startsWith("ok ")) completed.set(pid, Number(l.slice(3)));
      });
    }
    const killed = new Set<number>();
    try {
      const received = new Map<number, number[]>();
      let total = 0;
      const consume = (c: Chan<[number, number]>) =>
        takeInOrder(c, (pid, i) => {
          const got = received.get(pid) ?? [];
          got.push(i);
          received.set(pid, got);
          total++;
        });
      const consumers = Promise.all([consume(x), consume(y)]);
      // Awaited below; if an assertion fails first, the close in `finally` ends them quietly.
      consumers.catch(() => {});
      // Three of them, each at a random point of its sending (a random count of completed sends,
      // then up to 20 ms more): the buffer is full, sends wait for grants, batches are on their way.
      await Promise.all(
        procs.slice(0, 3).map(async (pr) => {
          const pid = pr.pid as number;
          const at = Math.floor(Math.random() * (N / 2));
          await until(`producer ${pid} completes ${at} sends`, 60_000, () => (completed.get(pid) as number) >= at, 2);
          await sleep(Math.floor(Math.random() * 20));
          assert.equal(pr.exitCode, null, `producer ${pid} finished before its kill`);
          killed.add(pid);
          pr.kill("SIGKILL");
          await once(pr, "exit");
        }),
      );
      const survivors = procs.slice(3);
      await until("the survivors finish", 120_000, async () => survivors.every((pr) => done.has(pr.pid as number)));
      // Everything that is coming has been sent; the buffer drains into the two consumers.
      let seen = -1;
      await until("the channel is drained", 30_000, async () => {
        const st = await x.stat();
        const settled = st.len === 0 && total === seen;
        seen = total;
        return settled;
      });
      await x.close();
      await consumers;
      for (const pr of procs) {
        const pid = pr.pid as number;
        const got = (received.get(pid) ?? []).sort((m, k) => m - k);
        // No value twice, none skipped: a prefix of what it sent (a killed producer's last batch
        // may or may not have reached the daemon).
        assert.deepEqual(
          got,
          Array.from({ length: got.length }, (_, i) => i),
          `producer ${pid}: values are not 0..${got.length - 1} once each`,
        );
        const ok = completed.get(pid) as number;
        if (killed.has(pid)) {
          assert.ok(got.length >= ok + 1, `killed producer ${pid}: send ${ok} completed, only ${got.length} arrived`);
        } else {
          assert.equal(ok, N - 1);
          assert.equal(got.length, N, `producer ${pid}: ${got.length} of ${N} arrived`);
        }
      }
    } finally {
      for (const pr of procs) if (pr.exitCode === null && pr.signalCode === null) pr.kill("SIGKILL");
      // Ends the consumers if an assertion failed before the close above (a second close is refused).
      await x.close().catch(() => {});
    }
  });

  test("two producer processes and two consumers: every value once, each producer's in order", async () => {
    const p = path();
    const x = await a.walk(p).makeChan<[number, number]>(64);
    const y = (await b.walk(p).get()) as Chan<[number, number]>;
    const N = 20_000;
    const procs = [0, 1].map(() =>
      spawn(process.execPath, ["--import", "tsx", fixture, d.url, p, "produce", String(N)], {
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
    try {
      const seen = new Map<number, number>();
      let total = 0;
      const consume = (c: Chan<[number, number]>) =>
        takeInOrder(c, async (pid) => {
          seen.set(pid, (seen.get(pid) ?? 0) + 1);
          if (++total === 2 * N) await y.close();
        });
      const deadline = AbortSignal.timeout(120_000);
      await Promise.race([
        Promise.all([consume(x), consume(y)]),
        once(deadline, "abort").then(() => assert.fail(`only ${total} of ${2 * N} values within 120 s`)),
      ]);
      assert.equal(total, 2 * N);
      assert.deepEqual(
        [...seen.values()].sort((m, k) => m - k),
        [N, N],
      );
      for (const pr of procs) {
        if (pr.exitCode === null) await once(pr, "exit");
        assert.equal(pr.exitCode, 0);
      }
    } finally {
      for (const pr of procs) if (pr.exitCode === null) pr.kill("SIGKILL");
    }
  });
});
