// A connection that breaks while its server lives (DESIGN §3.1): the client reaches the server
// again and carries its work over. Every send it had not seen acknowledged goes again with its
// sequence number and is stored once: nothing lost, nothing duplicated, order kept. Receivers
// reopen; a blocked receive and a blocked send complete. A relay between client and daemon cuts
// every connection through it at moments the test picks (bounded in count).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { cuttingRelay } from "./helpers/relay.ts";
import { within } from "./helpers/wait.ts";

describe("reconnection after a broken connection", () => {
  let d: Daemon;
  let direct: Client;
  let relay: Awaited<ReturnType<typeof cuttingRelay>>;
  before(async () => {
    d = await startDaemon();
    direct = await dial(d.url);
    relay = await cuttingRelay(Number(/:(\d+)\//.exec(d.url)?.[1]));
  });
  after(async () => {
    relay?.close();
    await direct?.close();
    await killAll();
  });

  test("sends through 10 cuts, 60–180 ms apart: the client rides through every one; every completed send stored exactly once, in order", async () => {
    // The sends go on until the tenth cut: each link breaks soon after it was re-established, but
    // each carried answers first, so none of the breaks counts towards giving the server up.
    const N = 4000;
    const mine = await direct.walk(`/${d.id}/cut/sends`).makeChan<number>(200_000);
    const client = await dial(relay.url);
    try {
      const ch = (await client.walk(`/${d.id}/cut/sends`).get()) as Chan<number>;
      let cuts = 0;
      const cutter = (async () => {
        while (cuts < 10) {
          await sleep(60 + Math.floor(Math.random() * 120));
          relay.cut();
          cuts++;
        }
      })();
      const ring: Promise<void>[] = [];
      let sent = 0;
      for (; (sent < N || cuts < 10) && sent < 150_000; sent++) {
        ring.push(ch.send(sent));
        if (ring.length >= 32) await ring.shift();
        if (sent % 50 === 0) await sleep(2); // spread the sends over the cuts
      }
      await Promise.all(ring);
      await cutter;
      assert.equal(cuts, 10);
      assert.ok(relay.joined() >= 8, `${relay.joined()} connections: the client reconnected after the cuts`);
      assert.equal((await mine.stat()).len, sent);
      await mine.close();
      const got: number[] = [];
      for await (const v of mine.iterate({ prefetch: 256 })) got.push(v);
      assert.equal(got.length, sent);
      assert.ok(
        got.every((v, k) => v === k),
        "every value once, in order",
      );
    } finally {
      await client.close();
    }
  });

  test("a blocked recv, a blocked unbuffered send, an iteration and a consume() run carry over a cut", async () => {
    const client = await dial(relay.url);
    try {
      const a = await client.walk(`/${d.id}/cut/a`).makeChan<string>(0);
      const b = await client.walk(`/${d.id}/cut/b`).makeChan<string>(0);
      const c = await client.walk(`/${d.id}/cut/c`).makeChan<number>(16);
      const e = await client.walk(`/${d.id}/cut/e`).makeChan<number>(16);
      const blockedRecv = a.recv({ signal: AbortSignal.timeout(20_000) });
      const blockedSend = b.send("from the client", { signal: AbortSignal.timeout(20_000) });
      const seen: number[] = [];
      const iterating = (async () => {
        for await (const v of c.iterate({ prefetch: 4 })) seen.push(v);
      })();
      const seenE: number[] = [];
      const consuming = e.consume((v) => void seenE.push(v), { prefetch: 4 });
      const feedC = (await direct.walk(`/${d.id}/cut/c`).get()) as Chan<number>;
      const feedE = (await direct.walk(`/${d.id}/cut/e`).get()) as Chan<number>;
      const M = 400;
      for (let k = 0; k < M; k++) {
        await Promise.all([feedC.send(k), feedE.send(k)]);
        if (k === 100 || k === 250) relay.cut();
      }
      await feedC.close();
      await feedE.close();
      await sleep(300);
      relay.cut();
      await sleep(300);
      const feedA = (await direct.walk(`/${d.id}/cut/a`).get()) as Chan<string>;
      await feedA.send("to the client");
      assert.equal(await blockedRecv, "to the client");
      const takeB = (await direct.walk(`/${d.id}/cut/b`).get()) as Chan<string>;
      assert.equal(await takeB.recv(), "from the client");
      await blockedSend;
      await iterating;
      await consuming;
      // Every value arrived, first arrivals in order; a value seen twice is one that had been
      // handed out but not yet acknowledged when a cut came (at most the window per cut).
      for (const [how, got] of [
        ["iterate", seen],
        ["consume", seenE],
      ] as const) {
        const first = [...new Set(got)];
        assert.deepEqual(
          first,
          Array.from({ length: M }, (_, k) => k),
          how,
        );
        assert.ok(got.length - M <= 3 * 4, `${how}: ${got.length - M} values seen twice`);
      }
    } finally {
      await client.close();
    }
  });

  test("a link cut right after every reconnection, before the server says anything, is given up after five: ServerGone", async () => {
    const client = await dial(relay.url);
    try {
      const ch = await client.walk(`/${d.id}/cut/flap`).makeChan<string>(0);
      const blocked = ch.recv();
      blocked.catch(() => {});
      const before = relay.joined();
      relay.flap(300);
      relay.cut();
      const t0 = performance.now();
      await assert.rejects(
        within(10_000, blocked, "the blocked recv fails"),
        (e: Error) => e.name === "ServerGone" && /lost connection/.test(e.message),
      );
      const took = performance.now() - t0;
      const joins = relay.joined() - before;
      await sleep(1000);
      assert.equal(relay.joined() - before, joins, "no more attempts once given up");
      assert.ok(joins >= 1 && joins <= 12, `${joins} reconnections in ${Math.round(took)} ms`);
    } finally {
      relay.flap(undefined);
      await client.close();
    }
  });
});
