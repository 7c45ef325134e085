// The channel state machine checked against a reference model of a Go channel (buffer of capacity
// cap, FIFO queues of blocked senders and of blocked receives, closed and aborted flags), with
// random operation sequences from several clients; plus the credit protocol (reserved slots), which
// Go does not have, checked by invariants and by examples.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Channel, type CreditHolder, MAX_CAP, type Receiver, type SendWaiter } from "../src/element/channel.ts";
import type { CircuitError } from "../src/errors.ts";

const CAPS = [0, 1, 2, 3, 5];
const CLIENTS = 3;

/** "pending" | "ok" | "cancelled" | an error code. */
type SendOutcome = string;
/** "pending" | "cancelled" | "value:<v>" | an error code. */
type RecvOutcome = string;

// ---------------------------------------------------------------------------------------------
// The reference model: Go's runtime channel (chansend/chanrecv/closechan) written as plainly as
// possible, plus scrub (abort everything, drop the buffer) and requeue (values given back go to the
// head of the buffer).

class GoChannel {
  readonly buf: string[] = [];
  readonly sendq: { id: number; value: string }[] = [];
  readonly recvq: { id: number; client: number }[] = [];
  closed = false;
  aborted = false;
  numSend = 0;
  numRecv = 0;
  readonly sends = new Map<number, SendOutcome>();
  readonly recvs = new Map<number, RecvOutcome>();
  /** Every value handed to a receive, in order: [recvId, value]. */
  readonly log: [number, string][] = [];

  constructor(readonly cap: number) {}

  send(id: number, value: string): void {
    if (this.aborted) return void this.sends.set(id, "ChannelAborted");
    if (this.closed) return void this.sends.set(id, "ChannelClosed");
    const r = this.recvq.shift();
    if (r) {
      this.deliver(r.id, value);
      this.completeSend(id);
      return;
    }
    if (this.buf.length < this.cap) {
      this.buf.push(value);
      this.completeSend(id);
      return;
    }
    this.sends.set(id, "pending");
    this.sendq.push({ id, value });
  }

  recv(id: number, client: number): void {
    if (this.aborted) return void this.recvs.set(id, "ChannelAborted");
    if (this.buf.length > 0) {
      this.deliver(id, this.buf.shift() as string);
      // A blocked sender's value moves into the slot just freed.
      while (this.buf.length < this.cap && this.sendq.length > 0) {
        const s = this.sendq.shift() as { id: number; value: string };
        this.buf.push(s.value);
        this.completeSend(s.id);
      }
      return;
    }
    const s = this.sendq.shift();
    if (s) {
      this.deliver(id, s.value);
      this.completeSend(s.id);
      return;
    }
    if (this.closed) return void this.recvs.set(id, "ChannelClosed");
    this.recvs.set(id, "pending");
    this.recvq.push({ id, client });
  }

  cancelSend(id: number): boolean {
    const i = this.sendq.findIndex((s) => s.id === id);
    if (i < 0) return false;
    this.sendq.splice(i, 1);
    this.sends.set(id, "cancelled");
    return true;
  }

  /** Withdraws the given waiting receives; returns how many were waiting. */
  cancelRecv(ids: readonly number[]): number {
    let n = 0;
    for (let i = this.recvq.length - 1; i >= 0; i--) {
      const r = this.recvq[i] as { id: number };
      if (ids.includes(r.id)) {
        this.recvq.splice(i, 1);
        this.recvs.set(r.id, "cancelled");
        n++;
      }
    }
    return n;
  }

  /** Returns the error code close throws, or undefined. */
  close(): string | undefined {
    if (this.aborted) return "ChannelAborted";
    if (this.closed) return "ChannelClosed";
    this.closed = true;
    for (const s of this.sendq.splice(0)) this.sends.set(s.id, "ChannelClosed");
    for (const r of this.recvq.splice(0)) this.recvs.set(r.id, "ChannelClosed");
    return undefined;
  }

  scrub(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.closed = true;
    for (const s of this.sendq.splice(0)) this.sends.set(s.id, "ChannelAborted");
    for (const r of this.recvq.splice(0)) this.recvs.set(r.id, "ChannelAborted");
    this.buf.length = 0;
  }

  requeue(values: readonly string[]): void {
    if (this.aborted || values.length === 0) return;
    this.buf.unshift(...values);
    this.numRecv -= values.length;
    while (this.buf.length > 0 && this.recvq.length > 0) {
      const r = this.recvq.shift() as { id: number };
      this.deliver(r.id, this.buf.shift() as string);
    }
  }

  stat() {
    return {
      cap: this.cap,
      len: this.buf.length,
      closed: this.closed,
      aborted: this.aborted,
      numSend: this.numSend,
      numRecv: this.numRecv,
      waitingSenders: this.sendq.length,
      waitingReceivers: this.recvq.length,
    };
  }

  private deliver(recvId: number, value: string): void {
    this.numRecv++;
    this.recvs.set(recvId, `value:${value}`);
    this.log.push([recvId, value]);
  }

  private completeSend(id: number): void {
    this.numSend++;
    this.sends.set(id, "ok");
  }
}

// ---------------------------------------------------------------------------------------------
// The channel under test, driven through its callback interface, with the same bookkeeping.

interface Handle {
  r: Receiver<string>;
  /** The receives this receiver still owes, oldest first. */
  pending: number[];
  dead: boolean;
}

class RealHarness {
  readonly ch: Channel<string>;
  readonly sends = new Map<number, SendOutcome>();
  readonly recvs = new Map<number, RecvOutcome>();
  readonly log: [number, string][] = [];
  /** Broken callback contracts (done twice, take on a finished receiver, …). */
  readonly violations: string[] = [];
  readonly waiters = new Map<number, SendWaiter<string>>();
  readonly handleOf = new Map<number, Handle>();
  /** Shared mode: each client's current receiver. */
  readonly clientHandle = new Map<number, Handle>();

  constructor(
    cap: number,
    readonly shared: boolean,
  ) {
    this.ch = new Channel<string>(cap);
  }

  send(id: number, value: string): void {
    this.sends.set(id, "pending");
    const w: SendWaiter<string> = {
      value,
      done: (err?: CircuitError) => {
        if (this.sends.get(id) !== "pending") this.violations.push(`send ${id}: done after ${this.sends.get(id)}`);
        this.sends.set(id, err ? err.code : "ok");
      },
    };
    this.waiters.set(id, w);
    this.ch.send(w);
  }

  /** Adds the receives `ids` (one credit each) for `client`. */
  recv(ids: readonly number[], client: number): void {
    let h = this.shared ? this.clientHandle.get(client) : undefined;
    if (!h || h.dead) {
      h = this.newHandle();
      if (this.shared) this.clientHandle.set(client, h);
    }
    for (const id of ids) {
      this.recvs.set(id, "pending");
      h.pending.push(id);
      this.handleOf.set(id, h);
    }
    this.ch.recv(h.r, ids.length);
  }

  cancelSend(id: number): boolean {
    const w = this.waiters.get(id);
    assert.ok(w);
    const removed = this.ch.cancelSend(w);
    if (removed) {
      if (this.sends.get(id) !== "pending") this.violations.push(`send ${id}: cancelled after ${this.sends.get(id)}`);
      this.sends.set(id, "cancelled");
    }
    return removed;
  }

