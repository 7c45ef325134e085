// test-runner: heavy (failover within the failure-detection bound)
// Client failover (DESIGN §6): a client dialled into server A keeps working when A dies. Its
// blocked receive on B's channel and its iteration over C's channel complete with the right values,
// nothing lost or duplicated; it moves to another member (serverId changes, a "failover" event),
// new operations work, and only operations on A's own elements fail with ServerGone.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type FailoverEvent, ServerGone, select } from "../src/index.ts";
import { type Daemon, killAll, runCli, spawnCli, startDaemon } from "./helpers/daemon.ts";
import { until } from "./helpers/wait.ts";

after(killAll);

/** Three daemons joined into one circuit, each of which sees all three. */
async function circuit3(): Promise<Daemon[]> {
  const a = await startDaemon();
  const b = await startDaemon(["--join", a.url]);
  const c = await startDaemon(["--join", a.url]);
  // Each of them knows the other two (B hears of C only through gossip, a moment after A does).
  for (const d of [a, b, c]) {
    const probe = await dial(d.url);
    await until(`three members seen from ${d.id}`, 10_000, async () => (await probe.servers()).length === 3);
    await probe.close();
  }
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
      // Awaited below; should a step before that throw, the close in `finally` fails it, and the
      // step's own error is the one to see (it is logged in `catch`).
      blocked.catch(() => {});
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

      // A select over channels of B and C, blocked across the move.
      const selB = await client.walk(`/${b.id}/sel`).makeChan<string>(0);
      const selC = await client.walk(`/${c.id}/sel`).makeChan<string>(0);
      const selecting = select<string>([selB.recvCase(), selC.recvCase()], { signal: AbortSignal.timeout(30_000) });
      selecting.catch(() => {});
      // A process on C printing a numbered line every 50 ms, read live across the move.
      const proc = await client
        .walk(`/${c.id}/ticker`)
        .makeProc(
          { path: "sh", args: ["-c", "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 0.05; done"] },
          { stdout: true },
        );
      let printed = "";
      proc.stdout.setEncoding("utf8");
      const reading = (async () => {
        for await (const chunk of proc.stdout) printed += chunk;
      })();

      for (const p of [iterating, feeding, reading]) p.catch(() => {});
      await until("iteration under way", 10_000, () => seen.length > 20);
      await until("output under way", 10_000, () => printed.length > 0);
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

      // The select completes with the one value sent after the move; the other channel keeps none.
      const feedSelC = await feeder.walk(`/${c.id}/sel`).get();
      assert.ok(feedSelC?.kind === "chan");
      await feedSelC.send("selected");
      assert.deepEqual(await selecting, { index: 1, value: "selected" });
      assert.equal((await selB.stat()).len, 0);

      // The process's output arrived whole: every line once, in order, no gap across the move.
      await reading;
      assert.deepEqual(
        printed.trim().split("\n").map(Number),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      assert.equal((await proc.wait()).exitCode, 0);

      // The iteration saw every value exactly once, in order.
      await feeding;
      await iterating;
      assert.deepEqual(
        seen,
        Array.from({ length: N }, (_, i) => i),
      );
    } catch (err) {
      console.log("failover test failed:", err);
      // Membership events (a member declared dead or left) are what tell a failure here apart.
      for (const d of [a, b, c]) {
        const events = d
          .stderr()
          .split("\n")
          .filter((l) => /"event":"(join|leave|suspect|dead|join-failed)"/.test(l));
        console.log(`--- ${d.id}:\n${events.join("\n")}`);
      }
      throw err;
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

  test("circuit recv, stdout and wait dialled into a list outlive their dial-in server", async () => {
    const [a, b, c] = (await circuit3()) as [Daemon, Daemon, Daemon];
    try {
      const mk = await runCli(["-d", b.url, "mkchan", `/${b.id}/cliq`, "0"]);
      assert.equal(mk.code, 0, mk.stderr);
      const recv = spawnCli(["-d", `${a.url},${b.url}`, "recv", `/${b.id}/cliq`]);
      // A process on B printing a numbered line every 100 ms for about 6 s, followed by
      // `circuit stdout` and `circuit wait` dialled into A first.
      const script = "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 0.1; done";
      const mkp = await runCli(["-d", b.url, "mkproc", `/${b.id}/ticker`, "--", "sh", "-c", script]);
      assert.equal(mkp.code, 0, mkp.stderr);
      const out = spawnCli(["-d", `${a.url},${b.url}`, "stdout", `/${b.id}/ticker`]);
      const wait = spawnCli(["-d", `${a.url},${b.url}`, "wait", `/${b.id}/ticker`]);
      await sleep(1500); // the receive is blocked on B
      a.kill("SIGKILL");
      await sleep(3000); // well past the kill: the CLI has lost its dial-in server by now
      const send = await runCli(["-d", c.url, "send", "--json", `/${b.id}/cliq`], { input: '"still here"' });
      assert.equal(send.code, 0, send.stderr);
      const r = await recv.result;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), '"still here"\n');
      const o = await out.result;
      assert.equal(o.code, 0, o.stderr);
      assert.deepEqual(
        o.stdout.toString().trim().split("\n").map(Number),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      const w = await wait.result;
      assert.equal(w.code, 0, w.stderr);
      assert.equal(JSON.parse(w.stdout.toString()).exitCode, 0);
    } finally {
      await Promise.all([a, b, c].map((d) => d.stop()));
    }
  });
});
