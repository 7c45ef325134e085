// What an operator reads about joins (src/cluster/join-tracker.ts): one line per change of state,
// never one per try; the join that succeeds is said once; the other seeds are dropped quietly.
import assert from "node:assert/strict";
import { test } from "node:test";
import { JoinTracker } from "../src/cluster/join-tracker.ts";
import { lineLogger } from "../src/util/log.ts";

function tracker() {
  const lines: string[] = [];
  const t = new JoinTracker({
    log: lineLogger((l) => lines.push(l)),
    self: "circuit://10.0.0.2:7711/XB",
    replyMs: 3000,
    retryMaxMs: 30_000,
  });
  return { t, lines };
}

const S = "circuit://10.0.0.1:7711";

test("a seed unreachable try after try is said once; the reason changing is said again; joining is said", () => {
  const { t, lines } = tracker();
  t.add(S, 0);
  for (let i = 0; i < 5; i++) {
    t.outcome(
      S,
      { ok: false, kind: "unreachable", reason: i % 2 ? "unreachable (EHOSTUNREACH)" : "unreachable (ECONNREFUSED)" },
      i * 1000,
    );
  }
  assert.deepEqual(lines, [`circuit: join ${S}: unreachable (ECONNREFUSED); retrying every ≤30 s`]);
  t.outcome(S, { ok: false, kind: "auth", reason: "refused our cluster key (it has another key)" }, 6000);
  t.outcome(S, { ok: false, kind: "auth", reason: "refused our cluster key (it has another key)" }, 7000);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /refused our cluster key/);
  t.outcome(S, { ok: true, id: "XA" }, 8000);
  t.answered("XA", 3, []);
  assert.deepEqual(lines.slice(2), [`circuit: joined ${S} (3 members)`]);
  assert.equal(t.pending, 0);
});

test("connected but unanswered: the seed cannot reach us; said once, naming our URL and --advertise", () => {
  const { t, lines } = tracker();
  t.add(S, 0);
  t.outcome(S, { ok: true, id: "XA" }, 0);
  assert.deepEqual(t.tick(2999), []);
  assert.equal(lines.length, 0);
  t.tick(3000);
  t.outcome(S, { ok: true, id: "XA" }, 4000);
  t.tick(7000);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0]!,
    /no answer within 3 s: the seed must be able to connect back to circuit:\/\/10\.0\.0\.2:7711\/XB .*--advertise/,
  );
});

test("several seeds: the one that answers is said, the others stop quietly", () => {
  const { t, lines } = tracker();
  const dead = "circuit://10.0.0.9:7711";
  t.add(dead, 0);
  t.add(S, 0);
  t.outcome(dead, { ok: false, kind: "unreachable", reason: "unreachable (ECONNREFUSED)" }, 10);
  t.outcome(S, { ok: true, id: "XA" }, 10);
  t.answered("XA", 2, []);
  t.outcome(dead, { ok: false, kind: "unreachable", reason: "unreachable (ECONNREFUSED)" }, 1000);
  assert.deepEqual(lines, [
    `circuit: join ${dead}: unreachable (ECONNREFUSED); retrying every ≤30 s`,
    `circuit: joined ${S} (2 members)`,
  ]);
  assert.equal(t.pending, 0);
});

test("an explicit join is tried once: its first failure, or an answer, goes to the waiter, not the log", () => {
  const { t, lines } = tracker();
  const got: string[] = [];
  const waiter = {
    resolve: (r: { url: string; members: number }) => got.push(`ok ${r.url} ${r.members}`),
    reject: (kind: string, msg: string) => got.push(`${kind} ${msg}`),
  };
  t.once(S, 0, 10_000, waiter);
  assert.equal(t.outcome(S, { ok: false, kind: "auth", reason: "refused our cluster key" }, 5), true, "stop retrying");
  t.once(S, 0, 10_000, waiter);
  t.outcome(S, { ok: true, id: "XA" }, 5);
  // A routine reply from another member is not the answer.
  t.answered("XZ", 2, []);
  t.answered("XA", 4, []);
  t.once(S, 0, 10_000, waiter);
  assert.deepEqual(t.tick(10_000), [S]);
  assert.deepEqual(got, [
    `auth join ${S}: refused our cluster key`,
    `ok ${S} 4`,
    `no-reply join ${S}: no answer in time`,
  ]);
  assert.deepEqual(lines, []);
});
