// The durable channels' store on its own (src/daemon/durable-store.ts): the values of one turn are
// one record (a group); acknowledgements that cover part of a group are kept beside it, so that a
// reopened store brings back exactly the values not acknowledged, with their count and bytes; a
// store written with one record per value (before groups) is converted when opened.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DurableStore, STORE_FILE } from "../src/daemon/durable-store.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "circuit-store-"));
  dirs.push(d);
  return d;
}
const val = (k: number, len = 10) => Buffer.alloc(len, k & 0xff);

test("partly acknowledged groups come back without their acknowledged values, counted from the keys", async () => {
  const dir = tmp();
  let s = await DurableStore.open(dir);
  const { id, done } = s.create({ names: ["q"], cap: 1000, closed: false });
  await done;
  // Two turns: keys 1–5 (one group), then 6–8 (another), the second with 20-byte values.
  const first = [1, 2, 3, 4, 5].map((k) => s.put(id, k, val(k)));
  assert.equal(new Set(first).size, 1, "one turn, one record");
  await Promise.all(first);
  await Promise.all([6, 7, 8].map((k) => s.put(id, k, val(k, 20))));
  assert.deepEqual(s.backlog(id), { first: 1, count: 8, bytes: 5 * 10 + 3 * 20, next: 9 });
  // Acknowledge 1, 2 and 4 of the first group and all of the second.
  await Promise.all([s.remove(id, 1, 10), s.remove(id, 2, 10), s.remove(id, 4, 10)]);
  await Promise.all([6, 7, 8].map((k) => s.remove(id, k, 20)));
  assert.deepEqual(
    s.read(id, 1, 100, 10).map((r) => r.key),
    [3, 5],
  );
  await s.close();

  s = await DurableStore.open(dir);
  assert.deepEqual(s.backlog(id), { first: 3, count: 2, bytes: 20, next: 6 });
  const rows = s.read(id, 1, 100, 10);
  assert.deepEqual(
    rows.map((r) => [r.key, r.value.length, r.value[0]]),
    [
      [3, 10, 3],
      [5, 10, 5],
    ],
  );
  // Reading from the middle of a group starts there.
  assert.deepEqual(
    s.read(id, 4, 100, 10).map((r) => r.key),
    [5],
  );
  // The last two acknowledgements remove the group and its record of acknowledgements.
  await Promise.all([s.remove(id, 3, 10), s.remove(id, 5, 10)]);
  await s.close();
  s = await DurableStore.open(dir);
  assert.deepEqual(s.backlog(id), { first: 0, count: 0, bytes: 0, next: 1 });
  assert.deepEqual(s.read(id, 1, 100, 10), []);
  await s.close();
});

test("a group holds at most 1,024 values; reads return whole groups past the limit", async () => {
  const dir = tmp();
  const s = await DurableStore.open(dir);
  const { id, done } = s.create({ names: ["q"], cap: 10_000, closed: false });
  await done;
  const writes = Array.from({ length: 2500 }, (_, i) => s.put(id, i + 1, val(i + 1, 4)));
  assert.equal(new Set(writes).size, 3, "2,500 values of one turn: three records");
  await Promise.all(writes);
  assert.equal(s.backlog(id).count, 2500);
  const rows = s.read(id, 1, 2500, 10);
  assert.equal(rows.length, 1024, "the first group, whole");
  assert.deepEqual(
    rows.slice(0, 3).map((r) => r.key),
    [1, 2, 3],
  );
  // A read stops at `through`.
  assert.equal(s.read(id, 1000, 1100, 5000).length, 101);
  // Dropping the channel removes every group.
  await s.drop(id);
  assert.deepEqual(s.backlog(id), { first: 0, count: 0, bytes: 0, next: 1 });
  await s.close();
});

test("a store with one record per value (before groups) is converted when opened", async () => {
  const dir = tmp();
  const { open } = await import("lmdb");
  const env = open({ path: join(dir, STORE_FILE), maxDbs: 8 });
  const chans = env.openDB<{ names: string[]; cap: number; closed: boolean }, number>({ name: "chans" });
  const vals = env.openDB<Buffer, [number, number, number]>({ name: "vals", encoding: "binary" });
  await chans.put(1, { names: ["old"], cap: 50, closed: true });
  for (let k = 1; k <= 4; k++) await vals.put([1, k, 7], val(k, 7));
  await env.close();

  const s = await DurableStore.open(dir);
  assert.deepEqual(s.channels(), [{ id: 1, rec: { names: ["old"], cap: 50, closed: true } }]);
  assert.deepEqual(s.backlog(1), { first: 1, count: 4, bytes: 28, next: 5 });
  assert.deepEqual(
    s.read(1, 1, 10, 10).map((r) => [r.key, r.value[0]]),
    [
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ],
  );
  await s.remove(1, 2, 7);
  await s.close();
  const again = await DurableStore.open(dir);
  assert.deepEqual(
    again.read(1, 1, 10, 10).map((r) => r.key),
    [1, 3, 4],
  );
  await again.close();
});

test("a value acknowledged before its group is committed (capacity 0 hands values over at once) stays gone", async () => {
  const dir = tmp();
  let s = await DurableStore.open(dir);
  const { id, done } = s.create({ names: ["z"], cap: 0, closed: false });
  await done;
  const w = s.put(id, 1, val(1));
  const w2 = s.put(id, 2, val(2));
  // After this turn's microtasks (the group's write is issued), before its commit.
  await new Promise<void>((r) => queueMicrotask(r));
  const r = s.remove(id, 1, 10);
  await Promise.all([w, w2, r]);
  await s.close();
  s = await DurableStore.open(dir);
  assert.deepEqual(
    s.read(id, 1, 10, 10).map((x) => x.key),
    [2],
  );
  await s.close();
});
