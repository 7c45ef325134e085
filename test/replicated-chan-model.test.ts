// The replicated channel's host state machine (src/daemon/replicated-chan.ts) under random
// operations and takeovers, against a fake JetStream stream at the seam it talks through (publish
// with "expected last sequence", read back, purge). A takeover resumes a new host
// from the log while the old one lingers and keeps trying to act. Whatever happens: a value whose
// send completed is acknowledged exactly once in the end, no value is acknowledged twice, nothing
// appears that nobody sent, and a host that was taken over appends nothing.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { headers } from "nats";
import { DEDUPE_MS, KEY_SPAN, type Owner, ReplicatedChan, TRIM_EVERY } from "../src/daemon/replicated-chan.ts";
import { CARRY_MS } from "../src/wire/shapes.ts";
import { drainHost, FakeStream, settle, takeFrom } from "./helpers/fake-stream.ts";

const cmd = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant("send" as const), owner: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("recv" as const), owner: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("ack" as const), owner: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("giveBack" as const), owner: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("gone" as const), owner: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("takeover" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("stale" as const) }) },
);

test("random operations and takeovers: completed sends acknowledged exactly once, fenced hosts write nothing", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.array(cmd, { maxLength: 60 }), async (cap, cmds) => {
      const st = new FakeStream();
      let gen = 0;
      let host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${gen}`);
      const stale: ReplicatedChan[] = [];
      // Owners are sessions; a takeover ends every session (clients reconnect to the new host).
      let owners: Owner[] = [{}, {}, {}];
      const completed = new Set<string>();
      const attempted = new Set<string>();
      const ackedOk: string[] = [];
      const held: { host: ReplicatedChan; owner: number; opid: number; seq: number; v: string }[] = [];
      let n = 0;
      let opid = 0;
      for (const c of cmds) {
        if (c.t === "send") {
          const v = `v${n++}`;
          attempted.add(v);
          host.send(owners[c.owner] as Owner, ++opid, Buffer.from(v), v, (err) => {
            if (!err) completed.add(v);
          });
        } else if (c.t === "recv") {
          const h = host;
          const id = ++opid;
          h.recv(owners[c.owner] as Owner, id, (err, got) => {
            if (!err && got) held.push({ host: h, owner: c.owner, opid: id, seq: got.seq, v: got.bytes.toString() });
          });
        } else if (c.t === "ack" || c.t === "giveBack") {
          const i = held.findIndex((x) => x.owner === c.owner);
          if (i >= 0) {
            const x = held.splice(i, 1)[0]!;
            if (c.t === "ack")
              x.host.ack(x.seq).then(
                () => ackedOk.push(x.v),
                () => {},
              );
            else x.host.cancel(owners[x.owner] as Owner, x.opid);
          }
        } else if (c.t === "gone") {
          host.ownerGone(owners[c.owner] as Owner);
          for (let i = held.length - 1; i >= 0; i--) if (held[i]!.owner === c.owner) held.splice(i, 1);
          owners[c.owner] = {};
        } else if (c.t === "takeover") {
          await settle();
          stale.push(host);
          host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${++gen}`);
          owners = [{}, {}, {}];
        } else if (c.t === "stale" && stale.length > 0) {
          // The old host wakes and tries to act: a send and an ack of what it still holds.
          const old = stale[stale.length - 1]!;
          const v = `v${n++}`;
          attempted.add(v);
          old.send({}, ++opid, Buffer.from(v), v, (err) => {
            if (!err) completed.add(v);
          });
          const x = held.find((h) => h.host === old);
          if (x)
            old.ack(x.seq).then(
              () => ackedOk.push(x.v),
              () => {},
            );
        }
        await settle();
      }
      await settle();
      // Drain through a fresh host: every value still in the channel, acknowledged.
      host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${++gen}`);
      for (const g of await drainHost(host, () => ++opid)) ackedOk.push(g.bytes.toString());
      const counts = new Map<string, number>();
      for (const v of ackedOk) counts.set(v, (counts.get(v) ?? 0) + 1);
      for (const v of completed)
        assert.equal(counts.get(v), 1, `${v} (completed) acknowledged ${counts.get(v) ?? 0} times`);
      for (const [v, k] of counts) {
        assert.ok(attempted.has(v), `${v} was never sent`);
        assert.equal(k, 1, `${v} acknowledged ${k} times`);
      }
      // Fencing: after host Hk's takeover record, nothing is written by an earlier host.
      const takeoverAt = new Map<number, number>();
      st.writers.forEach((w, i) => {
        const g = Number(w.slice(1));
        if (!takeoverAt.has(g)) takeoverAt.set(g, i);
      });
      st.writers.forEach((w, i) => {
        const g = Number(w.slice(1));
        for (const [later, at] of takeoverAt) if (later > g) assert.ok(i < at, `${w} wrote after H${later} took over`);
      });
    }),
    { numRuns: 300 },
  );
});

test("a host whose log another host took over stops its waiting receivers when it checks (verify)", async () => {
  const st = new FakeStream();
  const a = await ReplicatedChan.resume(st.js, st.jsm, "S", 4, 3, "HA");
  let err: { code?: string } | undefined;
  a.recv({}, 1, (e) => {
    err = e;
  });
  await settle();
  assert.equal(a.waiting, true, "the receive waits on A");
  // A has appended nothing since it resumed: its log has not moved yet, so the check keeps it.
  await a.verify();
  assert.equal(err, undefined);
  // B takes the log over (as after two daemons both believed they held the lease) and stores a value.
  const b = await ReplicatedChan.resume(st.js, st.jsm, "S", 4, 3, "HB");
  b.send({}, 2, Buffer.from("x"), "id-x", () => {});
  await settle();
  assert.equal(err, undefined, "without a check, A would keep its receiver waiting forever");
  await a.verify();
  assert.equal((err as { code?: string } | undefined)?.code, "Moved", "A's receiver is told to ask again");
  assert.ok(a.lost, "A changes nothing more");
});

/** Sends `v` with id `id` on host `h`; resolves with the error, or "ok" once stored. */
function sendOn(h: ReplicatedChan, id: string, v = id, owner: Owner = {}): Promise<unknown> {
  return new Promise((res) =>
    h.send(owner, Math.floor(Math.random() * 1e9), Buffer.from(v), id, (e) => res(e ?? "ok")),
  );
}

const types = (st: FakeStream) => st.recs.map((r) => r.headers.get("C-T")).join("");

test("sends that reach the host while appends are in flight share one record; keys keep their order", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 64, 3, "H");
  const sent = Array.from({ length: 40 }, (_, i) => sendOn(h, `id-${i}`, `v${i}`));
  assert.deepEqual(await Promise.all(sent), Array(40).fill("ok"));
  // Two appends go at once (one value each); the 38 sends that came meanwhile wait for the next.
  assert.equal(types(st), "hbbb");
  assert.equal(st.recs[3]?.headers.get("C-N"), "38");
  const got = await drainHost(
    h,
    (() => {
      let o = 100;
      return () => ++o;
    })(),
  );
  assert.deepEqual(
    got.map((g) => g.bytes.toString()),
    Array.from({ length: 40 }, (_, i) => `v${i}`),
  );
  const keys = got.map((g) => g.seq);
  assert.deepEqual(
    [...keys].sort((a, b) => a - b),
    keys,
    "keys in the order of the values",
  );
  assert.equal(keys[2], st.recs[3]!.seq * KEY_SPAN, "a key names the record and the place in it");
  assert.equal(h.stat().numSend, 40);
});

test("a send retried while its first append is in flight waits for that append: stored once, or failed with it", async () => {
  for (const outcome of ["stored", "refused"] as const) {
    const st = new FakeStream();
    const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 4, 3, "H");
    const open = st.hold();
    const first = sendOn(h, "id-y");
    const retry = sendOn(h, "id-y");
    await settle();
    let early: unknown;
    void Promise.race([first, retry]).then((x) => {
      early = x;
    });
    await settle();
    assert.equal(early, undefined, "neither is told anything before the append is answered");
    if (outcome === "refused") st.last++; // another host appended meanwhile: this one is fenced
    open();
    const [a, b] = await Promise.all([first, retry]);
    if (outcome === "stored") {
      assert.deepEqual([a, b], ["ok", "ok"]);
      assert.equal(h.stat().len, 1, "stored once");
    } else {
      assert.equal((a as { code?: string }).code, "Moved");
      assert.equal((b as { code?: string }).code, "Moved", "the retry is not told 'stored' for a value that is not");
    }
  }
});

test("a retry of a send still waiting for its record, and sends after it: each value stored once, in order", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 16, 3, "H");
  const open = st.hold();
  // a and b go at once; c waits for the next record, its retry waits with it, d joins that record.
  const sends = [sendOn(h, "id-a", "a"), sendOn(h, "id-b", "b"), sendOn(h, "id-c", "c")];
  const retry = sendOn(h, "id-c", "c");
  sends.push(sendOn(h, "id-d", "d"));
  await settle();
  open();
  assert.deepEqual(await Promise.all([...sends, retry]), ["ok", "ok", "ok", "ok", "ok"]);
  assert.equal(types(st), "hbbb");
  let opid = 0;
  const got = await drainHost(h, () => ++opid);
  assert.deepEqual(
    got.map((g) => g.bytes.toString()),
    ["a", "b", "c", "d"],
  );
  assert.equal(got[3]?.seq, st.recs[3]!.seq * KEY_SPAN + 1, "d is the second value of the third record");
});

test("trims under a steady stream of sends keep every value still needed (records being appended too)", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 1024, 3, "H");
  // Appends take a few turns, as over a network: trims happen while value records are on their way.
  st.lag = 2;
  const owner = {};
  let opid = 0;
  let sent = 0;
  let completed = 0;
  const seen: string[] = [];
  const acks: Promise<void>[] = [];
  let most = 0;
  const more = () => {
    if (sent >= 3000) return;
    const v = `v${sent++}`;
    h.send(owner, ++opid, Buffer.from(v), v, (e) => {
      assert.equal(e, undefined);
      completed++;
      more();
    });
  };
  for (let i = 0; i < 40; i++) more();
  while (seen.length < 2500) {
    const g = await takeFrom(h, owner, ++opid);
    seen.push(g.bytes.toString());
    acks.push(h.ack(g.seq));
    most = Math.max(most, st.recs.length);
  }
  await Promise.all(acks);
  while (completed < 3000) await settle();
  await settle();
  assert.deepEqual(
    seen,
    Array.from({ length: 2500 }, (_, i) => `v${i}`),
  );
  assert.ok(most < 150, `trimmed as it went: at most ${most} records in the log`);
  // A new host finds exactly the values not acknowledged, in order.
  const again = await ReplicatedChan.resume(st.js, st.jsm, "S", 1024, 3, "H2");
  const rest = await drainHost(again, () => ++opid);
  assert.deepEqual(
    rest.map((g) => g.bytes.toString()),
    Array.from({ length: 500 }, (_, i) => `v${2500 + i}`),
  );
});

test("a close goes into the log after the sends admitted before it", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 8, 3, "H");
  const open = st.hold();
  // a and b are being appended; c waits for the next record when the close comes.
  const sends = [sendOn(h, "id-a", "a"), sendOn(h, "id-b", "b"), sendOn(h, "id-c", "c")];
  await settle();
  const closed = h.close();
  open();
  assert.deepEqual(await Promise.all(sends), ["ok", "ok", "ok"]);
  await closed;
  assert.equal(types(st), "hbbbc");
  const again = await ReplicatedChan.resume(st.js, st.jsm, "S", 8, 3, "H2");
  assert.equal(again.stat().closed, true);
  let opid = 0;
  assert.deepEqual(
    (await drainHost(again, () => ++opid)).map((g) => g.bytes.toString()),
    ["a", "b", "c"],
  );
});

test("a trim while value records are being appended keeps them", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 16, 3, "H");
  st.lag = 2;
  const owner = {};
  let opid = 0;
  const take = () => takeFrom(h, owner, ++opid);
  for (let i = 0; i < TRIM_EVERY; i++) {
    assert.equal(await sendOn(h, `id-${i}`), "ok");
    const g = await take();
    if (i < TRIM_EVERY - 1) await h.ack(g.seq);
    else {
      // The acknowledgement that triggers a trim is appended; two value records follow it while
      // it is on its way, and the buffer is empty when the trim looks for the oldest value needed.
      const acked = h.ack(g.seq);
      await new Promise((r) => setImmediate(r));
      const xy = [sendOn(h, "id-x", "x"), sendOn(h, "id-y", "y")];
      await acked;
      assert.deepEqual(await Promise.all(xy), ["ok", "ok"]);
    }
  }
  for (let i = 0; i < 8; i++) await settle();
  assert.ok(types(st).includes("d"), `a trim happened: ${types(st)}`);
  const again = await ReplicatedChan.resume(st.js, st.jsm, "S", 16, 3, "H2");
  assert.deepEqual(
    (await drainHost(again, () => ++opid)).map((g) => g.bytes.toString()),
    ["x", "y"],
  );
});

test("a send retried after its record was trimmed is stored once, by the same host and after a takeover", async () => {
  const st = new FakeStream();
  const a = await ReplicatedChan.resume(st.js, st.jsm, "S", 1024, 3, "HA");
  assert.equal(await sendOn(a, "id-x", "x"), "ok");
  let opid = 0;
  // Receives and acknowledges what the host holds (leaving no receive waiting behind).
  const drain = async (h: ReplicatedChan) => {
    const out: string[] = [];
    while (h.stat().len > 0) {
      const v = await takeFrom(h, {}, ++opid);
      await h.ack(v.seq);
      out.push(v.bytes.toString());
    }
    return out;
  };
  assert.deepEqual(await drain(a), ["x"]);
  // Enough acknowledgements for a trim.
  for (let round = 0; round < 3; round++) {
    await Promise.all(Array.from({ length: 200 }, (_, i) => sendOn(a, `f-${round}-${i}`)));
    assert.equal((await drain(a)).length, 200);
  }
  await settle();
  assert.ok(!st.recs.some((r) => r.headers.get("C-T") === "b" && r.seq <= 3), `x's record is trimmed: ${types(st)}`);
  const d = st.recs.filter((r) => r.headers.get("C-T") === "d");
  assert.equal(d.length, 1, `one record of trimmed ids: ${types(st)}`);
  assert.equal(d[0]?.subject, ReplicatedChan.idsSubject("S"));
  assert.equal(await sendOn(a, "id-x", "x"), "ok", "the same host still knows x");
  assert.equal(a.stat().len, 0, "x is not stored again");
  const b = await ReplicatedChan.resume(st.js, st.jsm, "S", 1024, 3, "HB");
  assert.equal(await sendOn(b, "id-x", "x"), "ok", "a new host learns x from the d record");
  assert.equal(b.stat().len, 0, "nor by the new host");
  // Another trim keeps the d record (its own subject), while it is young.
  for (let round = 0; round < 3; round++) {
    await Promise.all(Array.from({ length: 200 }, (_, i) => sendOn(b, `g-${round}-${i}`)));
    assert.equal((await drain(b)).length, 200);
  }
  await settle();
  assert.equal(st.recs.filter((r) => r.headers.get("C-T") === "d").length, 2, types(st));
  const c = await ReplicatedChan.resume(st.js, st.jsm, "S", 1024, 3, "HC");
  assert.equal(await sendOn(c, "id-x", "x"), "ok");
  assert.equal(c.stat().len, 0);
  assert.ok(DEDUPE_MS > CARRY_MS, "ids are kept longer than any client retries");
});

