// test-runner: heavy (kill -9 at random moments)
// `select` send cases into durable channels (DESIGN §3.1 select, §3.6): the case happens only once
// its value is on stable storage; a case that lost, or a select that was aborted, stores nothing;
// across kill -9 while selects are pending they fail with ServerGone and every select that
// completed has its value in the store after the restart, in the channel it chose, once.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, dial, select } from "../src/index.ts";
import type { Daemon } from "./helpers/daemon.ts";
import { crashAndRestart, dataDirs, killDelays, startOn } from "./helpers/durable.ts";
import { drain } from "./helpers/producers.ts";

const tmp = dataDirs();

/** Closes `ch` and takes everything left in it. */
async function closeAndDrain<T>(ch: Chan<T>): Promise<T[]> {
  await ch.close();
  return drain(ch);
}

describe("durable channel select send cases", () => {
  test("a chosen case is stored, a losing case and an aborted select store nothing, across kill -9", async () => {
    const dir = tmp("sel");
    let d: Daemon = await startOn(dir);
    const chose: number[][] = [[], []];
    const c = await dial(d.url);
    try {
      const a = await c.walk(`/${d.id}/a`).makeChan<number>(100, { durable: true });
      const b = await c.walk(`/${d.id}/b`).makeChan<number>(100, { durable: true });
      const full = await c.walk(`/${d.id}/full`).makeChan<string>(1, { durable: true });
      await full.send("x");
      for (let i = 0; i < 30; i++) {
        const r = await select([a.sendCase(i), b.sendCase(i)]);
        chose[r.index]?.push(i);
        const [sa, sb] = [await a.stat(), await b.stat()];
        assert.equal(sa.len + sb.len, i + 1, "exactly one case happened");
      }
      assert.ok(chose[0]?.length && chose[1]?.length, "both cases were chosen sometimes");
      // Blocked on a full channel, then aborted: the select did not happen.
      await assert.rejects(select([full.sendCase("aborted")], { signal: AbortSignal.timeout(200) }), {
        name: "TimeoutError",
      });
      // Only the receive is ready: the send case loses.
      const r = await select([full.sendCase("lost"), a.recvCase()]);
      assert.deepEqual([r.index, r.value], [1, chose[0]?.[0]]);
      chose[0]?.shift();
      // With default and no room: nothing happens.
      assert.equal((await select([full.sendCase("default")], { default: true })).index, -1);
      // The receive's acknowledgement went with the select's end; a synced send after it (the
      // store commits in order) puts the removal on disk before the crash.
      await b.send(1000);
      chose[1]?.push(1000);
    } finally {
      await c.close().catch(() => {});
    }
    d = await crashAndRestart(d, dir);
    const c2 = await dial(d.url);
    try {
      const a = (await c2.walk(`/${d.id}/a`).get()) as Chan<number>;
      const b = (await c2.walk(`/${d.id}/b`).get()) as Chan<number>;
      const full = (await c2.walk(`/${d.id}/full`).get()) as Chan<string>;
      assert.deepEqual(await closeAndDrain(a), chose[0]);
      assert.deepEqual(await closeAndDrain(b), chose[1]);
      assert.deepEqual(await closeAndDrain(full), ["x"]);
    } finally {
      await c2.close();
      await d.stop();
    }
  });

  test("kill -9 while selects are pending: they fail with ServerGone, completed ones are stored once", async () => {
    const { seed, delays } = killDelays(3, 100, 700);
    const dir = tmp("sel-crash");
    let d: Daemon = await startOn(dir);
    const LOOPS = 6;
    try {
      for (const [round, delay] of delays.entries()) {
        const c = await dial(d.url);
        const done = new Map<string, number>();
        const failures: unknown[] = [];
        try {
          const a = await c.walk(`/${d.id}/a${round}`).makeChan<string>(1_000_000, { durable: true });
          const b = await c.walk(`/${d.id}/b${round}`).makeChan<string>(1_000_000, { durable: true });
          const full = await c.walk(`/${d.id}/full${round}`).makeChan<string>(1, { durable: true });
          await full.send("x");
          const blocked = select([full.sendCase("blocked")]).catch((e: unknown) => e);
          const loop = async (l: number) => {
            for (let i = 0; ; i++) {
              const v = `${l}:${i}`;
              try {
                done.set(v, (await select([a.sendCase(v), b.sendCase(v)])).index);
              } catch (err) {
                failures.push(err);
                return;
              }
            }
          };
          const loops = Array.from({ length: LOOPS }, (_, l) => loop(l));
          await sleep(delay);
          // Restarted once every select has failed (a client that reached the restarted daemon in
          // time would carry its operations over).
          d = await crashAndRestart(d, dir, [], () => Promise.all([...loops, blocked]));
          assert.equal(((await blocked) as { code?: string }).code, "ServerGone", "the blocked select failed");
        } finally {
          await c.close().catch(() => {});
        }
        assert.equal(failures.length, LOOPS);
        for (const e of failures) assert.equal((e as { code?: string }).code, "ServerGone");
        assert.ok(done.size > 0, `round ${round}: some selects completed (seed ${seed})`);
        const c2 = await dial(d.url);
        try {
          const got = [
            await closeAndDrain((await c2.walk(`/${d.id}/a${round}`).get()) as Chan<string>),
            await closeAndDrain((await c2.walk(`/${d.id}/b${round}`).get()) as Chan<string>),
          ];
          const seen = new Map<string, number>();
          for (const [idx, vals] of got.entries()) {
            for (const v of vals) {
              assert.ok(!seen.has(v), `${v} stored once (seed ${seed})`);
              seen.set(v, idx);
            }
          }
          for (const [v, idx] of done) assert.equal(seen.get(v), idx, `${v} is in the channel its select chose`);
          // Besides those, only the selects in flight at the crash (one per loop) may have happened.
          assert.ok(seen.size - done.size <= LOOPS, `${seen.size} stored, ${done.size} completed (seed ${seed})`);
          assert.deepEqual(
            await closeAndDrain((await c2.walk(`/${d.id}/full${round}`).get()) as Chan<string>),
            ["x"],
            "the blocked select stored nothing",
          );
        } finally {
          await c2.close();
        }
      }
    } finally {
      await d.stop();
    }
  });
});
