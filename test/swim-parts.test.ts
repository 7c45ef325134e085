// The pure parts membership is built from (src/cluster/): the Lifeguard suspicion window, local
// health, and the broadcast queue, each driven with literal inputs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Awareness } from "../src/cluster/awareness.ts";
import { GossipQueue } from "../src/cluster/gossip-queue.ts";
import { Suspicion, suspicionTimeout } from "../src/cluster/suspicion.ts";

test("a suspicion's window shrinks from max to min as independent confirmations arrive", () => {
  const w = { min: 1000, max: 6000, k: 3 };
  const s = new Suspicion(7, "a", w, 10_000);
  assert.equal(s.inc, 7);
  assert.equal(s.by, "a");
  assert.equal(s.deadline, 16_000, "no confirmation: the full window");
  assert.equal(s.confirm("a"), false, "the first suspecter does not confirm itself");
  assert.equal(s.deadline, 16_000);
  const deadlines: number[] = [];
  for (const by of ["b", "c", "d"]) {
    assert.equal(s.confirm(by), true);
    deadlines.push(s.deadline);
  }
  assert.equal(s.confirm("b"), false, "one confirmation per member");
  // Logarithmic: 6000 - log(n+1)/log(4) * 5000 after n confirmations, measured from the start.
  assert.deepEqual(
    deadlines.map((d) => Math.round(d - 10_000)),
    [3500, 2038, 1000],
  );
  assert.ok(s.confirm("e"), "more than k members may confirm");
  assert.equal(s.deadline, 11_000, "but the window never goes below min");
});

test("a stall of our own postpones a suspicion by its length", () => {
  const s = new Suspicion(1, "a", { min: 1000, max: 6000, k: 2 }, 0);
  s.postpone(2500);
  assert.equal(s.deadline, 8500);
  s.confirm("b");
  // Confirmations count from the postponed start.
  assert.equal(Math.round(s.deadline), 2500 + Math.round(6000 - (Math.log(2) / Math.log(3)) * 5000));
});

test("with no member to confirm, a suspicion lasts min", () => {
  assert.equal(suspicionTimeout({ min: 800, max: 5000, k: 0 }, 0), 800);
  assert.equal(new Suspicion(0, "a", { min: 800, max: 5000, k: 0 }, 100).deadline, 900);
});

test("local health rises on trouble, falls on success, and stays within 1 … max", () => {
  const a = new Awareness(8);
  assert.equal(a.multiplier, 1);
  a.apply(-1);
  assert.equal(a.multiplier, 1, "never below healthy");
  a.apply(3);
  assert.equal(a.multiplier, 4);
  a.apply(100);
  assert.equal(a.multiplier, 8, "capped at max");
  a.apply(-2);
  assert.equal(a.multiplier, 6);
});

interface Item {
  id: string;
  v: number;
}

function take(q: GossipQueue<Item>, max: number, limit: number, out: Item[] = []): string[] {
  q.take(max, limit, out);
  return out.map((i) => `${i.id}${i.v}`);
}

test("the broadcast queue sends the least-sent first, each item at most limit times", () => {
  const q = new GossipQueue<Item>();
  for (const id of ["a", "b", "c"]) q.put({ id, v: 1 });
  assert.deepEqual(take(q, 2, 2), ["a1", "b1"]);
  // c was never sent: it goes before a and b go a second time.
  assert.deepEqual(take(q, 2, 2), ["c1", "a1"]);
  assert.deepEqual(take(q, 5, 2), ["b1", "c1"]);
  assert.deepEqual(take(q, 5, 2), [], "each went twice: dropped");
});

test("a newer item about a member replaces the older one and starts its count again", () => {
  const q = new GossipQueue<Item>();
  q.put({ id: "a", v: 1 });
  q.put({ id: "b", v: 1 });
  assert.deepEqual(take(q, 1, 3), ["a1"]);
  q.put({ id: "a", v: 2 });
  assert.deepEqual(take(q, 5, 3), ["b1", "a2"], "a1 is gone, a2 is fresh");
});

test("the broadcast queue skips members the message already carries news of", () => {
  const q = new GossipQueue<Item>();
  q.put({ id: "a", v: 1 });
  q.put({ id: "b", v: 1 });
  // The message starts with an item about a (a refutation, say): the queue's a waits for the next.
  assert.deepEqual(take(q, 5, 3, [{ id: "a", v: 9 }]), ["a9", "b1"]);
  assert.deepEqual(take(q, 5, 3), ["a1", "b1"]);
});

test("after many replacements (and compactions) only the newest item about each member goes", () => {
  const q = new GossipQueue<Item>();
  for (let v = 0; v < 5000; v++) q.put({ id: `m${v % 3}`, v });
  assert.deepEqual(take(q, 10, 1).sort(), ["m04998", "m14999", "m24997"].sort());
  assert.deepEqual(take(q, 10, 1), []);
});