  /** Cancels every waiting receive of the receiver that owns recvId. */
  cancelRecv(recvId: number): number {
    const h = this.handleOf.get(recvId);
    assert.ok(h);
    const n = this.ch.cancelRecv(h.r);
    const withdrawn = h.pending.splice(0);
    if (n !== withdrawn.length) {
      this.violations.push(`cancelRecv returned ${n} but the receiver owed ${withdrawn.length} receives`);
    }
    for (const id of withdrawn) this.recvs.set(id, "cancelled");
    return n;
  }

  /** Receives that cancelRecv(recvId) withdraws, as the model must see them. */
  pendingWith(recvId: number): number[] {
    return [...(this.handleOf.get(recvId)?.pending ?? [])];
  }

  close(): { threw?: string; settled: boolean } {
    let settled = false;
    try {
      this.ch.close(() => {
        settled = true;
      });
      return { settled };
    } catch (err) {
      return { threw: (err as CircuitError).code, settled };
    }
  }

  scrub(): boolean {
    let settled = false;
    this.ch.scrub(() => {
      settled = true;
    });
    return settled;
  }

  private newHandle(): Handle {
    const h: Handle = {
      pending: [],
      dead: false,
      r: {
        take: (v: string) => {
          const id = h.pending.shift();
          if (h.dead || id === undefined) {
            this.violations.push(`take(${v}) on a receiver that owes nothing`);
            return;
          }
          this.recvs.set(id, `value:${v}`);
          this.log.push([id, v]);
        },
        end: (err: CircuitError) => {
          if (h.dead || h.pending.length === 0) this.violations.push(`end(${err.code}) on a finished receiver`);
          h.dead = true;
          for (const id of h.pending.splice(0)) this.recvs.set(id, err.code);
        },
      },
    };
    return h;
  }
}

// ---------------------------------------------------------------------------------------------
// Operations.

type Op =
  | { k: "send"; c: number }
  | { k: "recv"; c: number; n: number }
  | { k: "cancelSend"; pick: number }
  | { k: "cancelRecv"; pick: number }
  | { k: "close" }
  | { k: "scrub" }
  | { k: "requeue"; c: number; count: number };

function opArb(opts: { shared: boolean; requeue: boolean }): fc.Arbitrary<Op> {
  const client = fc.integer({ min: 0, max: CLIENTS - 1 });
  const arbs: fc.WeightedArbitrary<Op>[] = [
    { weight: 10, arbitrary: client.map((c) => ({ k: "send" as const, c })) },
    {
      weight: 10,
      arbitrary: fc
        .record({ c: client, n: opts.shared ? fc.integer({ min: 1, max: 3 }) : fc.constant(1) })
        .map(({ c, n }) => ({ k: "recv" as const, c, n })),
    },
    { weight: 2, arbitrary: fc.nat().map((pick) => ({ k: "cancelSend" as const, pick })) },
    { weight: 2, arbitrary: fc.nat().map((pick) => ({ k: "cancelRecv" as const, pick })) },
    { weight: 1, arbitrary: fc.constant({ k: "close" as const }) },
    { weight: 1, arbitrary: fc.constant({ k: "scrub" as const }) },
  ];
  if (opts.requeue) {
    arbs.push({
      weight: 2,
      arbitrary: fc
        .record({ c: client, count: fc.integer({ min: 1, max: 3 }) })
        .map(({ c, count }) => ({ k: "requeue" as const, c, count })),
    });
  }
  return fc.oneof(...arbs);
}

/** Runs ops against both, comparing after every step; then drains and checks the end-to-end rules. */
function runModel(cap: number, ops: readonly Op[], opts: { shared: boolean }): void {
  const model = new GoChannel(cap);
  const real = new RealHarness(cap, opts.shared);
  const seq = new Array(CLIENTS).fill(0);
  /** Which client issued each receive. */
  const recvClient = new Map<number, number>();
  /** Values a client got and has not given back, oldest first (the candidates for requeue). */
  const held: string[][] = Array.from({ length: CLIENTS }, () => []);
  const requeued = new Map<string, number>();
  let nextSend = 0;
  let nextRecv = 0;
  let loggedTo = 0;
  let scrubbed = false;

  const check = (step: string) => {
    assert.deepEqual(real.violations, [], step);
    assert.deepEqual(real.ch.stat(), model.stat(), `stat after ${step}`);
    assert.deepEqual(real.sends, model.sends, `send outcomes after ${step}`);
    assert.deepEqual(real.recvs, model.recvs, `receive outcomes after ${step}`);
    assert.deepEqual(real.log, model.log, `delivery order after ${step}`);
    for (; loggedTo < real.log.length; loggedTo++) {
      const [id, v] = real.log[loggedTo] as [number, string];
      held[recvClient.get(id) as number]?.push(v);
    }
  };

  const doRecv = (c: number, n: number) => {
    const ids = Array.from({ length: n }, () => nextRecv++);
    for (const id of ids) recvClient.set(id, c);
    real.recv(ids, c);
    for (const id of ids) model.recv(id, c);
  };

  ops.forEach((op, i) => {
    const step = `step ${i} ${JSON.stringify(op)}`;
    switch (op.k) {
      case "send": {
        const id = nextSend++;
        const value = `${op.c}:${seq[op.c]++}`;
        real.send(id, value);
        model.send(id, value);
        break;
      }
      case "recv":
        doRecv(op.c, op.n);
        break;
      case "cancelSend": {
        if (nextSend === 0) return;
        const pending = [...model.sends].filter(([, s]) => s === "pending").map(([id]) => id);
        // Mostly a waiting send; sometimes any send, to check that a finished one is not withdrawn.
        const pool = pending.length > 0 && op.pick % 4 !== 0 ? pending : [...model.sends.keys()];
        const id = pool[op.pick % pool.length] as number;
        assert.equal(real.cancelSend(id), model.cancelSend(id), step);
        break;
      }
      case "cancelRecv": {
        if (nextRecv === 0) return;
        const pending = [...model.recvs].filter(([, s]) => s === "pending").map(([id]) => id);
        const pool = pending.length > 0 && op.pick % 4 !== 0 ? pending : [...model.recvs.keys()];
        const id = pool[op.pick % pool.length] as number;
        // A receiver cancels all its waiting receives at once; in per-receive mode that is one.
        const owed = real.pendingWith(id);
        assert.equal(real.cancelRecv(id), model.cancelRecv(owed), step);
        break;
      }
      case "close": {
        const got = real.close();
        const want = model.close();
        assert.deepEqual(got, want === undefined ? { settled: true } : { threw: want, settled: false }, step);
        break;
      }
      case "scrub":
        assert.equal(real.scrub(), true, `${step}: settled without credit holders`);
        model.scrub();
        scrubbed = true;
        break;
      case "requeue": {
        // The client's connection dropped with its last `count` values unacknowledged.
        const mine = held[op.c] as string[];
        const back = mine.splice(Math.max(0, mine.length - op.count));
        if (model.aborted) break;
        for (const v of back) requeued.set(v, (requeued.get(v) ?? 0) + 1);
        real.ch.requeue(back);
        model.requeue(back);
        break;
      }
    }
    check(step);
  });

  // Drain: close (blocked senders fail), then receive until a receive fails.
  if (!model.closed) {
    assert.deepEqual(real.close(), { settled: true });
    model.close();
    check("final close");
  }
  for (let guard = 0; ; guard++) {
    assert.ok(guard < 1000, "drain does not end");
    const id = nextRecv;
    doRecv(0, 1);
    check("drain");
    const out = model.recvs.get(id) as string;
    if (!out.startsWith("value:")) {
      assert.equal(out, scrubbed ? "ChannelAborted" : "ChannelClosed");
      break;
    }
  }
  assert.deepEqual(real.ch.stat().len, 0);

  // End-to-end rules, on the real channel's outcomes alone.
  const sentValue = new Map<number, string>();
  for (const [id, w] of real.waiters) sentValue.set(id, w.value);
  const received = new Map<string, number>();
  for (const [, v] of real.log) received.set(v, (received.get(v) ?? 0) + 1);
  for (const [id, outcome] of real.sends) {
    const v = sentValue.get(id) as string;
    const times = received.get(v) ?? 0;
    if (outcome === "ok") {
      // Delivered exactly once, plus once per time it was given back.
      if (scrubbed) assert.ok(times <= 1 + (requeued.get(v) ?? 0), `${v} received ${times} times`);
      else assert.equal(times, 1 + (requeued.get(v) ?? 0), `${v} sent, received ${times} times`);
    } else {
      assert.notEqual(outcome, "pending", `send ${v} still pending after close`);
      assert.equal(times, 0, `${v} did not complete (${outcome}) but was received`);
    }
  }
  if (requeued.size === 0) {
    // Values from one client arrive in the order it sent them.
    const last = new Array(CLIENTS).fill(-1);
    for (const [, v] of real.log) {
      const [c, n] = v.split(":").map(Number) as [number, number];
      assert.ok(n > last[c], `client ${c}: ${v} after ${c}:${last[c]}`);
      last[c] = n;
    }
  }
}

