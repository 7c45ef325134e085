// Property: whatever the value sizes, the window of sends in flight and the point where the
// producer process exits, every send that completed is in the channel (DESIGN §3.1).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { lenReaches, produce } from "./helpers/producers.ts";

let n = 0;
const fresh = () => `integrity/t${++n}`;

describe("completed sends, property", () => {
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

  test("property: whatever the value sizes and wherever the producer exits, every completed send is in the channel", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 8, max: 300_000 }),
        fc.integer({ min: 1, max: 8 }),
        async (count, bytes, window) => {
          const path = fresh();
          const ch = await at(path).makeChan<Buffer>(64);
          const r = await produce(d.url, `/${d.id}/${path}`, [
            "big",
            "5",
            String(count),
            String(bytes),
            String(window),
          ]);
          assert.equal(r.sent, count);
          const len = await lenReaches(ch, count);
          await ch.scrub();
          assert.equal(len, count);
        },
      ),
      { numRuns: 8 },
    );
  });
});
