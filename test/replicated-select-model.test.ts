// Select cases on a replicated channel's host (src/daemon/replicated-chan.ts; docs/select.md,
// "Replicated channels"), against the stand-in JetStream stream: random plain sends and receives,
// selectors that register a recv and/or a send case, commit one offered case and release the
// rest (or abort), sessions that end, closes and takeovers. Whatever happens: a send case that was
// not committed is never in the log; every completed send (plain or case) is acknowledged exactly
// once in the end; nothing is acknowledged twice; a value reserved and released goes back to its
// place, and reserved room is not given to anyone else; a receive is told "closed" only while the
// channel holds no value (values handed back after the close, and reserved ones, included).

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type CaseOffer, type Owner, ReplicatedChan } from "../src/daemon/replicated-chan.ts";
import { drainHost, FakeStream, settle } from "./helpers/fake-stream.ts";

const owner = fc.integer({ min: 0, max: 2 });
const cmd = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant("send" as const), owner }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("recv" as const), owner }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("ack" as const), owner }) },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant("select" as const),
      owner,
      cases: fc.constantFrom(["recv"], ["send"], ["recv", "send"], ["recv", "recv"]),
      once: fc.boolean(),
    }),
  },
  { weight: 5, arbitrary: fc.record({ t: fc.constant("decide" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("abort" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("gone" as const), owner }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("close" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("takeover" as const) }) },
);

interface Case {
  opid: number;
  dir: "recv" | "send";
  id?: string;
  offer?: CaseOffer;
}

interface Selector {
  host: ReplicatedChan;
  owner: number;
  cases: Case[];
}

test("select cases on a replicated channel: losing sends stored nowhere, every completed send acknowledged once, order kept", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.array(cmd, { maxLength: 60 }), async (cap, cmds) => {
      const st = new FakeStream();
      let gen = 0;
      let host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${gen}`);
      let owners: Owner[] = [{}, {}, {}];
      const completed = new Set<string>();
      const attempted = new Set<string>();
      /** Ids of send cases that were never committed: none may ever be stored. */
      const released = new Set<string>();
      const ackedOk: string[] = [];
      const held: { host: ReplicatedChan; owner: number; seq: number; v: string }[] = [];
      let selectors: Selector[] = [];
      let n = 0;
      let opid = 0;
      // Recorded where the host calls back, asserted between commands (a throw there would land
      // in the host's own code, or in a promise nobody awaits).
      const violations: string[] = [];
      /** A receive told "closed and drained": the channel holds no value then, reserved ones included. */
      const toldClosed = (h: ReplicatedChan) => {
        const len = h === host && !h.lost ? h.stat().len : 0;
        if (len > 0) violations.push(`a receive was told "closed" while ${len} values were left`);
      };
      const hold = (h: ReplicatedChan, o: number) => (err: unknown, got?: { seq: number; bytes: Buffer }) => {
        if (!err && got) held.push({ host: h, owner: o, seq: got.seq, v: got.bytes.toString() });
        if ((err as { code?: string } | undefined)?.code === "ChannelClosed") toldClosed(h);
      };
      const endSelector = (s: Selector, except?: Case) => {
        for (const c of s.cases) {
          if (c === except) continue;
          s.host.cancel(owners[s.owner] as Owner, c.opid);
          if (c.id) released.add(c.id);
        }
        selectors = selectors.filter((x) => x !== s);
      };
      for (const c of cmds) {
        if (c.t === "send") {
          const v = `v${n++}`;
          attempted.add(v);
          host.send(owners[c.owner] as Owner, ++opid, Buffer.from(v), v, (err) => {
            if (!err) completed.add(v);
          });
        } else if (c.t === "recv") {
          host.recv(owners[c.owner] as Owner, ++opid, hold(host, c.owner));
        } else if (c.t === "ack") {
          const i = held.findIndex((x) => x.owner === c.owner);
          if (i >= 0) {
            const x = held.splice(i, 1)[0]!;
            x.host.ack(x.seq).then(
              () => ackedOk.push(x.v),
              () => {},
            );
          }
        } else if (c.t === "select") {
          const s: Selector = { host, owner: c.owner, cases: [] };
          const selector = ++opid;
          selectors.push(s);
          for (const dir of c.cases as readonly ("recv" | "send")[]) {
            const k: Case = { opid: ++opid, dir };
            let send: { bytes: Buffer; id: string } | undefined;
            if (dir === "send") {
              k.id = `v${n++}`;
              attempted.add(k.id);
              send = { bytes: Buffer.from(k.id), id: k.id };
            }
            s.cases.push(k);
            const o = owners[c.owner] as Owner;
            host.selectCase(o, k.opid, dir, send, { once: c.once, selector }, (err, offer) => {
              if (err) return;
              if (offer) k.offer = offer;
              else if (!c.once)
                s.host.watchCase(o, k.opid, (e, later) => {
                  if (!e && later) k.offer = later;
                });
            });
          }
        } else if (c.t === "decide" || c.t === "abort") {
          if (selectors.length === 0) continue;
          const s = selectors[c.pick % selectors.length]!;
          const ready = s.cases.filter((k) => k.offer);
          if (c.t === "abort" || ready.length === 0) {
            if (c.t === "abort") endSelector(s);
            continue;
          }
          const k = ready[c.pick % ready.length]!;
          // Commit one case; release the others (as the client does once the commit answered).
          const o = owners[s.owner] as Owner;
          s.host.commitCase(o, k.opid).then(
            (r) => {
              if (r && "seq" in r) held.push({ host: s.host, owner: s.owner, seq: r.seq, v: r.value.toString() });
              if (r && "closed" in r) toldClosed(s.host);
              if (r === null && k.id) completed.add(k.id);
              if (r && "failed" in r && k.id) released.add(k.id);
            },
            () => {},
          );
          endSelector(s, k);
        } else if (c.t === "gone") {
          host.ownerGone(owners[c.owner] as Owner);
          for (let i = held.length - 1; i >= 0; i--) if (held[i]!.owner === c.owner) held.splice(i, 1);
          for (const s of selectors.filter((x) => x.owner === c.owner)) {
            for (const k of s.cases) if (k.id) released.add(k.id);
            selectors = selectors.filter((x) => x !== s);
          }
          owners[c.owner] = {};
        } else if (c.t === "close") {
          host.close().catch(() => {});
        } else if (c.t === "takeover") {
          await settle();
          // Sessions end with the old host (their clients register again with the new one).
          for (const s of selectors) for (const k of s.cases) if (k.id) released.add(k.id);
          selectors = [];
          host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${++gen}`);
          owners = [{}, {}, {}];
        }
        await settle();
        assert.deepEqual(violations, []);
      }
      await settle();
      // End every select and keep every value taken: the host's view must then match the log's.
      for (const s of [...selectors]) endSelector(s);
      for (let i = 0; i < 3; i++) {
        await settle();
        for (const x of held.splice(0))
          await x.host.ack(x.seq).then(
            () => ackedOk.push(x.v),
            () => {},
          );
      }
      // Every session ends: waiting receives go (and nothing they held is left unacknowledged).
      for (const o of owners) host.ownerGone(o);
      await settle();
      for (const id of released) assert.ok(!st.ids.has(id), `send case ${id} lost, yet it is in the log`);
      const drain = async () => {
        for (const g of await drainHost(host, () => ++opid)) ackedOk.push(g.bytes.toString());
      };
      // The live host hands out everything it holds: nothing stays stuck in a released reservation.
      const live = !host.lost;
      if (live) await drain().catch(() => {});
      // Drain through a fresh host: every value still in the channel, in log order.
      host = await ReplicatedChan.resume(st.js, st.jsm, "S", cap, 3, `H${++gen}`);
      if (live) assert.equal(host.stat().len, 0, "the live host had handed out every value");
      let lastSeq = 0;
      for (const g of await drainHost(host, () => ++opid)) {
        assert.ok(g.seq > lastSeq, "drained in log order");
        lastSeq = g.seq;
        ackedOk.push(g.bytes.toString());
      }
      const counts = new Map<string, number>();
      for (const v of ackedOk) counts.set(v, (counts.get(v) ?? 0) + 1);
      for (const v of completed)
        assert.equal(counts.get(v), 1, `${v} (completed) acknowledged ${counts.get(v) ?? 0} times`);
      for (const [v, k] of counts) {
        assert.ok(attempted.has(v), `${v} was never sent`);
        assert.ok(!released.has(v), `${v} was a losing send case`);
        assert.equal(k, 1, `${v} acknowledged ${k} times`);
      }
    }),
    { numRuns: 1500, interruptAfterTimeLimit: 4000 },
  );
});

