// A stream writer's `sent` resolves once the whole message has left the process, and a graceful
// client.close() lets ended writers finish (DESIGN §3.1): 20 sender processes each end a 2 MiB
// stream message, await `sent`, close and exit; every receiver gets its whole message.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { produce } from "./helpers/producers.ts";

let n = 0;
const fresh = () => `integrity/t${++n}`;

describe("graceful stream senders", () => {
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

  test("20 graceful stream senders on an unbuffered channel: every receiver gets its whole message", async () => {
    const path = fresh();
    const ch = await at(path).makeChan<unknown>(0);
    const size = 2 << 20;
    const receivers = Array.from({ length: 20 }, async () => {
      const r = await ch.recvStream({ signal: AbortSignal.timeout(60_000) });
      const parts: Buffer[] = [];
      for await (const c of r) parts.push(c as Buffer);
      return Buffer.concat(parts);
    });
    const reports = await Promise.all(
      Array.from({ length: 20 }, (_, who) =>
        produce(d.url, `/${d.id}/${path}`, ["stream", String(who + 1), String(size)]),
      ),
    );
    assert.ok(reports.every((r) => r.sent === 1));
    const got = await Promise.all(receivers);
    const whos = got.map((b) => {
      assert.equal(b.length, size);
      return b.readUInt32BE(0);
    });
    assert.deepEqual(
      whos.sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    await ch.scrub();
  });
});
