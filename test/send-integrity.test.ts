// test-runner: heavy (memory bounds and kill timing)
// "A completed send is in the channel" (DESIGN §3.1): a producer that exits the moment its sends
// have completed loses nothing — small values, 1 MiB values, stream messages — and its memory stays
// bounded while it sends. Every producer is a real OS process that calls process.exit() right after.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { drain, lenReaches, produce } from "./helpers/producers.ts";

let n = 0;
const fresh = () => `integrity/t${++n}`;

describe("a completed send is in the channel", () => {
  let d: Daemon;
  let client: Client;
  before(async () => {
    d = await startDaemon();
    client = await dial(d.url);
  });
  after(async () => {
    await client?.close();
    await killAll();
  });
  const at = (path: string) => client.walk(`/${d.id}/${path}`);

  test("20 producers that exit right after their last send lose nothing", async () => {
    const path = fresh();
    const ch = await at(path).makeChan<{ who: string; k: number }>(1000);
    const reports = await Promise.all(
      Array.from({ length: 20 }, (_, who) => produce(d.url, `/${d.id}/${path}`, ["small", String(who), "5"])),
    );
    assert.equal(
      reports.reduce((a, r) => a + r.sent, 0),
      100,
    );
    assert.equal(await lenReaches(ch, 100), 100);
    await ch.close();
    const got = (await drain(ch)) as { who: string; k: number }[];
    // Every value, and each producer's in its order.
    for (let who = 0; who < 20; who++) {
      assert.deepEqual(
        got.filter((v) => v.who === String(who)).map((v) => v.k),
        [0, 1, 2, 3, 4],
      );
    }
  });

  test("sends that are not awaited wait past the unsent bound instead of growing memory", async () => {
    const path = fresh();
    const ch = await at(path).makeChan<Buffer>(400);
    // 100 MiB issued at once: the window is the whole count, so only the bound holds the sends back.
    const r = await produce(d.url, `/${d.id}/${path}`, ["big", "3", "100", String(1 << 20), "100"]);
    assert.equal(r.sent, 100);
    assert.equal(await lenReaches(ch, 100), 100);
    // The caller allocated its 100 values itself; the client holds them, but adds no copy of each
    // in a write queue (that would be another 100 MiB).
    assert.ok(r.peakRss < 250 * 1024 * 1024, `producer peak RSS ${(r.peakRss / 2 ** 20).toFixed(0)} MiB`);
    await ch.scrub();
  });
});