test("a value reserved for a recv case and released goes back to the head, before later values", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 4, 3, "H");
  for (const v of ["a", "b"]) h.send({}, 0, Buffer.from(v), v, () => {});
  await settle();
  const sel = {};
  let offer: CaseOffer | undefined;
  h.selectCase(sel, 1, "recv", undefined, { once: false }, (_e, o) => {
    offer = o;
  });
  assert.equal(offer, "value");
  assert.equal(h.stat().len, 2, "a reserved value still counts");
  // A plain receive meanwhile gets the next value, not the reserved one.
  let plain: string | undefined;
  h.recv({}, 2, (_e, v) => {
    plain = v?.bytes.toString();
  });
  assert.equal(plain, "b");
  h.cancel(sel, 1);
  let next: string | undefined;
  h.recv({}, 3, (_e, v) => {
    next = v?.bytes.toString();
  });
  assert.equal(next, "a", "released value is at the head again");
  const r = await h.commitCase(sel, 1);
  assert.deepEqual(r, { failed: true }, "a released case cannot be committed");
});

test("send cases: a full channel offers no room; close turns a waiting send case into a failure", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 1, 3, "H");
  const sel = {};
  let offer: CaseOffer | undefined;
  h.selectCase(sel, 1, "send", { bytes: Buffer.from("x"), id: "x" }, { once: false }, (_e, o) => {
    offer = o;
  });
  assert.equal(offer, "room");
  // The reserved slot is occupied: a plain send waits.
  let plainDone = false;
  h.send({}, 2, Buffer.from("y"), "y", () => {
    plainDone = true;
  });
  await settle();
  assert.equal(plainDone, false, "the reserved room is not given to another sender");
  // With `once` and no room, nothing is kept.
  let none: CaseOffer | undefined | "unset" = "unset";
  h.selectCase({}, 3, "send", { bytes: Buffer.from("z"), id: "z" }, { once: true }, (_e, o) => {
    none = o;
  });
  assert.equal(none, undefined);
  assert.equal(h.stat().waitingSenders, 1, "only the plain send waits");
  assert.equal(await h.commitCase(sel, 1), null, "committed: stored");
  assert.ok(st.ids.has("x"));
  // A send case waiting when the channel closes is offered the failure; committing it fails.
  let later: CaseOffer | undefined;
  h.selectCase(sel, 4, "send", { bytes: Buffer.from("w"), id: "w" }, { once: false }, () => {});
  h.watchCase(sel, 4, (_e, o) => {
    later = o;
  });
  await h.close();
  assert.equal(later, "error");
  await assert.rejects(h.commitCase(sel, 4), { code: "ChannelClosed" });
  assert.ok(!st.ids.has("w"), "never stored");
  assert.equal(plainDone, true, "the plain send was ended by the close");
});

