// Client failover (DESIGN §6): a client dialled into server A keeps working when A dies. Its
// blocked receive on B's channel and its iteration over C's channel complete with the right values,
// nothing lost or duplicated; it moves to another member (serverId changes, a "failover" event),
// new operations work, and only operations on A's own elements fail with ServerGone.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type FailoverEvent, ServerGone } from "../src/index.ts";
import { type Daemon, killAll, runCli, spawnCli, startDaemon } from "./helpers/daemon.ts";
import { until } from "./helpers/wait.ts";

after(killAll);

/** Three daemons joined into one circuit, and a client per daemon that sees all three. */
async function circuit3(): Promise<Daemon[]> {
  const a = await startDaemon();
  const b = await startDaemon(["--join", a.url]);
  const c = await startDaemon(["--join", a.url]);
  const probe = await dial(a.url);
  await until("three members", 10_000, async () => (await probe.servers()).length === 3);
  await probe.close();
  return [a, b, c];
}

describe("client failover", () => {
  test("dial-in server killed -9: a blocked recv on B and an iteration on C go on; the client moves", async () => {
    const [a, b, c] = (await circuit3()) as [Daemon, Daemon, Daemon];
    let client: Client | undefined;
    let feeder: Client | undefined;
    try {
      client = await dial([a.url, b.url]);
      assert.equal(client.serverId, a.id);
      const onB = await client.walk(`/${b.id}/q`).makeChan<string>(0);
      const onC = await client.walk(`/${c.id}/q`).makeChan<number>(8);
      const onA = await client.walk(`/${a.id}/q`).makeChan<number>(8);
      const moved = new Promise<FailoverEvent>((resolve) => client?.once("failover", resolve));

      // Another client, dialled into C, feeds both channels.
      feeder = await dial(c.url);
      const feedB = await feeder.walk(`/${b.id}/q`).get();
      const feedC = await feeder.walk(`/${c.id}/q`).get();
      assert.ok(feedB?.kind === "chan" && feedC?.kind === "chan");

      const blocked = onB.recv({ signal: AbortSignal.timeout(30_000) });
      const seen: number[] = [];
      const iterating = (async () => {
        for await (const v of onC.iterate({ prefetch: 4 })) seen.push(v);
      })();
      const N = 300;
      const feeding = (async () => {
        for (let i = 0; i < N; i++) {
          await feedC.send(i);
          if (i % 10 === 0) await sleep(10);
        }
        await feedC.close();
      })();

      await until("iteration under way", 10_000, () => seen.length > 20);
      a.kill("SIGKILL");
      const t0 = Date.now();
      const ev = await moved;
      const took = Date.now() - t0;
      assert.equal(ev.from, a.id);
      assert.ok(ev.to === b.id || ev.to === c.id, `moved to ${ev.to}`);
      assert.equal(client.serverId, ev.to);
      assert.ok(took < 6000, `moved ${took} ms after the kill`);

      // New operations work, through the new dial-in server.
      const fresh = await client.walk(`/${b.id}/fresh`).makeChan<number>(1);
      await fresh.send(1);
      assert.equal(await fresh.recv(), 1);
      assert.deepEqual((await client.servers()).map((s) => s.id).sort(), [b.id, c.id].sort());
      // Elements of the dead server are gone.
      await assert.rejects(onA.send(1), ServerGone);

      // The blocked receive on B completes with the value sent after the move.
      await feedB.send("after the move");
      assert.equal(await blocked, "after the move");

      // The iteration saw every value exactly once, in order.
      await feeding;
      await iterating;
      assert.deepEqual(
        seen,
        Array.from({ length: N }, (_, i) => i),
      );
    } finally {
      await client?.close();
      await feeder?.close();
      await Promise.all([a, b, c].map((d) => d.stop()));
    }
  });

  test("dial with a list takes the first server that answers; CIRCUIT may hold a list", async () => {
    const [a, b, c] = (await circuit3()) as [Daemon, Daemon, Daemon];
    try {
      const deadUrl = a.url;
      a.kill("SIGKILL");
      await a.exited;
      const client = await dial(`${deadUrl},${b.url}`);
      assert.equal(client.serverId, b.id);
      await client.close();
      const r = await runCli(["ls", "/"], { env: { CIRCUIT: `${deadUrl},${c.url}` } });
      assert.equal(r.code, 0, r.stderr);
      await assert.rejects(dial(`${deadUrl}`), ServerGone);
      await assert.rejects(() => dial(""), TypeError);
    } finally {
      await Promise.all([a, b, c].map((d) => d.stop()));
    }
  });

  test("circuit recv dialled into a list outlives its dial-in server", async () => {
    const [a, b, c] = (await circuit3()) as [Daemon, Daemon, Daemon];
    try {
      const mk = await runCli(["-d", b.url, "mkchan", `/${b.id}/cliq`, "0"]);
      assert.equal(mk.code, 0, mk.stderr);
      const recv = spawnCli(["-d", `${a.url},${b.url}`, "recv", `/${b.id}/cliq`]);
      await sleep(1500); // the receive is blocked on B
      a.kill("SIGKILL");
      await sleep(3000); // well past the kill: the CLI has lost its dial-in server by now
      const send = await runCli(["-d", c.url, "send", "--json", `/${b.id}/cliq`], { input: '"still here"' });
      assert.equal(send.code, 0, send.stderr);
      const r = await recv.result;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), '"still here"\n');
    } finally {
      await Promise.all([a, b, c].map((d) => d.stop()));
    }
  });
});
