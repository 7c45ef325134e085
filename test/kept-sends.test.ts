// The copies a connection keeps of unacknowledged sends (src/client/kept-sends.ts), driven with
// literal values: runs of credited sends in a slab, acknowledgements in the middle of a run, and
// the split into single sends that a reconnection sends again.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ackThrough, KEPT_BY_REFERENCE, keep, keepCredited, newChanState, unrun } from "../src/client/kept-sends.ts";
import { decode, encode } from "../src/wire/protocol.ts";

const v = (x: unknown) => encode(x);

test("credited sends in a row share one run; the bytes kept are counted exactly", () => {
  const st = newChanState(1, 8, ["X", "c"], false);
  const values = [v("a"), v({ k: 2 }), v([3, 3, 3])];
  let kept = 0;
  values.forEach((b, i) => {
    kept += keepCredited(st, i + 1, b, false);
  });
  assert.equal(
    kept,
    values.reduce((n, b) => n + 4 + b.length, 0),
    "an entry is [u32 length][bytes]",
  );
  assert.equal(st.kept.length, 1, "one run");
  // A gap in sequence numbers (a blocking send went in between) starts another run.
  keep(st, 4, v("blocking"), 77);
  kept += keepCredited(st, 5, v("e"), false);
  assert.equal(st.kept.length, 3);
  assert.equal([...st.kept].map((k) => `${k.first}-${k.last}/${k.id}`).join(" "), "1-3/0 4-4/77 5-5/0");
});

test("an acknowledgement in the middle of a run frees nothing yet; resends start after it", () => {
  const st = newChanState(1, 8, ["X", "c"], false);
  let kept = 0;
  for (let seq = 1; seq <= 4; seq++) kept += keepCredited(st, seq, v(`value ${seq}`), false);
  assert.equal(ackThrough(st, 2), 0, "the run is still needed for 3 and 4");
  const { out, delta } = unrun(st.kept.drain());
  assert.deepEqual(
    out.map((k) => [k.seq, decode(k.bytes)]),
    [
      [3, "value 3"],
      [4, "value 4"],
    ],
  );
  // The run's bytes go; copies of the two unacknowledged entries (without their length prefix) come.
  assert.equal(delta, -kept + v("value 3").length + v("value 4").length);
});

test("a run across the wrap of sequence numbers (2^32 − 1, then 1) is acknowledged in its order", () => {
  const st = newChanState(1, 8, ["X", "c"], false);
  const seqs = [0xfffffffe, 0xffffffff, 1, 2];
  for (const seq of seqs) keepCredited(st, seq, v(`value ${seq}`), false);
  assert.equal(st.kept.length, 1, "one run: 1 follows 2^32 − 1");
  assert.equal(ackThrough(st, 0xffffffff), 0, "the run is still needed for 1 and 2");
  const { out } = unrun(st.kept.drain());
  assert.deepEqual(
    out.map((k) => k.seq),
    [1, 2],
  );
  const st2 = newChanState(1, 8, ["X", "c"], false);
  let kept = 0;
  for (const seq of seqs) kept += keepCredited(st2, seq, v(seq), false);
  assert.equal(ackThrough(st2, 2), kept, "through 2: all four");
  assert.equal(st2.kept.length, 0);
});

test("acknowledging a whole run frees its bytes and rewinds the slab; a blocking send stops the walk", () => {
  const st = newChanState(1, 8, ["X", "c"], false);
  const a = keepCredited(st, 1, v(1), false) + keepCredited(st, 2, v(2), false);
  keep(st, 3, v(3), 9);
  keepCredited(st, 4, v(4), false);
  // Through 4: the run of 1–2 goes; the blocking send (answered by its RES, not by CACK) stays,
  // and so does everything behind it.
  assert.equal(ackThrough(st, 4), a);
  assert.equal([...st.kept].map((k) => k.seq).join(","), "3,4");
  const st2 = newChanState(2, 8, undefined, false);
  keepCredited(st2, 1, v("x"), false);
  assert.ok(st2.slabUsed > 0);
  ackThrough(st2, 1);
  assert.equal(st2.kept.length, 0);
  assert.equal(st2.slabUsed, 0, "an empty slab is written from its start again");
});

test("byte values are kept as MessagePack bins; big encoded values by reference", () => {
  const st = newChanState(1, 8, ["X", "c"], false);
  const raw = Buffer.from([1, 2, 3]);
  assert.equal(keepCredited(st, 1, raw, true), 4 + 2 + 3, "u32 length, bin8 head, bytes");
  const { out } = unrun(st.kept.drain());
  assert.deepEqual(decode((out[0] as { bytes: Buffer }).bytes), Buffer.from([1, 2, 3]));
  const big = v(Buffer.alloc(KEPT_BY_REFERENCE, 7));
  assert.equal(keepCredited(st, 2, big, false), big.length);
  assert.equal(st.kept.peek()?.bytes, big, "not copied");
});
