// test-runner: heavy (keepalive timing)
// The client's keepalive never declares a live server dead while the connection makes progress
// (DESIGN §3.1): here a throttling relay between client and daemon lets our output drain slowly,
// so the daemon's answers to our pings wait behind many seconds of our own values. The server is
// alive and reading; the client must not give it up, and every value must arrive.
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { type Client, dial } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";

/** A relay to `port` that forwards client→server bytes at `bytesPerSec` and the rest at once. */
function throttlingRelay(port: number, bytesPerSec: number): Promise<{ server: Server; port: number }> {
  const socks = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(port, "127.0.0.1");
    socks.add(down).add(up);
    up.on("data", (b) => down.write(b));
    down.on("data", (b) => {
      up.write(b);
      // Hold further input back for as long as these bytes take at the set rate.
      down.pause();
      setTimeout(() => down.resume(), (b.length / bytesPerSec) * 1000);
    });
    for (const s of [down, up]) {
      s.on("error", () => {});
      s.on("close", () => {
        down.destroy();
        up.destroy();
      });
    }
  });
  server.on("close", () => {
    for (const s of socks) s.destroy();
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port })),
  );
}

describe("keepalive and a connection that drains slowly", () => {
  let d: Daemon;
  let relay: Server;
  let client: Client;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await client?.close();
    relay?.close();
    await killAll();
  });

  test("values queued for 8 s behind a slow link: the live server is not given up, all arrive", async () => {
    const daemonPort = Number(/:(\d+)\//.exec(d.url)?.[1]);
    const r = await throttlingRelay(daemonPort, 1024 * 1024);
    relay = r.server;
    // The default bound (4 MiB) plus what the kernel and the relay hold: answers to pings wait
    // behind several seconds of our own bytes. A larger bound makes the wait longer still.
    client = await dial(`circuit://127.0.0.1:${r.port}`, { maxUnsentBytes: 6 * 1024 * 1024 });
    const ch = await client.walk(`/${d.id}/slow`).makeChan<Buffer>(100);
    const value = Buffer.alloc(256 * 1024, 1);
    const t0 = performance.now();
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 48; i++) sends.push(ch.send(value));
    await Promise.all(sends);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed > 5500, `the test needs the link busy for longer than the 5 s bound (${elapsed.toFixed(0)} ms)`);
    // Still connected, and every value is there.
    let len = 0;
    for (const end = Date.now() + 20_000; Date.now() < end; ) {
      len = (await ch.stat()).len;
      if (len === 48) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(len, 48);
  });
});