describe("Channel against a Go channel model", () => {
  for (const cap of CAPS) {
    test(`cap ${cap}: one receiver per receive`, () => {
      fc.assert(
        fc.property(fc.array(opArb({ shared: false, requeue: false }), { maxLength: 80 }), (ops) =>
          runModel(cap, ops, { shared: false }),
        ),
        { numRuns: 800 },
      );
    });

    test(`cap ${cap}: one receiver per client with several credits, and requeue`, () => {
      fc.assert(
        fc.property(fc.array(opArb({ shared: true, requeue: true }), { maxLength: 80 }), (ops) =>
          runModel(cap, ops, { shared: true }),
        ),
        { numRuns: 800 },
      );
    });
  }

  test("a recorded scenario: unbuffered rendezvous, close, drain", () => {
    runModel(
      0,
      [
        { k: "send", c: 0 },
        { k: "send", c: 1 },
        { k: "recv", c: 2, n: 1 },
        { k: "recv", c: 2, n: 1 },
        { k: "recv", c: 2, n: 1 },
        { k: "send", c: 0 },
        { k: "send", c: 0 },
        { k: "close" },
        { k: "recv", c: 1, n: 1 },
        { k: "close" },
      ],
      { shared: false },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Helpers for the example tests.

function sender(value: string) {
  const w = {
    value,
    result: undefined as string | undefined,
    calls: 0,
    done(err?: CircuitError) {
      w.calls++;
      w.result = err ? err.code : "ok";
    },
  };
  return w;
}

function receiver() {
  const r = {
    got: [] as string[],
    ended: undefined as string | undefined,
    ends: 0,
    take(v: string) {
      r.got.push(v);
    },
    end(err: CircuitError) {
      r.ends++;
      r.ended = err.code;
    },
  };
  return r;
}

function holder() {
  const h = {
    granted: 0,
    grants: [] as number[],
    revokes: 0,
    grant(n: number) {
      h.grants.push(n);
      h.granted += n;
    },
    revoke() {
      h.revokes++;
    },
  };
  return h;
}

function settledFlag() {
  const s = { called: 0, fn: () => void s.called++ };
  return s;
}

const codeIs = (code: string) => (err: unknown) => (err as { code?: unknown }).code === code;

describe("Channel basics", () => {
  test("capacity must be an integer from 0 to 1,000,000", () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_CAP + 1, 2 ** 40]) {
      assert.throws(() => new Channel(bad), RangeError, String(bad));
    }
    assert.equal(new Channel(0).cap, 0);
    assert.equal(new Channel(MAX_CAP).cap, 1_000_000);
  });

  test("a receive on a closed, drained channel ends with ChannelClosed", () => {
    const ch = new Channel<string>(2);
    ch.close(() => {});
    const r = receiver();
    ch.recv(r, 1);
    assert.deepEqual(r.got, []);
    assert.equal(r.ended, "ChannelClosed");
  });

  test("buffered values stay receivable after close, then receives fail", () => {
    const ch = new Channel<string>(3);
    ch.send(sender("a"));
    ch.send(sender("b"));
    const s = settledFlag();
    ch.close(s.fn);
    assert.equal(s.called, 1);
    assert.equal(ch.stat().closed, true);
    assert.equal(ch.stat().len, 2);
    const r = receiver();
    ch.recv(r, 3);
    assert.deepEqual(r.got, ["a", "b"]);
    assert.equal(r.ended, "ChannelClosed");
    assert.equal(r.ends, 1);
  });

  test("blocked senders fail with ChannelClosed on close, later sends too", () => {
    const ch = new Channel<string>(1);
    const a = sender("a");
    const b = sender("b");
    ch.send(a);
    ch.send(b);
    assert.equal(a.result, "ok");
    assert.equal(b.result, undefined);
    ch.close(() => {});
    assert.equal(b.result, "ChannelClosed");
    const c = sender("c");
    ch.send(c);
    assert.equal(c.result, "ChannelClosed");
    const r = receiver();
    ch.recv(r, 5);
    assert.deepEqual(r.got, ["a"]);
  });

  test("close wakes blocked receivers with ChannelClosed", () => {
    const ch = new Channel<string>(0);
    const r1 = receiver();
    const r2 = receiver();
    ch.recv(r1, 1);
    ch.recv(r2, 2);
    assert.equal(ch.stat().waitingReceivers, 3);
    ch.close(() => {});
    assert.equal(r1.ended, "ChannelClosed");
    assert.equal(r2.ended, "ChannelClosed");
    assert.equal(ch.stat().waitingReceivers, 0);
  });

  test("a receiver whose receives are queued apart is ended once by close and by scrub", () => {
    // Receiver contract: `end` at most once. Receives of one receiver are queued apart when another
    // receiver queued in between (a client topping up its prefetch behind another client).
    for (const finish of ["close", "scrub"] as const) {
      const ch = new Channel<string>(0);
      const a = receiver();
      const b = receiver();
      ch.recv(a, 1);
      ch.recv(b, 1);
      ch.recv(a, 1);
      assert.equal(ch.stat().waitingReceivers, 3);
      if (finish === "close") ch.close(() => {});
      else ch.scrub(() => {});
      assert.equal(b.ends, 1, finish);
      assert.equal(a.ends, 1, `${finish}: end called ${a.ends} times on one receiver`);
    }
  });

  test("a second close throws ChannelClosed", () => {
    const ch = new Channel<string>(0);
    ch.close(() => {});
    const s = settledFlag();
    assert.throws(() => ch.close(s.fn), codeIs("ChannelClosed"));
    assert.equal(s.called, 0);
  });

  test("scrub fails every waiter with ChannelAborted and drops the buffer", () => {
    const ch = new Channel<string>(1);
    ch.send(sender("kept"));
    const blocked = [sender("x"), sender("y")];
    for (const w of blocked) ch.send(w);
    const s = settledFlag();
    ch.scrub(s.fn);
    assert.equal(s.called, 1);
    for (const w of blocked) assert.equal(w.result, "ChannelAborted");
    assert.deepEqual(ch.stat(), {
      cap: 1,
      len: 0,
      closed: true,
      aborted: true,
      numSend: 1,
      numRecv: 0,
      waitingSenders: 0,
      waitingReceivers: 0,
    });
    assert.equal(ch.isAborted, true);
    const r = receiver();
    ch.recv(r, 1);
    assert.deepEqual(r.got, []);
    assert.equal(r.ended, "ChannelAborted");
    const late = sender("late");
    ch.send(late);
    assert.equal(late.result, "ChannelAborted");
  });

  test("scrub fails blocked receivers with ChannelAborted", () => {
    const ch = new Channel<string>(2);
    const r = receiver();
    ch.recv(r, 2);
    ch.scrub(() => {});
    assert.equal(r.ended, "ChannelAborted");
    assert.equal(r.ends, 1);
  });

  test("a scrubbed channel refuses close with ChannelAborted; a second scrub settles", () => {
    const ch = new Channel<string>(2);
    ch.scrub(() => {});
    assert.throws(() => ch.close(() => {}), codeIs("ChannelAborted"));
    const s = settledFlag();
    ch.scrub(s.fn);
    assert.equal(s.called, 1);
  });

  test("a cancelled send delivered nothing; a completed send cannot be cancelled", () => {
    const ch = new Channel<string>(0);
    const a = sender("a");
    const b = sender("b");
    ch.send(a);
    ch.send(b);
    assert.equal(ch.cancelSend(a), true);
    assert.equal(ch.stat().waitingSenders, 1);
    const r = receiver();
    ch.recv(r, 1);
    assert.deepEqual(r.got, ["b"]);
    assert.equal(a.calls, 0);
    assert.equal(ch.cancelSend(b), false);
    assert.equal(ch.cancelSend(a), false);
  });

  test("a cancelled receive consumed nothing", () => {
    const ch = new Channel<string>(1);
    const r1 = receiver();
    ch.recv(r1, 2);
    assert.equal(ch.cancelRecv(r1), 2);
    assert.equal(ch.cancelRecv(r1), 0);
    ch.send(sender("v"));
    assert.equal(ch.stat().len, 1);
    const r2 = receiver();
    ch.recv(r2, 1);
    assert.deepEqual(r1.got, []);
    assert.deepEqual(r2.got, ["v"]);
  });

  test("requeue puts values back at the head in order", () => {
    const ch = new Channel<string>(2);
    ch.send(sender("c"));
    ch.send(sender("d"));
    const blocked = sender("e");
    ch.send(blocked);
    ch.requeue(["a", "b"]);
    // Over capacity for a while: the blocked sender stays blocked until there is room again.
    assert.equal(ch.stat().len, 4);
    assert.equal(blocked.result, undefined);
    const r = receiver();
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["a", "b"]);
    assert.equal(blocked.result, undefined);
    ch.recv(r, 1);
    assert.equal(blocked.result, "ok");
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["a", "b", "c", "d", "e"]);
  });

  test("requeue hands values to waiting receivers in order and undoes their count", () => {
    const ch = new Channel<string>(3);
    for (const v of ["a", "b", "c"]) ch.send(sender(v));
    const r0 = receiver();
    ch.recv(r0, 3);
    assert.equal(ch.stat().numRecv, 3);
    const r1 = receiver();
    const r2 = receiver();
    ch.recv(r1, 1);
    ch.recv(r2, 1);
    // r0's connection dropped before it acknowledged anything.
    ch.requeue(r0.got);
    assert.deepEqual(r1.got, ["a"]);
    assert.deepEqual(r2.got, ["b"]);
    assert.equal(ch.stat().numRecv, 2);
    assert.equal(ch.stat().len, 1);
    assert.equal(ch.stat().waitingReceivers, 0);
    const r3 = receiver();
    ch.recv(r3, 1);
    assert.deepEqual(r3.got, ["c"]);
  });

  test("requeue after close keeps the values receivable; after scrub it drops them", () => {
    const ch = new Channel<string>(1);
    ch.close(() => {});
    ch.requeue(["v"]);
    const r = receiver();
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["v"]);
    assert.equal(r.ended, "ChannelClosed");

    const gone = new Channel<string>(1);
    gone.scrub(() => {});
    gone.requeue(["v"]);
    assert.equal(gone.stat().len, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Credits.

describe("Channel credits", () => {
  test("grants total at most the free slots, clipped to the capacity", () => {
    const ch = new Channel<string>(3);
    ch.send(sender("a"));
    const h1 = holder();
    ch.want(h1, 5);
    assert.equal(h1.granted, 2);
    const h2 = holder();
    ch.want(h2, 2);
    assert.equal(h2.granted, 0);
    // A send from someone else would now block: the reserved slots count as full.
    assert.equal(ch.stat().len, 1);
  });

  test("an unbuffered channel grants nothing", () => {
    const ch = new Channel<string>(0);
    const h = holder();
    ch.want(h, 3);
    assert.equal(h.granted, 0);
    assert.equal(ch.sendCredited(h, "v"), false);
  });

  test("a credited send without a credit is refused and delivers nothing", () => {
    const ch = new Channel<string>(2);
    const h = holder();
    assert.equal(ch.sendCredited(h, "v"), false);
    ch.want(h, 1);
    assert.equal(ch.sendCredited(h, "a"), true);
    // The slot is used and the buffer is not full, so the holder got its credit back.
    assert.equal(h.granted, 2);
    assert.equal(ch.sendCredited(h, "b"), true);
    assert.equal(ch.sendCredited(h, "c"), false);
    assert.deepEqual(ch.stat().len, 2);
    const r = receiver();
    ch.recv(r, 3);
    assert.deepEqual(r.got, ["a", "b"]);
  });

  test("credited sends complete into the buffer and go to waiting receivers first", () => {
    const ch = new Channel<string>(3);
    const h = holder();
    ch.want(h, 3);
    assert.equal(h.granted, 3);
    assert.equal(ch.sendCredited(h, "a"), true);
    assert.equal(ch.sendCredited(h, "b"), true);
    assert.equal(ch.stat().len, 2);
    assert.equal(ch.stat().numSend, 2);
    const r = receiver();
    ch.recv(r, 3);
    assert.deepEqual(r.got, ["a", "b"]);
    // The two freed slots come back to the holder (it wants 3 and holds 1).
    assert.equal(h.granted, 5);
    assert.equal(ch.sendCredited(h, "c"), true);
    assert.deepEqual(r.got, ["a", "b", "c"]);
    assert.equal(ch.stat().len, 0);
  });

  test("holders take turns at the freed slots: two senders on a full buffer both keep getting credits", () => {
    const ch = new Channel<string>(8);
    const h1 = holder();
    const h2 = holder();
    // Both want the whole buffer; the first to ask takes it all.
    ch.want(h1, 8);
    ch.want(h2, 8);
    assert.deepEqual([h1.granted, h2.granted], [8, 0]);
    const sent = new Map([
      [h1, 0],
      [h2, 0],
    ]);
    /** Each sender spends every credit it holds. */
    const spendAll = () => {
      for (const [h, n] of sent) {
        for (let k = n; k < h.granted; k++) assert.equal(ch.sendCredited(h, "v"), true);
        sent.set(h, h.granted);
      }
    };
    spendAll();
    const r = receiver();
    // The buffer is full; slots free two at a time, and each sender spends what it gets.
    for (let round = 0; round < 12; round++) {
      ch.recv(r, 2);
      spendAll();
    }
    // Without turns the holder first in line took every freed slot and the other got none.
    const after1 = h1.granted - 8;
    assert.ok(h2.granted >= 8, `h2 got ${h2.granted} credits`);
    assert.ok(Math.abs(after1 - h2.granted) <= 4, `shares after the start: ${after1} and ${h2.granted}`);
    assert.equal(r.got.length, 24);
  });

  test("credits are topped up in batches of half the want", () => {
    const ch = new Channel<string>(8);
    const h = holder();
    const r = receiver();
    ch.want(h, 8);
    assert.deepEqual(h.grants, [8]);
    for (const v of ["a", "b", "c"]) assert.equal(ch.sendCredited(h, v), true);
    ch.recv(r, 3);
    // Three slots free, but the holder still has 5 of 8: less than half short, no grant frame yet.
    assert.deepEqual(h.grants, [8]);
    assert.equal(ch.sendCredited(h, "d"), true);
    // Four short of its want (half of 8): topped up with the three free slots ("d" holds the fourth).
    assert.deepEqual(h.grants, [8, 3]);
    assert.equal(ch.stat().len, 1);

    // A want of 3 or less tops up every used slot at once (half rounds down to one).
    const small = new Channel<string>(8);
    const few = holder();
    small.want(few, 3);
    for (const v of ["x", "y", "z"]) assert.equal(small.sendCredited(few, v), true);
    assert.deepEqual(few.grants, [3, 1, 1, 1]);
  });

  test("a holder out of credit that waits (CWAIT) counts as a waiting sender and gets the next free slots first", () => {
    const ch = new Channel<string>(8);
    const a = holder();
    const b = holder();
    ch.want(a, 8);
    ch.want(b, 8);
    assert.deepEqual([a.granted, b.granted], [8, 0]);
    // a spends every credit: the buffer is full.
    for (let k = 0; k < 8; k++) assert.equal(ch.sendCredited(a, "a"), true);
    assert.equal(ch.stat().waitingSenders, 0);
    const waitNo = ch.holderWaits(a, true);
    assert.ok(waitNo !== undefined && waitNo > 0, `waiting: ${waitNo}`);
    assert.equal(ch.stat().waitingSenders, 1);
    // b's turn would be next (holders take turns), but the waiting holder comes first.
    const r = receiver();
    ch.recv(r, 4);
    assert.deepEqual([a.granted, b.granted], [12, 0]);
    assert.equal(ch.stat().waitingSenders, 0);
    // Nobody was revoked: no send that may block was needed.
    assert.deepEqual([a.revokes, b.revokes], [0, 0]);
    // A wait said while credit is still held is ignored (the grant is on its way).
    assert.equal(ch.holderWaits(a, true), 0);
    assert.equal(ch.stat().waitingSenders, 0);
  });

  test("a waiting holder whose send is cancelled (CWAIT 0) no longer counts, and gets no priority", () => {
    const ch = new Channel<string>(2);
    const a = holder();
    ch.want(a, 2);
    for (let k = 0; k < 2; k++) assert.equal(ch.sendCredited(a, "a"), true);
    assert.ok((ch.holderWaits(a, true) ?? 0) > 0);
    assert.equal(ch.stat().waitingSenders, 1);
    assert.equal(ch.holderWaits(a, false), 0);
    assert.equal(ch.stat().waitingSenders, 0);
    // Still a holder: freed slots top it up as usual.
    const r = receiver();
    ch.recv(r, 2);
    assert.equal(a.granted, 4);
  });

  test("a waiting holder keeps its turn among blocked senders: a slot freed is its as one credit, then it is revoked", () => {
    const ch = new Channel<string>(2);
    const a = holder();
    const idle = holder();
    ch.want(a, 2);
    ch.want(idle, 2); // holds nothing
    for (let k = 0; k < 2; k++) assert.equal(ch.sendCredited(a, "a"), true);
    assert.ok((ch.holderWaits(a, true) ?? 0) > 0);
    const w = sender("w");
    ch.send(w);
    // The waiting holder reserves nothing and waited first: it is not revoked, and waits on. The
    // idle one holding nothing is dropped without a frame; its CWAIT without a want is refused.
    assert.deepEqual([a.revokes, idle.revokes], [0, 0]);
    assert.equal(ch.holderWaits(idle, true), undefined);
    assert.equal(ch.stat().waitingSenders, 2);
    // The slot freed next is a's: one credit (its send's turn), and since w still waits, a revoke.
    const r = receiver();
    ch.recv(r, 1);
    assert.deepEqual(a.grants, [2, 1]);
    assert.equal(a.revokes, 1);
    assert.equal(w.result, undefined);
    assert.equal(ch.sendCredited(a, "a3"), true);
    ch.release(a);
    // The next is w's.
    ch.recv(r, 1);
    assert.equal(w.result, "ok");
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["a", "a", "a3", "w"]);
    // A holder that begins to wait after a blocked sender waits behind it.
    const c = new Channel<string>(1);
    const x = holder();
    c.want(x, 1);
    assert.equal(c.sendCredited(x, "x"), true);
    const b = sender("b");
    c.send(b);
    assert.equal(x.revokes, 0); // held nothing, and was dropped
    // Asking with a want (ServerHello.grantAsk) makes it a holder again, waiting behind b.
    assert.ok((c.holderWaits(x, true, 1) ?? 0) > 0);
    assert.equal(c.stat().waitingSenders, 2);
    const rx = receiver();
    c.recv(rx, 1);
    assert.equal(b.result, "ok");
    assert.deepEqual(x.grants, [1]);
    c.recv(rx, 1);
    assert.deepEqual(x.grants, [1, 1]);
    assert.deepEqual(rx.got, ["x", "b"]);
    // Asking on a closing channel is refused: the send goes as one that may block, and fails.
    c.close(() => {});
    const y = holder();
    assert.equal(c.holderWaits(y, true, 1), undefined);
  });

  test("several holders waiting for credit are served in the order they began to wait", () => {
    const ch = new Channel<string>(4);
    const hs = [holder(), holder(), holder()];
    ch.want(hs[0] as ReturnType<typeof holder>, 4);
    for (let k = 0; k < 4; k++) assert.equal(ch.sendCredited(hs[0] as ReturnType<typeof holder>, "v"), true);
    // They ask in the order 2, 0, 1 (a new connection, one out of credit, another new one).
    for (const i of [2, 0, 1]) assert.ok((ch.holderWaits(hs[i] as ReturnType<typeof holder>, true, 4) ?? 0) > 0);
    assert.equal(ch.stat().waitingSenders, 3);
    const r = receiver();
    for (const want of [
      [0, 0, 1],
      [1, 0, 1],
      [1, 1, 1],
    ]) {
      ch.recv(r, 1);
      assert.deepEqual(
        hs.map((h) => h.grants.length - (h === hs[0] ? 1 : 0)),
        want,
      );
    }
    assert.equal(ch.stat().waitingSenders, 0);
  });

  test("a waiting holder kept from free room by an idle holder's credits gets them revoked (holderStuck)", () => {
    const ch = new Channel<string>(8);
    const busy = holder();
    const idle = holder();
    ch.want(idle, 4);
    ch.want(busy, 4);
    assert.deepEqual([idle.granted, busy.granted], [4, 4]);
    for (let k = 0; k < 4; k++) assert.equal(ch.sendCredited(busy, "v"), true);
    // The buffer holds 4 of 8, but the idle holder keeps the other 4: no grant for the busy one.
    const waitNo = ch.holderWaits(busy, true) ?? 0;
    assert.ok(waitNo > 0);
    assert.equal(busy.granted, 4);
    // A stale wait number does nothing.
    ch.holderStuck(busy, waitNo + 1);
    assert.deepEqual([idle.revokes, busy.revokes], [0, 0]);
    ch.holderStuck(busy, waitNo);
    // The idle one is revoked; the busy one reserves nothing, and waits on.
    assert.deepEqual([idle.revokes, busy.revokes], [1, 0]);
    assert.equal(ch.stat().waitingSenders, 1);
    // Once the idle one has released, the free room is the busy one's.
    ch.release(idle);
    assert.deepEqual(busy.grants, [4, 4]);
    assert.equal(ch.stat().waitingSenders, 0);
    // With nobody else holding credit, a wait on a full buffer stays a wait.
    const full = new Channel<string>(2);
    const only = holder();
    full.want(only, 2);
    for (let k = 0; k < 2; k++) assert.equal(full.sendCredited(only, "v"), true);
    const n = full.holderWaits(only, true) ?? 0;
    full.holderStuck(only, n);
    assert.equal(only.revokes, 0);
    assert.equal(full.stat().waitingSenders, 1);
  });

  test("close revokes a waiting holder, and settles once it releases", () => {
    const ch = new Channel<string>(1);
    const a = holder();
    ch.want(a, 1);
    assert.equal(ch.sendCredited(a, "v"), true);
    assert.ok((ch.holderWaits(a, true) ?? 0) > 0);
    const s = settledFlag();
    ch.close(s.fn);
    assert.equal(a.revokes, 1);
    assert.equal(s.called, 0);
    ch.release(a);
    assert.equal(s.called, 1);
  });

  test("a sender that would block makes holders give back their credits, then proceeds", () => {
    const ch = new Channel<string>(2);
    const h1 = holder();
    const h2 = holder();
    ch.want(h1, 1);
    ch.want(h2, 1);
    assert.deepEqual([h1.granted, h2.granted], [1, 1]);
    const idle = holder();
    ch.want(idle, 1); // nothing left for it
    const w = sender("w");
    ch.send(w);
    assert.equal(w.result, undefined);
    assert.equal(ch.stat().waitingSenders, 1);
    assert.deepEqual([h1.revokes, h2.revokes, idle.revokes], [1, 1, 0]);
    // No new grants while a sender waits.
    const late = holder();
    ch.want(late, 2);
    assert.equal(late.granted, 0);
    // h1 spent its credit before it saw the revoke; h2 had not.
    assert.equal(ch.sendCredited(h1, "h1"), true);
    ch.release(h1);
    assert.equal(w.result, undefined);
    ch.release(h2);
    assert.equal(w.result, "ok");
    assert.equal(ch.stat().waitingSenders, 0);
    const r = receiver();
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["h1", "w"]);
  });

  test("a dropped holder's reservations end", () => {
    const ch = new Channel<string>(1);
    const h = holder();
    ch.want(h, 1);
    const w = sender("w");
    ch.send(w);
    assert.equal(w.result, undefined);
    ch.dropHolder(h);
    assert.equal(w.result, "ok");
  });

  test("a receive takes a blocked sender's value while the slot is still reserved", () => {
    const ch = new Channel<string>(1);
    const h = holder();
    ch.want(h, 1);
    const w = sender("w");
    ch.send(w);
    const r = receiver();
    ch.recv(r, 1);
    assert.deepEqual(r.got, ["w"]);
    assert.equal(w.result, "ok");
  });

  test("close settles only after every holder that held credits has released", () => {
    const ch = new Channel<string>(4);
    const h1 = holder();
    const h2 = holder();
    const empty = holder();
    ch.want(h1, 2);
    ch.want(h2, 2);
    ch.want(empty, 1);
    assert.equal(empty.granted, 0);
    const s = settledFlag();
    ch.close(s.fn);
    assert.deepEqual([h1.revokes, h2.revokes, empty.revokes], [1, 1, 0]);
    assert.equal(s.called, 0);
    ch.release(h1);
    assert.equal(s.called, 0);
    ch.release(h2);
    assert.equal(s.called, 1);
    // Closed for good: no grants after close.
    const again = holder();
    ch.want(again, 1);
    assert.equal(again.granted, 0);
  });

  test("a credited send after close began is accepted and receivable", () => {
    const ch = new Channel<string>(2);
    const h = holder();
    ch.want(h, 2);
    const waiting = receiver();
    const s = settledFlag();
    ch.close(s.fn);
    // Between close and release a receive on the empty channel waits: a credited send may come.
    ch.recv(waiting, 2);
    assert.equal(waiting.ended, undefined);
    assert.equal(ch.sendCredited(h, "a"), true);
    assert.deepEqual(waiting.got, ["a"]);
    assert.equal(ch.sendCredited(h, "b"), true);
    assert.deepEqual(waiting.got, ["a", "b"]);
    ch.release(h);
    assert.equal(s.called, 1);
    const late = receiver();
    ch.recv(late, 1);
    assert.equal(late.ended, "ChannelClosed");
  });

  test("a credited send after close began stays in the buffer past the release", () => {
    const ch = new Channel<string>(2);
    const h = holder();
    ch.want(h, 2);
    const s = settledFlag();
    ch.close(s.fn);
    assert.equal(ch.sendCredited(h, "a"), true);
    ch.release(h);
    assert.equal(s.called, 1);
    const r = receiver();
    ch.recv(r, 2);
    assert.deepEqual(r.got, ["a"]);
    assert.equal(r.ended, "ChannelClosed");
  });

  test("receivers waiting while close settles end with ChannelClosed at the release", () => {
    const ch = new Channel<string>(1);
    const h = holder();
    ch.want(h, 1);
    const s = settledFlag();
    ch.close(s.fn);
    const r = receiver();
    ch.recv(r, 1);
    assert.equal(r.ended, undefined);
    ch.release(h);
    assert.equal(r.ended, "ChannelClosed");
    assert.equal(s.called, 1);
  });

  test("scrub settles after holders release, and credited sends after it are dropped", () => {
    const ch = new Channel<string>(2);
    const h = holder();
    ch.want(h, 2);
    const s = settledFlag();
    ch.scrub(s.fn);
    assert.equal(h.revokes, 1);
    assert.equal(s.called, 0);
    assert.equal(ch.sendCredited(h, "lost"), true);
    assert.equal(ch.stat().len, 0);
    ch.release(h);
    assert.equal(s.called, 1);
  });

  test("credits keep the channel's meaning under random operations", () => {
    fc.assert(
      fc.property(fc.constantFrom(...CAPS.filter((c) => c > 0)), fc.array(creditOpArb, { maxLength: 60 }), runCredits),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Random operations with credit holders, checked by invariants: a reserved slot counts as full, no
// sender waits for room that nobody holds, a waiting sender gets every reservation revoked, a holder
// waiting for credit (CWAIT, or asking for it with a want) takes its turn among the blocked senders
// in the order they began to wait, close settles exactly when the last revoked holder has released,
// nothing is lost or duplicated.

const HOLDERS = 2;

type CreditOp =
  | { k: "send"; c: number }
  | { k: "recv"; n: number }
  | { k: "want"; h: number; n: number }
  | { k: "csend"; h: number }
  | { k: "release"; h: number }
  | { k: "drop"; h: number }
  | { k: "cancelSend"; pick: number }
  | { k: "wait"; h: number; waits: boolean; ask: boolean }
  | { k: "stuck"; h: number }
  | { k: "close" }
  | { k: "scrub" };

const creditOpArb: fc.Arbitrary<CreditOp> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 1 }).map((c) => ({ k: "send" as const, c })) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 2 }).map((n) => ({ k: "recv" as const, n })) },
  {
    weight: 4,
    arbitrary: fc
      .record({ h: fc.integer({ min: 0, max: HOLDERS - 1 }), n: fc.integer({ min: 0, max: 4 }) })
      .map(({ h, n }) => ({ k: "want" as const, h, n })),
  },
  { weight: 8, arbitrary: fc.integer({ min: 0, max: HOLDERS - 1 }).map((h) => ({ k: "csend" as const, h })) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: HOLDERS - 1 }).map((h) => ({ k: "release" as const, h })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: HOLDERS - 1 }).map((h) => ({ k: "drop" as const, h })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ k: "cancelSend" as const, pick })) },
  {
    weight: 4,
    arbitrary: fc
      .record({ h: fc.integer({ min: 0, max: HOLDERS - 1 }), waits: fc.boolean(), ask: fc.boolean() })
      .map(({ h, waits, ask }) => ({ k: "wait" as const, h, waits: waits || ask, ask })),
  },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: HOLDERS - 1 }).map((h) => ({ k: "stuck" as const, h })) },
  { weight: 1, arbitrary: fc.constant({ k: "close" as const }) },
  { weight: 1, arbitrary: fc.constant({ k: "scrub" as const }) },
);

