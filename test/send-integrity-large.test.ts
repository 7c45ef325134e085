// test-runner: heavy (memory bounds and kill timing)
// "A completed send is in the channel" for large values (DESIGN §3.1): a producer process sends
// 300 values of 1 MiB with 4 in flight and exits at once; every value arrives, in order, and the
// producer's memory stays bounded — on a quiet machine and beside two CPU burners.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { burners, lenReaches, type ProducerReport, produce } from "./helpers/producers.ts";

let n = 0;
const fresh = () => `integrity-large/t${++n}`;

describe("large values: a completed send is in the channel", () => {
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

  for (const busy of [false, true]) {
    test(`300 values of 1 MiB, 4 in flight, then exit: all arrive, producer memory bounded${busy ? " (beside two CPU burners)" : ""}`, async () => {
      const path = fresh();
      const ch = await at(path).makeChan<Buffer>(1000);
      const stop = busy ? burners(2) : async () => {};
      let r: ProducerReport;
      try {
        r = await produce(d.url, `/${d.id}/${path}`, ["big", "7", "300", String(1 << 20), "4"]);
      } finally {
        await stop();
      }
      assert.equal(r.sent, 300);
      assert.equal(await lenReaches(ch, 300), 300);
      // The values themselves (4 in flight) and the 4 MiB unsent bound, plus Node itself; without the
      // bound the producer grew to about 390 MiB.
      assert.ok(r.peakRss < 160 * 1024 * 1024, `producer peak RSS ${(r.peakRss / 2 ** 20).toFixed(0)} MiB`);
      await ch.close();
      let k = 0;
      for await (const v of ch.iterate({ prefetch: 8 })) {
        assert.equal(v.length, 1 << 20);
        assert.equal(v.readUInt32BE(0), 7);
        assert.equal(v.readUInt32BE(4), k++);
      }
      assert.equal(k, 300);
    });
  }
});
