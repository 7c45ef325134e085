// test-runner: alone (kills NATS nodes: the daemons it starts wait for JetStream to elect new leaders, which a busy neighbour stretches past their bounds)
// Chaos on a replicated channel (DESIGN §12, issue #14): producers and a consumer work on /@/q
// (R = 3) while, at random moments, the hosting daemon is killed with -9 or stopped with SIGSTOP,
// and a NATS node is killed (once together with the host). Bounded in events and time. At the end
// every completed send was received exactly once, apart from counted redeliveries of values that
// were delivered but not yet acknowledged, and each producer's values arrived in order.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type ReplicatedChan } from "../src/index.ts";
import { type Daemon, killAll, running } from "./helpers/daemon.ts";
import { startStoreCircuit } from "./helpers/store.ts";

after(killAll);

const PRODUCERS = 3;
const EVENTS = 4;
const CHAOS_MS = 20_000;
const DRAIN_MS = 15_000;

type V = { p: number; i: number };

// 20 s of chaos, up to 30 s for the producers' last sends and 15 s of drain, and a daemon started
// during the chaos may wait up to 15 s for JetStream's elections: more than the runner's 60 s for
// a file run beside others (the files alone get 180 s, scripts/run-tests.mjs).
test("host killed or paused and a NATS node killed at random moments: every completed send received once, in order", {
  timeout: 150_000,
}, async () => {
  const sc = await startStoreCircuit(3);
  const clients: Client[] = [];
  const live = () => sc.daemons.filter((d) => running(d.proc) && !paused.has(d));
  const paused = new Set<Daemon>();
  let stop = false;
  // The consumer receives until this moment: set once the producers are done, or when the test fails.
  const drainUntil = { at: Number.POSITIVE_INFINITY };
  try {
    const urls = sc.daemons.map((d) => d.url);
    const admin = await dial(urls);
    clients.push(admin);
    await admin.walk("/@/q").makeChan(32, { replicas: 3 });

    const completed: V[][] = Array.from({ length: PRODUCERS }, () => []);
    const failed: V[] = [];
    const failures: string[] = [];
    const producers = Array.from({ length: PRODUCERS }, async (_, p) => {
      const c = await dial(urls);
      clients.push(c);
      const ch = (await c.walk("/@/q").get()) as ReplicatedChan<V>;
      for (let i = 0; !stop; i++) {
        const v = { p, i };
        try {
          await ch.send(v);
          completed[p]!.push(v);
        } catch (err) {
          failed.push(v);
          failures.push(`${p}:${i} ${(err as Error).name}: ${(err as Error).message}`);
        }
      }
    });

    const got: V[] = [];
    let consumerError: unknown;
    const consumerClient = await dial([...urls].reverse());
    clients.push(consumerClient);
    const cch = (await consumerClient.walk("/@/q").get()) as ReplicatedChan<V>;
    const total = () => completed.reduce((n, a) => n + a.length, 0);
    // When (ms into the test) the consumer's receives timed out: a value left behind is told apart
    // from a consumer that could not reach the channel.
    const timeouts: number[] = [];
    const t0 = performance.now();
    const consumer = (async () => {
      while (performance.now() < drainUntil.at) {
        try {
          got.push(await cch.recv({ signal: AbortSignal.timeout(2000) }));
        } catch (err) {
          if ((err as Error).name === "TimeoutError") {
            timeouts.push(Math.round(performance.now() - t0));
            // Done once the producers are (the drain has begun) and every completed send is in: a
            // send still in flight when `stop` is set may complete after this check.
            const drained = drainUntil.at < Number.POSITIVE_INFINITY;
            if (drained && new Set(got.map((v) => `${v.p}:${v.i}`)).size >= total()) return;
            continue;
          }
          consumerError = err;
          return;
        }
      }
    })();

    const log: string[] = [];
    let natsDown: (typeof sc.nats.nodes)[0] | undefined;
    for (let e = 0; e < EVENTS && performance.now() - t0 < CHAOS_MS; e++) {
      await sleep(1500 + Math.random() * 2500);
      let hostId: string | undefined;
      try {
        hostId = (
          await ((await admin.walk("/@/q").get()) as ReplicatedChan).stat({ signal: AbortSignal.timeout(8000) })
        ).host;
      } catch (err) {
        log.push(`stat failed: ${(err as Error).message}`);
      }
      const host = sc.daemons.find((d) => d.id === hostId);
      if (natsDown) {
        await natsDown.restart();
        log.push(`NATS node ${natsDown.port} restarted`);
        natsDown = undefined;
      }
      const order = (process.env.CHAOS_ORDER ?? "kill,kill+nats,stop,kill").split(",");
      const kind = order[e % order.length];
      if ((kind === "kill" || kind === "kill+nats") && host) {
        host.kill("SIGKILL");
        await host.exited;
        log.push(`killed host ${host.id}`);
      }
      if (kind === "stop" && host) {
        host.kill("SIGSTOP");
        paused.add(host);
        log.push(`stopped host ${host.id}`);
        setTimeout(() => {
          host.kill("SIGCONT");
          paused.delete(host);
          log.push(`continued ${host.id}`);
        }, 7000).unref();
      }
      if (kind === "nats" || kind === "kill+nats") {
        natsDown = sc.nats.nodes[Math.floor(Math.random() * sc.nats.nodes.length)]!;
        await natsDown.kill();
        log.push(`killed NATS node ${natsDown.port}`);
      }
      // The clients need a live daemon to reach (DESIGN §12: "as long as the client can reach any
      // live daemon"): keep three that answer, each joined to one that does.
      while (live().length < 3) {
        const d = await sc.add(["--join", live()[0]!.url]);
        log.push(`started ${d.id}`);
      }
    }
    await sleep(2000);
    if (natsDown) await natsDown.restart();
    stop = true;
    await Promise.race([Promise.all(producers), sleep(30_000, undefined, { ref: false })]);
    drainUntil.at = performance.now() + DRAIN_MS;
    await consumer;
    if (process.env.CHAOS_DEBUG) console.log(`failures: ${failures.join(" | ")}`);
    assert.equal(consumerError, undefined, `the consumer failed: ${consumerError}`);

    // Every completed send arrived; duplicates are counted and bounded; per-producer order held.
    const seen = new Map<string, number>();
    for (const v of got) seen.set(`${v.p}:${v.i}`, (seen.get(`${v.p}:${v.i}`) ?? 0) + 1);
    const missing = completed.flat().filter((v) => !seen.has(`${v.p}:${v.i}`));
    const duplicates = [...seen.values()].reduce((n, c) => n + c - 1, 0);
    const failedKeys = new Set(failed.map((v) => `${v.p}:${v.i}`));
    const sentKeys = new Set(completed.flat().map((v) => `${v.p}:${v.i}`));
    const phantom = [...seen.keys()].filter((k) => !sentKeys.has(k) && !failedKeys.has(k));
    console.log(
      `chaos: ${log.join("; ")}; sent ${total()} completed, ${failed.length} failed; received ${got.length}, duplicates ${duplicates}`,
    );
    if (missing.length > 0) {
      const st = await ((await admin.walk("/@/q").get()) as ReplicatedChan).stat().catch((e) => String(e));
      console.log(
        `missing ${JSON.stringify(missing.slice(0, 20))}; stat ${JSON.stringify(st)}; failures ${failures.join(" | ")}`,
      );
      console.log(
        `consumer timeouts at ${timeouts.slice(-12).join(", ")} ms; stopped at ${Math.round(performance.now() - t0)} ms`,
      );
      const again = await cch.recv({ signal: AbortSignal.timeout(10_000) }).then(
        (v) => JSON.stringify(v),
        (e) => String(e),
      );
      console.log(`one more receive: ${again}`);
      const last = new Map<number, number>();
      for (const v of got) last.set(v.p, v.i);
      console.log(`last received per producer ${JSON.stringify([...last])}`);
      // The daemons' warnings (lost hosting, takeover retries, duplicate appends) tell the story.
      for (const d of sc.daemons) {
        const warn = d
          .stderr()
          .split("\n")
          .filter((l) => l.includes('"level":"warn"') || l.includes("takeover") || l.includes("dup-append"));
        console.log(`--- ${d.id}:\n${warn.join("\n")}`);
      }
    }
    assert.deepEqual(missing, [], "no completed send is lost");
    assert.deepEqual(phantom, [], "nothing is received that nobody sent");
    // One consumer acknowledges each value before asking for the next: at most a couple of
    // values per host failure can be delivered and not yet acknowledged.
    assert.ok(duplicates <= 3 * EVENTS, `${duplicates} redeliveries`);
    const firstSeen = new Set<string>();
    const lastOf = new Map<number, number>();
    for (const v of got) {
      const k = `${v.p}:${v.i}`;
      if (firstSeen.has(k)) continue;
      firstSeen.add(k);
      const last = lastOf.get(v.p) ?? -1;
      assert.ok(v.i > last, `producer ${v.p}: ${v.i} arrived after ${last}`);
      lastOf.set(v.p, v.i);
    }
    assert.ok(total() > 50, `the producers made progress through the chaos (${total()} sends)`);
  } finally {
    stop = true;
    drainUntil.at = 0; // a failed test does not leave the consumer receiving
    for (const d of paused) d.kill("SIGCONT");
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await sc.stop();
  }
});
