// A subscription never blocks the daemon that feeds it: offer() hands a value to a waiting
// receiver, else buffers it, dropping the oldest when the buffer is full.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Channel } from "../src/element/channel.ts";

test("offer keeps the newest values and counts what it dropped", () => {
  const ch = new Channel<number>(1024);
  let dropped = 0;
  for (let i = 0; i < 1030; i++) dropped += ch.offer(i);
  assert.equal(dropped, 6);
  assert.equal(ch.stat().len, 1024);
  const got: number[] = [];
  ch.recv({ take: (v) => got.push(v), end: () => {} }, 2);
  assert.deepEqual(got, [6, 7]);
});

test("offer hands a value straight to a waiting receiver", () => {
  const ch = new Channel<string>(4);
  const got: string[] = [];
  ch.recv({ take: (v) => got.push(v), end: () => {} }, 1);
  assert.equal(ch.offer("/X0000000000000001"), 0);
  assert.deepEqual(got, ["/X0000000000000001"]);
  assert.equal(ch.stat().len, 0);
});

test("offer on a scrubbed channel is dropped", () => {
  const ch = new Channel<string>(4);
  ch.scrub(() => {});
  assert.equal(ch.offer("x"), 1);
});
