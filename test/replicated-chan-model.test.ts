// The replicated channel's host state machine (src/daemon/replicated-chan.ts) under random
// operations and takeovers, against a fake JetStream stream at the seam it talks through (publish
// with "expected last sequence" and message ids, read back, purge). A takeover resumes a new host
// from the log while the old one lingers and keeps trying to act. Whatever happens: a value whose
// send completed is acknowledged exactly once in the end, no value is acknowledged twice, nothing
// appears that nobody sent, and a host that was taken over appends nothing.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type Owner, ReplicatedChan } from "../src/daemon/replicated-chan.ts";
import { drainHost, FakeStream, settle } from "./helpers/fake-stream.ts";

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

test("an append answered 'duplicate' at sequence 0 (seen, not stored) does not complete the send", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 4, 3, "H");
  st.ids.set("id-y", 0);
  let result: { code?: string } | undefined | "ok";
  h.send({}, 1, Buffer.from("y"), "id-y", (e) => {
    result = e ?? "ok";
  });
  await settle();
  assert.notEqual(result, "ok", "not reported stored");
  assert.equal((result as { code?: string }).code, "Moved", "the client asks again");
});