test("a log written before batches (one value per `v` record, `a` acknowledgements by sequence) is read", async () => {
  const st = new FakeStream();
  const rec = (t: string, data: string, fields: Record<string, string> = {}) => {
    const h = headers();
    h.set("C-T", t);
    h.set("C-H", "Hold");
    for (const [k, v] of Object.entries(fields)) h.set(k, v);
    st.recs.push({ seq: ++st.last, subject: "circuit.log.S", headers: h, data: Buffer.from(data) });
  };
  rec("h", "");
  rec("v", "p", { "C-Id": "id-p" });
  rec("v", "q", { "C-Id": "id-q" });
  rec("v", "r", { "C-Id": "id-r" });
  rec("a", "", { "C-S": "3" });
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 8, 3, "Hnew");
  assert.equal(h.stat().len, 2, "q was acknowledged");
  assert.equal(await sendOn(h, "id-p"), "ok", "a retry of p is not stored again");
  assert.equal(await sendOn(h, "id-s", "s"), "ok");
  let opid = 0;
  const got = await drainHost(h, () => ++opid);
  assert.deepEqual(
    got.map((g) => g.bytes.toString()),
    ["p", "r", "s"],
  );
  assert.equal(got[0]?.seq, 2 * KEY_SPAN);
  const again = await ReplicatedChan.resume(st.js, st.jsm, "S", 8, 3, "Hthird");
  assert.equal(again.stat().len, 0, "the new acknowledgements (by key) cover the old values too");
  assert.ok(st.subjects.includes(ReplicatedChan.idsSubject("S")), "the stream took the d records' subject");
});