test("committing a recv case frees its slot: a sender waiting behind it moves on (cap 0)", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 0, 3, "H");
  const o = {};
  h.send(o, 1, Buffer.from("v0"), "v0", () => {});
  h.send(o, 2, Buffer.from("v1"), "v1", () => {});
  let offer: CaseOffer | undefined;
  h.selectCase(o, 3, "recv", undefined, { once: false }, () => {});
  h.watchCase(o, 3, (_e, x) => {
    offer = x;
  });
  await settle();
  assert.equal(offer, "value", "the waiting recv case made room for v0, which is reserved for it");
  let plain: string | undefined;
  h.recv(o, 4, (_e, v) => {
    plain = v?.bytes.toString();
  });
  await settle();
  const r = await h.commitCase(o, 3);
  assert.equal(r && "value" in r ? r.value.toString() : r, "v0");
  await settle();
  assert.equal(plain, "v1", "the plain receive behind gets the next value");
});

test("default on capacity 0: a recv case with a sender waiting gets its value, not 'not ready'", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 0, 3, "H");
  let sent = false;
  h.send({}, 1, Buffer.from("v"), "v", () => {
    sent = true;
  });
  await settle();
  assert.equal(sent, false, "no receiver: the send waits");
  let answer: CaseOffer | undefined | "none";
  h.selectCase({}, 2, "recv", undefined, { once: true }, (_e, o) => {
    answer = o ?? "none";
  });
  await settle();
  assert.equal(answer, "value");
  // With nothing on its way, `once` answers at once and leaves nothing behind.
  let empty: CaseOffer | undefined | "none";
  h.selectCase({}, 3, "recv", undefined, { once: true }, (_e, o) => {
    empty = o ?? "none";
  });
  assert.equal(empty, "none");
  assert.equal(h.stat().waitingReceivers, 0);
});

