// The client's side of a select case on a /@ channel (src/client/replicated-select.ts) against a
// scripted host: what it does when the host goes away at each step. A watch that fails registers
// the case again (new opid, the old one cancelled); a recv commit whose host died did not happen
// (the case registers again and the select goes on); a send commit whose host died is finished as
// a plain send with the same id; a value taken is acknowledged when the select resolves, and a
// losing case is released.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type CaseChannel, ReplicatedCase } from "../src/client/replicated-select.ts";
import { type SelectCase, select } from "../src/client/select.ts";
import { ServerGone, StoreUnavailable } from "../src/errors.ts";
import { encode } from "../src/wire/protocol.ts";

type Req = Record<string, unknown>;

/** A host reached through a fake connection; `answer` scripts each request. */
class Script implements CaseChannel {
  readonly names = ["@", "x"];
  readonly log: Req[] = [];
  private opid = 0;
  private sends = 0;
  constructor(private readonly answer: (req: Req, n: number) => Promise<unknown>) {}
  private calls = 0;
  readonly conn = {
    request: (req: Req) => {
      this.log.push(req);
      return this.answer(req, this.calls++);
    },
  };
  async op(req: Req): Promise<{ r: unknown; conn: never }> {
    this.log.push({ ...req, via: "op" });
    const r = await this.answer(req, this.calls++);
    return { r, conn: this.conn as never };
  }
  nextOpid(): number {
    return ++this.opid;
  }
  sendId(): string {
    return `id-${++this.sends}`;
  }
  acts(): string[] {
    return this.log.map((r) => `${r.act}${r.via ? "*" : ""}:${r.opid ?? r.seq ?? ""}`);
  }
}

const gone = () => Promise.reject(new ServerGone("host died"));
const never = () => new Promise<never>(() => {});
const settle = () => new Promise((r) => setTimeout(r, 20));

function recvCase(ch: CaseChannel): SelectCase {
  return { handle: 0, op: "recv", target: () => new ReplicatedCase(ch, "recv") };
}
function sendCase(ch: CaseChannel, v: unknown): SelectCase {
  const bytes = encode(v);
  return { handle: 0, op: "send", bytes, target: () => new ReplicatedCase(ch, "send", bytes) };
}

test("a watch whose host died: the case registers again elsewhere, and the old opid is cancelled", async () => {
  const ch = new Script(async (req, n) => {
    if (req.act === "case" && n === 0) return { offer: null };
    if (req.act === "watch") return gone();
    if (req.act === "case") return { offer: "value" };
    if (req.act === "commit") return { seq: 7, value: encode("v") };
    return null;
  });
  const r = await select([recvCase(ch)]);
  assert.deepEqual(r, { index: 0, value: "v" });
  await settle();
  assert.deepEqual(ch.acts(), ["case*:1", "watch:1", "cancel:1", "case*:2", "commit:2", "ack:7"]);
});

test("a recv commit whose host died did not happen: the case registers again and the select goes on", async () => {
  let commits = 0;
  const ch = new Script(async (req) => {
    if (req.act === "case") return { offer: "value" };
    if (req.act === "commit") return commits++ === 0 ? gone() : { seq: 9, value: encode("again") };
    return null;
  });
  const r = await select([recvCase(ch)]);
  assert.deepEqual(r, { index: 0, value: "again" });
  await settle();
  assert.deepEqual(ch.acts(), ["case*:1", "commit:1", "case*:2", "commit:2", "ack:9"]);
});

test("a send commit whose host died is finished as a plain send with the same id", async () => {
  const ch = new Script(async (req) => {
    if (req.act === "case") return { offer: "room" };
    if (req.act === "commit") return gone();
    if (req.act === "send") return null;
    return null;
  });
  const r = await select([sendCase(ch, "w")]);
  assert.deepEqual(r, { index: 0 });
  const reg = ch.log.find((x) => x.act === "case");
  const send = ch.log.find((x) => x.act === "send");
  assert.ok(send, "a plain send was issued");
  assert.equal(send.id, reg?.id, "with the send case's id");
  assert.deepEqual(Buffer.from(send.value as Uint8Array), encode("w"));
});

test("an abort while a send commit's outcome is unknown waits for the carried-over send", async () => {
  let finishSend: (v: unknown) => void = () => {};
  const ch = new Script(async (req) => {
    if (req.act === "case") return { offer: "room" };
    if (req.act === "commit") return gone();
    if (req.act === "send") return new Promise((r) => (finishSend = r));
    return null;
  });
  const ac = new AbortController();
  const p = select([sendCase(ch, "w")], { signal: ac.signal });
  await settle();
  ac.abort(new Error("too late"));
  await settle();
  finishSend(null);
  assert.deepEqual(await p, { index: 0 }, "the case happened: the select says so");
});

test("the losing /@ case is released; an abort while a registration is in flight rejects at once", async () => {
  const a = new Script(async (req) => {
    if (req.act === "case") return { offer: "value" };
    if (req.act === "commit") return { seq: 1, value: encode("a") };
    return null;
  });
  const b = new Script(async (req) => {
    if (req.act === "case") return { offer: "value" };
    if (req.act === "commit") return { seq: 2, value: encode("b") };
    return null;
  });
  const r = await select([recvCase(a), recvCase(b)]);
  await settle();
  // Whichever won was committed and acknowledged; the other released, never committed.
  const [won, lost] = r.index === 0 ? [a, b] : [b, a];
  assert.equal(r.value, r.index === 0 ? "a" : "b");
  assert.deepEqual(won.acts(), ["case*:1", "commit:1", `ack:${r.index + 1}`]);
  assert.deepEqual(lost.acts(), ["case*:1", "cancel:1"]);
  const slow = new Script(async (req) => (req.act === "case" ? never() : null));
  const ac = new AbortController();
  const p = select([recvCase(slow)], { signal: ac.signal });
  await settle();
  ac.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
});

test("with default, a registration that does not answer within 500 ms does not hold the select", async () => {
  const slow = new Script(async (req) => (req.act === "case" ? never() : null));
  const t0 = performance.now();
  assert.deepEqual(await select([recvCase(slow)], { default: true }), { index: -1 });
  const ms = performance.now() - t0;
  assert.ok(ms >= 450 && ms < 2000, `${ms} ms`);
  assert.equal(slow.log[0]?.once, true, "registered as `once`: not kept if not ready");
});

test("a case that fails while another case is being committed fails the select if that commit does not happen", async () => {
  const later = <T>(ms: number, f: () => T | Promise<T>) =>
    new Promise<T>((resolve, reject) => setTimeout(() => Promise.resolve().then(f).then(resolve, reject), ms));
  const a = new Script(async (req, n) => {
    if (req.act === "case" && n === 0) return { offer: "value" };
    if (req.act === "commit") return later(60, () => ({ failed: true }));
    if (req.act === "case") return never();
    return null;
  });
  const b = new Script(async (req) => {
    if (req.act === "case") return { offer: null };
    if (req.act === "watch") return later(20, () => Promise.reject(new StoreUnavailable("no store")));
    return null;
  });
  await assert.rejects(select([recvCase(a), recvCase(b)]), StoreUnavailable);
  assert.ok(a.acts().includes("commit:1"), "a's commit was under way when b failed");
});
