// Random and mutated input never escapes as an exception and never crashes the daemon. The
// benchmark run (`npm run bench fuzz`) does the same with 100,000 inputs and more.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fuzzDaemon, fuzzDecoder } from "./helpers/fuzz.ts";

test("the frame decoder takes any bytes, cut anywhere, and only ever reports ProtocolError", () => {
  fuzzDecoder(3000);
});

test("a live daemon survives thousands of random and mutated frames and still serves", async () => {
  const r = await fuzzDaemon(5000);
  assert.ok(r.frames >= 5000);
  assert.ok(r.closes > 0, "bad input did close connections");
});
