// A client's socket reads into buffers of ours (`onread`, src/transport/direct-read.ts) and its
// FrameConn takes the bytes from there, with no 'data' events: over plain TCP and TLS-PSK, every
// frame arrives whole and in order, bytes read before the FrameConn took the socket over included,
// and the bodies handed out stay intact while later reads land (no buffer is read into twice).

import assert from "node:assert/strict";
import { once } from "node:events";
import type * as net from "node:net";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { FrameConn } from "../src/transport/frame-conn.ts";
import { connectTo, createListener, KeyRing, newKey, parseKey, readyEvent } from "../src/transport/secure.ts";

const FRAMES = 3000;
/** The body of frame `i`: its size and bytes follow from `i`, one in 500 bigger than a 64 KiB slab. */
function body(i: number): Buffer {
  const size = i % 500 === 499 ? 200_000 + i : 1 + ((i * 37) % 3000);
  const b = Buffer.allocUnsafe(size);
  for (let k = 0; k < size; k++) b[k] = (i + k * 13) & 0xff;
  return b;
}

for (const keyed of [false, true]) {
  test(`direct reads over ${keyed ? "TLS-PSK" : "plain TCP"}: ${FRAMES} frames whole, in order, and left intact`, async () => {
    const key = keyed ? parseKey(newKey()) : undefined;
    const server = createListener(key ? new KeyRing(key) : undefined, 5000, (sock: net.Socket) => {
      const conn = new FrameConn(sock, { maxFrame: 1 << 20 });
      // The first frames go at once, before the client has a FrameConn; the rest over many turns.
      for (let i = 0; i < 50; i++) conn.send(0x01, [], body(i));
      let i = 50;
      const more = () => {
        const stop = Math.min(FRAMES, i + 1 + (i % 40));
        for (; i < stop; i++) conn.send(0x01, [], body(i));
        if (i < FRAMES) setImmediate(more);
      };
      setTimeout(more, 150);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    const sock = connectTo("127.0.0.1", port, key, true);
    try {
      await once(sock, readyEvent(sock));
      // Let the first frames arrive while nobody has taken the socket over yet.
      await new Promise((r) => setTimeout(r, 100));
      const conn = new FrameConn(sock, { maxFrame: 1 << 20 });
      const got: Buffer[] = [];
      const all = new Promise<void>((resolve, reject) => {
        conn.onFrame = (type, b) => {
          if (type !== 0x01) reject(new Error(`frame ${got.length} came as type ${type}`));
          got.push(b);
          if (got.length === FRAMES) resolve();
        };
        conn.onClose = (e) => reject(e ?? new Error(`closed after ${got.length} frames`));
        setTimeout(() => reject(new Error(`${got.length} of ${FRAMES} frames in 20 s`)), 20_000).unref();
      });
      await all;
      assert.equal(sock.listenerCount("data"), 0, "the bytes came through onread, not 'data' events");
      // Checked only now, after every later read: no body was overwritten by one.
      for (let i = 0; i < FRAMES; i++) assert.ok(got[i]?.equals(body(i)), `frame ${i} arrived intact`);
    } finally {
      sock.destroy();
      server.close();
    }
  });
}

test("a socket opened without direct reads is read through its 'data' events", async () => {
  const server = createListener(undefined, 5000, (sock: net.Socket) => {
    new FrameConn(sock, { maxFrame: 1 << 20 }).send(0x02, [], Buffer.from("hi"));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const sock = connectTo("127.0.0.1", (server.address() as AddressInfo).port, undefined);
  try {
    const conn = new FrameConn(sock, { maxFrame: 1 << 20 });
    const frame = new Promise<Buffer>((resolve) => {
      conn.onFrame = (_t, b) => resolve(b);
    });
    assert.equal((await frame).toString(), "hi");
    assert.equal(sock.listenerCount("data"), 1);
  } finally {
    sock.destroy();
    server.close();
  }
});
