// The value decoder holds on to nothing it has read: a big frame's bytes can be collected once the
// program lets go of them and of the values that are views of them. (msgpackr keeps a view of the
// last bytes it decoded until it decodes others; without care a 16 MiB frame stays in memory for as
// long as nothing else is received.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { decode, encode } from "../src/wire/protocol.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** True once the object behind `ref` has been collected (a few full collections at most). */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
    if (ref.deref() === undefined) return true;
  }
  return false;
}

test("decoding a big value keeps no hold on the bytes it came in", async () => {
  // Bytes in memory of their own, as a frame read from a socket would be.
  let bytes: Buffer | undefined = Buffer.concat([encode({ text: "x".repeat(1 << 20), n: 7 })]);
  const ref = new WeakRef(bytes.buffer);
  const v = decode(bytes, 0) as { text: string; n: number };
  assert.equal(v.text.length, 1 << 20);
  assert.equal(v.n, 7);
  bytes = undefined;
  assert.equal(await collected(ref), true, "the frame's memory is still held after decoding");
});

test("a whole-message bin of any size comes back as a view of the frame, and lets it go with the view", async () => {
  for (const size of [100, 70_000, 300_000]) {
    // Memory of its own (not Node's shared pool for small buffers), four bytes of fields first.
    const enc = encode(Buffer.alloc(size, 9));
    let frame: Buffer | undefined = Buffer.allocUnsafeSlow(4 + enc.length);
    frame.set(enc, 4);
    let v: Buffer | undefined = decode(frame, 4) as Buffer;
    assert.equal(v.length, size);
    assert.equal(v[size - 1], 9);
    assert.equal(v.buffer, frame.buffer, `a ${size}-byte value is a view, not a copy`);
    const ref = new WeakRef(frame.buffer);
    frame = undefined;
    v = undefined;
    assert.equal(await collected(ref), true);
  }
});

test("bytes that fail to decode are not held either", async () => {
  // A map header claiming more entries than follow: msgpackr reads into it, then finds it short.
  let bytes: Buffer | undefined = Buffer.allocUnsafeSlow(200_000);
  bytes.fill(0xa0); // empty strings: keys and values of the map
  bytes[0] = 0xdf;
  bytes.writeUInt32BE(1_000_000, 1);
  const ref = new WeakRef(bytes.buffer);
  assert.throws(() => decode(bytes as Buffer));
  bytes = undefined;
  assert.equal(await collected(ref), true);
});

test("a bin whose length disagrees with the frame is refused by the general decoder", () => {
  // bin 32 claiming 70,000 bytes where 69,999 follow.
  const b = Buffer.alloc(5 + 69_999);
  b[0] = 0xc6;
  b.writeUInt32BE(70_000, 1);
  assert.throws(() => decode(b));
});
