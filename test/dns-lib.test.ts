// The nameserver from the library, in this client process, against a daemon in another process;
// and a large answer: truncated over UDP, whole over TCP.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial, Nameserver, NotFound } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { dig } from "./helpers/dig.ts";
import { LOOPBACK_ADDR, portIsFree, portOf } from "./helpers/dns.ts";

after(killAll);

describe("nameserver from the library", () => {
  let d: Daemon;
  let c: Client;

  before(async () => {
    d = await startDaemon();
    c = await dial(d.url);
  });
  after(async () => {
    await c?.close();
  });

  test("makeNameserver, set, get, peek, unset, and await using", async () => {
    const a = c.walk(`/${d.id}/lib/ns`);
    let port = 0;
    {
      await using ns = await a.makeNameserver();
      assert.match(ns.address, LOOPBACK_ADDR);
      port = portOf(ns.address);
      await ns.set("api.circuit. 15 IN A 10.2.0.1");
      await ns.set("api.circuit. 15 IN A 10.2.0.2");
      await ns.set("api.circuit. 15 IN A 10.2.0.1"); // the same record again: no duplicate
      const again = await a.get();
      assert.ok(again instanceof Nameserver);
      assert.equal(again.address, ns.address);
      const st = await again.peek();
      assert.equal(st.address, ns.address);
      assert.deepEqual(
        st.records.map((r) => [r.name, r.ttl, r.type, r.data]),
        [
          ["api.circuit.", 15, "A", "10.2.0.1"],
          ["api.circuit.", 15, "A", "10.2.0.2"],
        ],
      );
      const r = await dig(ns.address, "api.circuit", "A");
      assert.deepEqual(
        r.answers.map((x) => [x.ttl, x.data]),
        [
          [15, "10.2.0.1"],
          [15, "10.2.0.2"],
        ],
      );
      assert.equal(await ns.unset("api.circuit"), 2);
      await assert.rejects(ns.unset("api.circuit"), NotFound);
      assert.equal((await dig(ns.address, "api.circuit", "A")).status, "NXDOMAIN");
      // Malformed input: TypeError before any I/O.
      await assert.rejects(ns.set("api.circuit. A nope"), TypeError);
      await assert.rejects(ns.set("api.circuit. 60 IN A 10.0.0.1\nb.circuit. A 10.0.0.2"), TypeError);
      await assert.rejects(ns.unset("a b"), TypeError);
      await assert.rejects(a.walk("x").makeNameserver("localhost"), TypeError);
      await assert.rejects(a.makeNameserver(), { code: "AnchorBusy" });
    }
    // `await using` scrubbed it: the anchor is empty and the port free.
    assert.equal(await a.get(), null);
    await portIsFree(port);
  });

  test("a handle does not reach a later nameserver at the same anchor", async () => {
    const a = c.walk(`/${d.id}/lib/again`);
    const first = await a.makeNameserver();
    await first.scrub();
    const second = await a.makeNameserver("127.0.0.1:0");
    await assert.rejects(first.set("x.circuit. A 10.0.0.1"), NotFound);
    await second.set("x.circuit. A 10.0.0.1");
    assert.equal((await dig(second.address, "x.circuit", "A")).answers.length, 1);
    await second.scrub();
  });

  test("a large answer is truncated over UDP and dig gets it whole over TCP", async () => {
    const ns = await c.walk(`/${d.id}/lib/big`).makeNameserver();
    for (let i = 0; i < 30; i++) await ns.set(`many.circuit. 10 TXT "${String(i).padStart(2, "0")}${"x".repeat(180)}"`);
    await ns.set("small.circuit. A 10.0.0.1");
    const [tcEdns, tcPlain, retried, tcp, small] = await Promise.all([
      // Told not to retry, dig shows the truncated UDP answer: TC and nothing in it.
      dig(ns.address, "many.circuit", "TXT", ["+ignore"]),
      dig(ns.address, "many.circuit", "TXT", ["+ignore", "+noedns"]),
      dig(ns.address, "many.circuit", "TXT"),
      dig(ns.address, "many.circuit", "TXT", ["+tcp"]),
      dig(ns.address, "small.circuit", "A", ["+ignore"]),
    ]);
    for (const tc of [tcEdns, tcPlain]) {
      assert.ok(tc.flags.includes("tc"), `TC over UDP: ${tc.out}`);
      assert.equal(tc.answers.length, 0);
    }
    assert.ok(retried.retriedOverTcp, retried.out);
    assert.equal(retried.answers.length, 30);
    assert.ok(!retried.flags.includes("tc"));
    assert.equal(tcp.answers.length, 30);
    assert.deepEqual(
      tcp.answers.map((a) => a.data.slice(1, 3)),
      Array.from({ length: 30 }, (_, i) => String(i).padStart(2, "0")),
    );
    // A small answer still fits in one datagram.
    assert.ok(!small.flags.includes("tc"));
    assert.equal(small.answers.length, 1);
    await ns.scrub();
  });
});
