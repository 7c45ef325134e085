// Bad input against a live daemon: each gets a clear error (and a closed connection where the
// stream can no longer be trusted), and the daemon keeps serving everyone else.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial, MessageTooLarge, NotFound, WrongKind } from "../src/index.ts";
import { batchTail } from "../src/wire/frame.ts";
import { decode, encode, T } from "../src/wire/protocol.ts";
import { startDaemon } from "./helpers/daemon.ts";
import { type Frame, Raw } from "./helpers/raw.ts";

describe("bad input", () => {
  let d: Awaited<ReturnType<typeof startDaemon>>;
  let port: number;
  let good: Client;

  /** The well-behaved client still works end to end. */
  async function stillServing(): Promise<void> {
    const ch = await good.walk(`/${d.id}/probe-${Math.random().toString(36).slice(2)}`).makeChan<number>(1);
    await ch.send(42);
    assert.equal(await ch.recv(), 42);
    await ch.scrub();
  }

  before(async () => {
    d = await startDaemon();
    port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    good = await dial(d.url);
  });
  after(async () => {
    await good?.close();
    await d?.stop();
  });

  test("garbage bytes before the handshake close the connection with a ProtocolError", async () => {
    const r = new Raw(port);
    r.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const errs = await r.untilClosed();
    assert.ok(r.closed);
    assert.equal(errs[0]?.code, "ProtocolError");
    assert.match(errs[0]?.message ?? "", /exceeds the limit/);
    await stillServing();
  });

  test("a 2 GB length prefix is refused without allocating it", async () => {
    const r = new Raw(port);
    const b = Buffer.alloc(5);
    b.writeUInt32BE(0x80000000, 0);
    b[4] = T.HELLO;
    r.write(b);
    const errs = await r.untilClosed();
    assert.ok(r.closed);
    assert.equal(errs[0]?.code, "ProtocolError");
    await stillServing();
  });

  test("a zero-length frame and an unknown frame type close the connection", async () => {
    for (const bytes of [Buffer.from([0, 0, 0, 0]), null]) {
      const r = new Raw(port);
      await r.hello();
      if (bytes) r.write(bytes);
      else r.frame(0x7f, [1, 2, 3]);
      const errs = await r.untilClosed();
      assert.ok(r.closed);
      if (!bytes) assert.equal(errs[0]?.code, "ProtocolError");
    }
    await stillServing();
  });

  test("a wrong protocol version is refused with a reason", async () => {
    const r = new Raw(port);
    r.frame(T.HELLO, [], encode({ v: 999 }));
    const errs = await r.untilClosed();
    assert.equal(errs[0]?.code, "ProtocolError");
    assert.match(errs[0]?.message ?? "", /version/);
  });

  test("an unknown op and malformed arguments are answered with ProtocolError; the connection stays", async () => {
    const r = new Raw(port);
    await r.hello();
    const cases: unknown[] = [
      { op: "launch-missiles" },
      { op: "ls", path: "not-an-array" },
      { op: "ls", path: [d.id, "bad name"] },
      { op: "mkchan", path: [d.id, "x"], cap: -1 },
      { op: "mkchan", path: [d.id, "x"], cap: "ten" },
      { op: "stat", handle: "h" },
      { nop: true },
    ];
    let id = 1;
    for (const req of cases.slice(0, -1)) {
      r.request(id, req);
      const f = await r.next();
      assert.equal(f?.type, T.ERR, JSON.stringify(req));
      assert.equal(f?.body.readUInt32BE(0), id);
      const e = decode((f as Frame).body.subarray(4)) as { code: string };
      assert.equal(e.code, "ProtocolError", JSON.stringify(req));
      id++;
    }
    r.request(id, { op: "servers" });
    const ok = await r.next();
    assert.equal(ok?.type, T.RES);
    // A request that is not even an object is a broken peer: closed.
    r.request(id + 1, cases[cases.length - 1]);
    const errs = await r.untilClosed();
    assert.equal(errs[0]?.code, "ProtocolError");
    await stillServing();
  });

  test("a request body that is not MessagePack closes the connection", async () => {
    const r = new Raw(port);
    await r.hello();
    r.frame(T.REQ, [1], Buffer.from([0xc1, 0xc1, 0xc1]));
    const errs = await r.untilClosed();
    assert.equal(errs[0]?.code, "ProtocolError");
    await stillServing();
  });

  test("a value over the limit sent by a raw peer is refused and the connection closed", async () => {
    const r = new Raw(port);
    await r.hello();
    r.request(1, { op: "mkchan", path: [d.id, "big"], cap: 1 });
    const res = await r.next();
    assert.equal(res?.type, T.RES);
    const { handle } = decode((res as Frame).body.subarray(4)) as { handle: number };
    r.frame(T.SEND, [2, handle, 0, 1], Buffer.alloc(16 * 1024 * 1024 + 1));
    const errs = await r.untilClosed(10_000);
    assert.equal(errs[0]?.code, "ProtocolError");
    assert.equal(((await good.walk(`/${d.id}/big`).peek()) as { len: number }).len, 0);
    await good.walk(`/${d.id}/big`).scrub();
    await stillServing();
  });

  test("a send on an unknown handle or a credited send without credit closes the connection", async () => {
    for (const f of [
      [T.SEND, [1, 999, 0, 1]],
      [T.CSEND, [999, 1]],
    ] as const) {
      const r = new Raw(port);
      await r.hello();
      r.frame(f[0], [...f[1]], f[0] === T.CSEND ? batchTail([encode("x")]) : encode("x"));
      await r.untilClosed();
      assert.ok(r.closed);
    }
    const r = new Raw(port);
    await r.hello();
    r.request(1, { op: "mkchan", path: [d.id, "nocredit"], cap: 4 });
    const { handle } = decode(((await r.next()) as Frame).body.subarray(4)) as { handle: number };
    r.frame(T.CSEND, [handle, 1], batchTail([encode("x")]));
    const errs = await r.untilClosed();
    assert.equal(errs[0]?.code, "ProtocolError");
    assert.equal(((await good.walk(`/${d.id}/nocredit`).peek()) as { len: number }).len, 0);
    await stillServing();
  });

  test("a batch of sends with a truncated or missing entry closes the connection", async () => {
    for (const bad of [Buffer.from("00000005aa", "hex"), Buffer.alloc(0), Buffer.from("0000", "hex")]) {
      const r = new Raw(port);
      await r.hello();
      r.request(1, { op: "mkchan", path: [d.id, "trunc"], cap: 4 });
      const { handle } = decode(((await r.next()) as Frame).body.subarray(4)) as { handle: number };
      r.frame(T.CSEND, [handle, 1], bad);
      const errs = await r.untilClosed();
      assert.equal(errs[0]?.code, "ProtocolError");
      assert.equal(((await good.walk(`/${d.id}/trunc`).peek()) as { len: number }).len, 0);
      await good.walk(`/${d.id}/trunc`).scrub();
    }
    await stillServing();
  });

  test("the client library refuses bad input before any I/O", async () => {
    const ch = await good.walk(`/${d.id}/lib`).makeChan(1);
    await assert.rejects(ch.send(new Uint8Array(16 * 1024 * 1024)), MessageTooLarge);
    assert.throws(() => ch.iterate({ prefetch: 0 }), RangeError);
    await assert.rejects(
      good
        .walk(`/${d.id}/lib/x`)
        .get()
        .then(() => good.walk(`/${d.id}`).makeChan(1)),
      WrongKind,
    );
    await assert.rejects(good.walk(`/${d.id}/nothing`).scrub(), NotFound);
    await ch.scrub();
  });

  test("a client that vanishes mid-frame does not disturb the daemon", async () => {
    const r = new Raw(port);
    await r.hello();
    const b = Buffer.alloc(9);
    b.writeUInt32BE(1000, 0);
    b[4] = T.REQ;
    r.write(b);
    await new Promise((res) => setTimeout(res, 50));
    r.destroy();
    await stillServing();
  });
});
