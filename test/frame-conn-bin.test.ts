// FrameConn sends a big byte value from the caller's buffer, after a header that ends with the
// value's MessagePack bin head: the bytes on the wire are those of the encoded value sent the
// ordinary way, as a plain frame and as a batch entry, big and small.

import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { FrameConn } from "../src/transport/frame-conn.ts";
import { encode } from "../src/wire/protocol.ts";

/** Everything a FrameConn writes for `send`, as one buffer. */
async function wire(send: (c: FrameConn) => void): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on("data", (b: Buffer) => chunks.push(b));
  const c = new FrameConn(out, { maxFrame: 64 * 1024 * 1024 });
  send(c);
  c.flush();
  await c.written();
  return Buffer.concat(chunks);
}

for (const size of [10, 65_535, 65_536, 300_000]) {
  test(`a ${size}-byte value: sendBin and batchBin write what send and batch of its encoding write`, async () => {
    const v = Buffer.alloc(size);
    for (let i = 0; i < size; i++) v[i] = (i * 7) & 0xff;
    const enc = encode(v);
    assert.deepEqual(
      await wire((c) => c.sendBin(0x10, [1, 2, 3, 4], v)),
      await wire((c) => c.send(0x10, [1, 2, 3, 4], enc)),
    );
    assert.deepEqual(await wire((c) => c.batchBin(0x11, 9, v, 42)), await wire((c) => c.batch(0x11, 9, enc, 42)));
  });
}

for (const sizes of [[10], [100, 200], [40_000, 40_000], [65_536, 1, 300_000, 7]]) {
  test(`sendParts of parts of ${sizes.join(", ")} bytes writes what send of them joined writes`, async () => {
    const parts = sizes.map((n, k) => Buffer.alloc(n, k + 1));
    assert.deepEqual(
      await wire((c) => {
        c.send(0x01, [5]);
        c.sendParts(0x12, [77], parts);
        c.send(0x02, [6]);
      }),
      await wire((c) => {
        c.send(0x01, [5]);
        c.send(0x12, [77], Buffer.concat(parts));
        c.send(0x02, [6]);
      }),
    );
  });
}
