// test-runner: heavy (a NATS cluster, leases with a 3 s TTL and timed takeovers)
// Takeover of a replicated channel (DESIGN §12): the daemon hosting /@/… is killed with -9 while
// clients (in this process, dialled into other daemons) have a receive blocked and sends going on;
// another daemon takes the lease over and resumes the channel from its log. The blocked receive is
// carried over (not failed), every completed send is received once, and the time from the kill to
// the first send completed through the new host is measured: its median must be at most 5 s.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type Client, dial, type ReplicatedChan } from "../src/index.ts";
import { within } from "./helpers/cli.ts";
import { type Daemon, killAll } from "./helpers/daemon.ts";
import { startStoreCircuit } from "./helpers/store.ts";

after(killAll);

const ROUNDS = 3;

test("killing the host: another daemon takes over within 5 s (median), nothing lost, blocked receive carried over", async () => {
  const sc = await startStoreCircuit(3);
  const clients: Client[] = [];
  try {
    const urls = () =>
      sc.daemons.filter((d) => d.proc.exitCode === null && d.proc.signalCode === null).map((d) => d.url);
    const first = await dial(urls());
    clients.push(first);
    const ch = await first.walk("/@/t").makeChan<number>(64, { replicas: 3 });
    const times: number[] = [];
    let next = 0;
    const received: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const hostId = (await ch.stat()).host;
      const host = sc.daemons.find((d) => d.id === hostId) as Daemon;
      assert.ok(host, `host ${hostId} is one of ours`);
      const others = sc.daemons.filter((d) => d !== host && d.proc.exitCode === null && d.proc.signalCode === null);
      // A producer and a consumer dialled into daemons that survive.
      const prod = await dial(others[0]!.url);
      const cons = await dial(others[others.length - 1]!.url);
      clients.push(prod, cons);
      const p = (await prod.walk("/@/t").get()) as ReplicatedChan<number>;
      const c = (await cons.walk("/@/t").get()) as ReplicatedChan<number>;
      for (let i = 0; i < 5; i++) await p.send(next++);
      for (let i = 0; i < 5; i++) received.push(await c.recv());
      const blocked = c.recv();
      blocked.catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      host.kill("SIGKILL");
      const v = next++;
      await within(15_000, p.send(v), `round ${round}: send after the kill`);
      times.push(performance.now() - t0);
      received.push(await within(10_000, blocked, `round ${round}: the blocked receive`));
      const after = (await p.stat()).host;
      assert.notEqual(after, hostId, "another daemon hosts the channel");
      // Keep three daemons: a new one joins the survivors.
      await sc.add(["--join", others[0]!.url]);
    }
    assert.deepEqual(
      received,
      Array.from({ length: next }, (_, i) => i),
      "every value once, in order",
    );
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log(
      `takeover after kill -9 (ms): ${sorted.map((t) => Math.round(t)).join(", ")}; median ${Math.round(median)}`,
    );
    assert.ok(median <= 5000, `median takeover ${Math.round(median)} ms`);
  } catch (err) {
    // What each daemon said (takeovers, lost leases) is what tells a failure here apart.
    for (const d of sc.daemons) console.log(`--- daemon ${d.id} stderr:\n${d.stderr().slice(-4000)}`);
    throw err;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await sc.stop();
  }
});