interface TrackedHolder extends CreditHolder {
  held: number;
  revokePending: boolean;
  seq: number;
  /** Waiting for credit (holderWaits said so), since `waitTick`. */
  waiting: boolean;
  waitTick: number;
  /** What holderWaits last answered. */
  waitNo: number;
}

function runCredits(cap: number, ops: readonly CreditOp[]): void {
  const ch = new Channel<string>(cap);
  const violations: string[] = [];
  let closeBegan = false;
  let scrubbed = false;
  let settledCalls = 0;
  let closeCalls = 0;
  let expectedNumSend = 0;
  /** Orders the waits: plain sends and holders' waits take a tick when they begin. */
  let tick = 0;
  const sendTicks: number[] = [];

  const holders: TrackedHolder[] = Array.from({ length: HOLDERS }, () => {
    const h: TrackedHolder = {
      held: 0,
      revokePending: false,
      seq: 0,
      waiting: false,
      waitTick: 0,
      waitNo: 0,
      grant(n: number, waited: boolean) {
        if (!(Number.isInteger(n) && n > 0)) violations.push(`grant(${n})`);
        if (closeBegan) violations.push("grant after close began");
        if (waited !== h.waiting)
          violations.push(`grant(${n}, waited ${waited}) to a holder ${h.waiting ? "" : "not "}waiting`);
        if (h.waiting) {
          // Go's order: no plain sender still waiting began to wait before this holder.
          for (let j = 0; j < sendResults.length; j++) {
            if (sendResults[j] === undefined && (sendTicks[j] as number) < h.waitTick) {
              violations.push(
                `a holder waiting since ${h.waitTick} served before send ${j} waiting since ${sendTicks[j]}`,
              );
            }
          }
          // Served while plain senders wait: one credit, its send's turn.
          if (n !== 1 && sendResults.some((r) => r === undefined)) violations.push(`grant(${n}) of a turn`);
        }
        h.waiting = false;
        h.held += n;
      },
      revoke() {
        if (h.revokePending) violations.push("revoke twice before a release");
        // One that holds nothing is revoked only if it waits for credit, when the channel closes.
        if (h.held === 0 && !(h.waiting && closeBegan)) violations.push("revoke of a holder without credits");
        h.revokePending = true;
        h.waiting = false;
      },
    };
    return h;
  });

  const sendResults: (string | undefined)[] = [];
  const sendWaiters: SendWaiter<string>[] = [];
  const sendSeq = [0, 0];
  /** Values whose send completed (or whose credited send was accepted before a scrub). */
  const delivered = new Set<string>();
  /** Values that must never arrive. */
  const undelivered = new Set<string>();
  const log: string[] = [];
  const receivers: { r: Receiver<string>; ended?: string; owed: number }[] = [];

  const newReceiver = () => {
    const entry: { r: Receiver<string>; ended?: string; owed: number } = {
      owed: 0,
      r: {
        take: (v) => {
          if (entry.owed <= 0 || entry.ended) violations.push(`take(${v}) beyond credits`);
          entry.owed--;
          log.push(v);
        },
        end: (err) => {
          if (entry.ended) violations.push("end twice");
          entry.ended = err.code;
        },
      },
    };
    receivers.push(entry);
    return entry;
  };

  const releaseHolder = (h: TrackedHolder, drop: boolean) => {
    if (drop) ch.dropHolder(h);
    else ch.release(h);
    h.held = 0;
    h.revokePending = false;
    h.waiting = false;
  };

  const check = (step: string) => {
    assert.deepEqual(violations, [], step);
    const s = ch.stat();
    const totalHeld = holders.reduce((a, h) => a + h.held, 0);
    assert.ok(s.len + totalHeld <= cap, `${step}: len ${s.len} + reserved ${totalHeld} > cap ${cap}`);
    const waitingHolders = holders.filter((h) => h.waiting).length;
    const plainWaiting = sendResults.filter((r) => r === undefined).length;
    assert.equal(s.waitingSenders, plainWaiting + waitingHolders, `${step}: waiting senders`);
    if (s.waitingSenders > 0) assert.equal(s.len + totalHeld, cap, `${step}: a sender waits although a slot is free`);
    // (A holder may wait for credit while a receiver waits, if another holder keeps every slot:
    // holderStuck revokes that one a short while later.)
    if (plainWaiting > 0) {
      assert.equal(s.waitingReceivers, 0, `${step}: senders and receivers both wait`);
      for (const h of holders) {
        if (h.held > 0) assert.ok(h.revokePending, `${step}: a sender waits and a holder keeps its credits`);
      }
    }
    if (s.waitingReceivers > 0) assert.equal(s.len, 0, `${step}: a receiver waits on a non-empty buffer`);
    if (closeBegan) {
      for (const h of holders) if (h.held > 0) assert.ok(h.revokePending, `${step}: credits kept after close`);
      const shouldBeSettled = holders.every((h) => !h.revokePending);
      assert.equal(settledCalls, shouldBeSettled ? closeCalls : 0, `${step}: settled calls`);
    }
    assert.equal(s.numSend, expectedNumSend, `${step}: numSend`);
    assert.equal(s.numRecv, log.length, `${step}: numRecv`);
  };

  const send = (c: number) => {
    const i = sendWaiters.length;
    const value = `s${c}:${sendSeq[c]++}`;
    sendResults.push(undefined);
    const w: SendWaiter<string> = {
      value,
      done: (err) => {
        if (sendResults[i] !== undefined) violations.push(`done twice for ${value}`);
        sendResults[i] = err ? err.code : "ok";
        if (err) undelivered.add(value);
        else {
          delivered.add(value);
          expectedNumSend++;
          // Go's order: no holder still waiting began to wait before this send, if it went into
          // the buffer. (One handed straight to a receiver met it while every slot was reserved:
          // the waiting holder has no value here to hand over.)
          for (const h of log.includes(value) ? [] : holders) {
            if (h.waiting && h.waitTick < (sendTicks[i] as number)) {
              violations.push(
                `send ${i} waiting since ${sendTicks[i]} served before a holder waiting since ${h.waitTick}`,
              );
            }
          }
        }
      },
    };
    sendWaiters.push(w);
    sendTicks.push(++tick);
    ch.send(w);
  };

  ops.forEach((op, i) => {
    const step = `step ${i} ${JSON.stringify(op)}`;
    switch (op.k) {
      case "send":
        send(op.c);
        break;
      case "recv": {
        const e = newReceiver();
        e.owed = op.n;
        ch.recv(e.r, op.n);
        break;
      }
      case "want":
        ch.want(holders[op.h] as TrackedHolder, op.n);
        break;
      case "csend": {
        const h = holders[op.h] as TrackedHolder;
        const value = `h${op.h}:${h.seq++}`;
        const ok = ch.sendCredited(h, value);
        assert.equal(ok, h.held > 0, `${step}: sendCredited with ${h.held} credits`);
        if (ok) {
          h.held--;
          if (scrubbed) undelivered.add(value);
          else {
            delivered.add(value);
            expectedNumSend++;
          }
        } else undelivered.add(value);
        break;
      }
      case "release":
        releaseHolder(holders[op.h] as TrackedHolder, false);
        break;
      case "wait": {
        // A holder out of credit says it waits (or that its send was cancelled); with `ask`, one
        // that may hold nothing here asks for credit with a want.
        const h = holders[op.h] as TrackedHolder;
        const t = ++tick;
        const was = h.waiting;
        const held = h.held;
        // It waits from now on, if it may (it may be granted before holderWaits returns).
        if (op.waits && !was && h.held === 0 && !h.revokePending) {
          h.waiting = true;
          h.waitTick = t;
        }
        const r = ch.holderWaits(h, op.waits, op.ask ? 3 : undefined);
        if (r === undefined) {
          h.waiting = false;
          if (op.ask && !closeBegan) violations.push("an ask refused on an open channel");
        } else if (r > 0) {
          h.waitNo = r;
          if (!h.waiting) violations.push("waits, but was not expected to");
        } else {
          if (was && op.waits && h.held === held)
            violations.push("a waiting holder said it waits and was told it does not");
          h.waiting = false;
        }
        break;
      }
      case "stuck": {
        // The wait goes on a while (the session's timer): other holders' credits are taken back.
        const h = holders[op.h] as TrackedHolder;
        const before = holders.filter((o) => o.held > 0 && !o.revokePending);
        ch.holderStuck(h, h.waitNo);
        if (h.waiting) {
          for (const o of before) if (!o.revokePending) violations.push("a holder kept its credits past holderStuck");
        }
        break;
      }
      case "drop":
        releaseHolder(holders[op.h] as TrackedHolder, true);
        break;
      case "cancelSend": {
        if (sendWaiters.length === 0) break;
        const i = op.pick % sendWaiters.length;
        const w = sendWaiters[i] as SendWaiter<string>;
        const wasPending = sendResults[i] === undefined;
        assert.equal(ch.cancelSend(w), wasPending, step);
        if (wasPending) {
          sendResults[i] = "cancelled";
          undelivered.add(w.value);
        }
        break;
      }
      case "close":
        if (scrubbed) assert.throws(() => ch.close(() => void settledCalls++), codeIs("ChannelAborted"));
        else if (closeBegan) assert.throws(() => ch.close(() => void settledCalls++), codeIs("ChannelClosed"));
        else {
          closeBegan = true;
          closeCalls++;
          ch.close(() => void settledCalls++);
          for (let j = 0; j < sendResults.length; j++) {
            if (sendResults[j] === undefined) violations.push(`send ${j} still waiting after close`);
          }
        }
        break;
      case "scrub":
        if (!scrubbed) {
          scrubbed = true;
          // Values still in the buffer are dropped; they may have been counted as delivered.
          for (const v of delivered) undelivered.add(v);
          for (const v of log) undelivered.delete(v);
          delivered.clear();
          for (const v of log) delivered.add(v);
        }
        closeBegan = true;
        closeCalls++;
        ch.scrub(() => void settledCalls++);
        break;
    }
    check(step);
  });

  // The holders answer every revoke (and give back whatever they hold), the channel closes, and a
  // receiver drains it.
  for (const h of holders) releaseHolder(h, false);
  if (!closeBegan) {
    closeBegan = true;
    closeCalls++;
    ch.close(() => void settledCalls++);
  }
  check("final close");
  assert.equal(settledCalls, closeCalls);
  const drain = newReceiver();
  drain.owed = 1_000_000;
  ch.recv(drain.r, 1_000_000);
  assert.equal(drain.ended, scrubbed ? "ChannelAborted" : "ChannelClosed");
  for (const e of receivers) assert.ok(e.ended !== undefined || e.owed === 0, "a receiver was left waiting");

  const seen = new Set<string>();
  for (const v of log) {
    assert.ok(!seen.has(v), `${v} received twice`);
    seen.add(v);
    assert.ok(!undelivered.has(v), `${v} was never sent successfully but was received`);
  }
  for (const v of delivered) assert.ok(seen.has(v), `${v} was sent but never received`);
  // Each sender's values (plain and credited alike) arrive in its order.
  const last = new Map<string, number>();
  for (const v of log) {
    const [who, n] = v.split(":") as [string, string];
    assert.ok(Number(n) > (last.get(who) ?? -1), `${v} out of order`);
    last.set(who, Number(n));
  }
}