test("closed is reported only when no value is left, reserved ones included", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 2, 3, "H");
  h.send({}, 1, Buffer.from("v"), "v", () => {});
  await settle();
  const a = {};
  h.selectCase(a, 2, "recv", undefined, { once: false }, () => {});
  await h.close();
  let plain: { code?: string; v?: string } | undefined;
  h.recv({}, 3, (e, v) => {
    plain = { code: e?.code, v: v?.bytes.toString() };
  });
  await settle();
  assert.equal(plain, undefined, "the reserved value may come back: not closed yet");
  h.cancel(a, 2);
  await settle();
  assert.deepEqual(plain, { code: undefined, v: "v" }, "released: the plain receive gets it");
  let last: { code?: string } | undefined;
  h.recv({}, 4, (e) => {
    last = { code: e?.code };
  });
  await settle();
  assert.equal(last?.code, "ChannelClosed");
});

test("capacity 0: a select's own recv case makes no room for its own send case", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 0, 3, "H");
  const o = {};
  const offers: Record<number, CaseOffer | undefined> = {};
  const watch = (opid: number) =>
    h.watchCase(o, opid, (_e, x) => {
      offers[opid] = x;
    });
  h.selectCase(o, 1, "recv", undefined, { selector: 7 }, () => watch(1));
  h.selectCase(o, 2, "send", { bytes: Buffer.from("x"), id: "x" }, { selector: 7 }, () => watch(2));
  await settle();
  assert.deepEqual(offers, {}, "nothing to meet but itself: nothing is offered");
  // Another select's receive is a counterpart.
  h.selectCase({}, 3, "recv", undefined, { selector: 8 }, () => {});
  await settle();
  assert.equal(offers[2], "room");
});

test("capacity 0: a plain sender behind a select's own send case still meets that select's recv case", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 0, 3, "H");
  const o = {};
  let recvOffer: CaseOffer | undefined;
  h.selectCase(o, 1, "send", { bytes: Buffer.from("own"), id: "own" }, { selector: 7 }, () => {});
  h.selectCase(o, 2, "recv", undefined, { selector: 7 }, () =>
    h.watchCase(o, 2, (_e, x) => {
      recvOffer = x;
    }),
  );
  let plainDone = false;
  h.send({}, 3, Buffer.from("p"), "p", () => {
    plainDone = true;
  });
  await settle();
  assert.equal(recvOffer, "value", "the plain sender's value is reserved for the recv case");
  assert.equal(plainDone, true);
  assert.ok(!st.ids.has("own"), "the select's own send case was not stored");
});

test("a recv case offered 'closed' takes a value handed back since, or waits while another case holds it", async () => {
  const st = new FakeStream();
  const h = await ReplicatedChan.resume(st.js, st.jsm, "S", 2, 3, "H");
  /** Registers a recv case of `owner`; returns what it has been offered so far (watched after). */
  const recvCase = (owner: object, opid: number) => {
    let offer: CaseOffer | undefined;
    h.selectCase(owner, opid, "recv", undefined, { once: false }, (_e, o) => {
      offer = o;
      if (!o) h.watchCase(owner, opid, (_e2, later) => void (offer = later));
    });
    return () => offer;
  };
  const reader = {};
  for (const v of ["v", "w"]) h.send({}, 0, Buffer.from(v), v, () => {});
  await settle();
  const got: string[] = [];
  for (const opid of [1, 2]) h.recv(reader, opid, (_e, v) => void got.push(v?.bytes.toString() ?? "?"));
  await settle();
  assert.deepEqual(got, ["v", "w"]);
  await h.close();
  const a = {};
  assert.equal(recvCase(a, 1)(), "closed", "closed and drained, nothing reserved");
  const x = {};
  assert.equal(recvCase(x, 1)(), "closed");
  // The reader's session ends before it acknowledged: both values go back.
  h.ownerGone(reader);
  await settle();
  // a's offer said "closed", but the channel is not drained any more: a takes the first value.
  const r = await h.commitCase(a, 1);
  assert.equal(r && "value" in r ? r.value.toString() : JSON.stringify(r), "v");
  // The second value is reserved for b's case, after x's "closed" offer: x is not told "closed".
  const b = {};
  assert.equal(recvCase(b, 1)(), "value");
  assert.deepEqual(await h.commitCase(x, 1), { failed: true }, "x was told 'closed' while w was held for b");
  // x's client registers the case again: it waits, and is offered w once b gives it up.
  const xOffer = recvCase(x, 2);
  assert.equal(xOffer(), undefined, "w is held for b: x waits");
  h.cancel(b, 1);
  await settle();
  assert.equal(xOffer(), "value");
  const rx = await h.commitCase(x, 2);
  assert.equal(rx && "value" in rx ? rx.value.toString() : JSON.stringify(rx), "w");
  assert.equal(recvCase({}, 1)(), "closed", "drained again");
});
