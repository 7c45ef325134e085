// A stream writer's `sent` resolves once the whole message has left the process, and a graceful
// client.close() lets ended writers finish (DESIGN §3.1): 20 sender processes each end a 2 MiB
// stream message, await `sent`, close and exit; every receiver gets its whole message. And the
// windows: a stream message nobody has taken yet gets only a small one (a channel full of them
// holds little of each in the daemon); taken, it gets the full one.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { STREAM_WAITING_WINDOW, STREAM_WINDOW } from "../src/wire/protocol.ts";
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

  test("a buffered stream message gets a small window until taken, then the full one", async () => {
    const ch = await at(fresh()).makeChan<unknown>(4);
    const size = 16 * STREAM_WINDOW;
    const chunk = Buffer.alloc(64 * 1024, 7);
    // Four messages wait in the channel; each writer counts the bytes the daemon took (write callbacks).
    const writers = Array.from({ length: 4 }, () => {
      const w = ch.sendStream();
      const state = { accepted: 0 };
      const pump = async () => {
        for (let off = 0; off < size; off += chunk.length) {
          await new Promise<void>((res, rej) =>
            w.write(chunk, (err) => {
              if (err) rej(err);
              else {
                state.accepted += chunk.length;
                res();
              }
            }),
          );
        }
        w.end();
        await w.sent;
      };
      return { state, done: pump() };
    });
    const waitingMax = STREAM_WAITING_WINDOW + 2 * chunk.length;
    await new Promise((r) => setTimeout(r, 500));
    for (const x of writers) {
      assert.ok(x.state.accepted > 0, "the daemon takes some bytes of a waiting message");
      assert.ok(x.state.accepted <= waitingMax, `a waiting message holds ${x.state.accepted} bytes (≤ ${waitingMax})`);
    }
    // The first message is taken: its writer moves on, paced by the reader (which reads nothing yet:
    // the windows on both hops and the sockets' buffers fill, then the writer waits).
    const r = await ch.recvStream();
    await new Promise((res) => setTimeout(res, 500));
    const first = writers[0] as (typeof writers)[0];
    assert.ok(first.state.accepted > STREAM_WAITING_WINDOW * 2, `taken, it moves on: ${first.state.accepted}`);
    assert.ok(first.state.accepted < size / 2, `paced by the reader: ${first.state.accepted} of ${size}`);
    for (const x of writers.slice(1)) assert.ok(x.state.accepted <= waitingMax, "the others still wait with little");
    let got = 0;
    for await (const c of r) got += (c as Buffer).length;
    assert.equal(got, size);
    await first.done;
    for (let i = 1; i < 4; i++) {
      const rr = await ch.recvStream();
      let n = 0;
      for await (const c of rr) n += (c as Buffer).length;
      assert.equal(n, size);
    }
    await Promise.all(writers.map((x) => x.done));
    await ch.scrub();
  });
});
