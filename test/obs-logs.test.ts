// What an operator reads (DESIGN.md §13): each event is one JSON line on the daemon's stderr with
// time, level and fields — a refused key, a failed join, a protocol error, a remote stop, a
// process's start and exit — and a busy channel adds no line at all.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { createLogger } from "../src/daemon/logger.ts";
import { dial } from "../src/index.ts";
import { FrameWriter } from "../src/wire/frame.ts";
import { encode, PROTOCOL_VERSION, T } from "../src/wire/protocol.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { logEvents, waitEvent } from "./helpers/obs.ts";

after(killAll);
const dir = mkdtempSync(join(tmpdir(), "circuit-obs-logs-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function frame(type: number, fields: number[], tail?: Uint8Array): Buffer {
  const w = new FrameWriter();
  w.frame(type, fields, tail);
  return w.take();
}

async function keyFile(name: string): Promise<string> {
  const f = join(dir, name);
  assert.equal((await runCli(["keygen", f])).code, 0);
  return f;
}

const base = (url: string) => url.replace(/\/X[0-9a-f]+$/, "");
const port = (url: string) => Number(/:(\d+)\/X/.exec(url)?.[1]);

function wellFormed(e: Record<string, unknown>): void {
  assert.match(String(e.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "ISO time");
  assert.ok(["info", "warn", "error"].includes(String(e.level)), `level ${e.level}`);
  assert.equal(typeof e.msg, "string");
}

test("a client with the wrong key: exactly one handshake-refused line with its address and the reason", async () => {
  const [k1, k2] = [await keyFile("k1"), await keyFile("k2")];
  const d = await startDaemon(["--key", k1]);
  try {
    const c = dial(base(d.url), { key: readFileSync(k2, "utf8") });
    await assert.rejects(c);
    const e = await waitEvent(d, (x) => x.event === "handshake-refused");
    wellFormed(e);
    assert.equal(e.level, "warn");
    assert.match(String(e.peer), /^127\.0\.0\.1:\d+$/);
    assert.equal(e.reason, "wrong cluster key");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(logEvents(d.stderr()).filter((x) => x.event === "handshake-refused").length, 1, d.stderr());
  } finally {
    await d.stop();
  }
});

test("a --join that fails: exactly one join-failed line naming the seed and why", async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const dead = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  const d = await startDaemon(["--join", `circuit://127.0.0.1:${dead}`]);
  try {
    const e = await waitEvent(d, (x) => x.event === "join-failed");
    wellFormed(e);
    assert.equal(e.seed, `circuit://127.0.0.1:${dead}`);
    assert.equal(e.kind, "unreachable");
    assert.match(String(e.reason), /ECONNREFUSED|unreachable/);
    // It keeps retrying (with backoff), and says so once.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(logEvents(d.stderr()).filter((x) => x.event === "join-failed").length, 1, d.stderr());
  } finally {
    await d.stop();
  }
});

test("a protocol error after HELLO: exactly one protocol-error line; a bad HELLO is a refused handshake", async () => {
  const d = await startDaemon();
  try {
    const talk = async (bytes: Buffer[]) => {
      const s = net.connect(port(d.url), "127.0.0.1");
      s.on("error", () => {});
      s.resume();
      await new Promise((r) => s.once("connect", r));
      const local = `127.0.0.1:${s.localPort}`;
      for (const b of bytes) s.write(b);
      await new Promise((r) => s.once("close", r));
      return local;
    };
    const hello = frame(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "client" }));
    const peer = await talk([hello, frame(0x7e, [1, 2])]);
    const e = await waitEvent(d, (x) => x.event === "protocol-error");
    wellFormed(e);
    assert.equal(e.peer, peer);
    assert.match(String(e.reason), /unknown frame type 0x7e/);
    const old = await talk([frame(T.HELLO, [], encode({ v: PROTOCOL_VERSION + 100 }))]);
    const h = await waitEvent(d, (x) => x.event === "handshake-refused");
    assert.equal(h.peer, old);
    assert.match(String(h.reason), /unsupported protocol version/);
    const all = logEvents(d.stderr());
    assert.equal(all.filter((x) => x.event === "protocol-error").length, 1, d.stderr());
    assert.equal(all.filter((x) => x.event === "handshake-refused").length, 1, d.stderr());
  } finally {
    await d.stop();
  }
});

test("a busy channel logs nothing per message; a process start/exit and a remote stop log once each", async () => {
  const d = await startDaemon();
  const c = await dial(d.url);
  try {
    const before = logEvents(d.stderr()).length;
    const ch = await c.walk(`/${d.id}/busy`).makeChan<number>(100);
    const n = 3000;
    const recv = (async () => {
      let got = 0;
      for await (const _ of ch) if (++got === n) break;
      return got;
    })();
    for (let i = 0; i < n; i++) await ch.send(i);
    assert.equal(await recv, n);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(logEvents(d.stderr()).length, before, `no line per message:\n${d.stderr()}`);

    const p = await runCli(["-d", d.url, "mkproc", `/${d.id}/p`, "--", "sh", "-c", "exit 3"]);
    assert.equal(p.code, 0, p.stderr);
    const start = await waitEvent(d, (x) => x.event === "proc-start");
    assert.equal(start.path, `/${d.id}/p`);
    assert.equal(typeof start.pid, "number");
    const exit = await waitEvent(d, (x) => x.event === "proc-exit");
    assert.equal(exit.path, `/${d.id}/p`);
    assert.equal(exit.code, 3);

    const stop = await runCli(["-d", d.url, "stop", `/${d.id}`]);
    assert.equal(stop.code, 0, stop.stderr);
    await d.exited;
    const r = logEvents(d.stderr()).filter((x) => x.event === "remote-stop");
    assert.equal(r.length, 1, d.stderr());
    assert.match(String(r[0]?.peer), /^127\.0\.0\.1:\d+$/);
  } finally {
    await c.close().catch(() => {});
    await d.stop();
  }
});

test("on a terminal a line is text a person reads; --log-level drops what is below it", async () => {
  const lines: string[] = [];
  const log = createLogger({ pretty: true, write: (l) => lines.push(l) });
  log.warn({ event: "handshake-refused", peer: "127.0.0.1:5", reason: "wrong cluster key" }, "refused 127.0.0.1:5");
  log.debug({ event: "idle-close" }, "not at info");
  assert.equal(lines.length, 1);
  assert.match(
    lines[0] as string,
    /^\d\d:\d\d:\d\d\.\d{3} WARN {2}refused 127\.0\.0\.1:5 {2}event=handshake-refused peer=127\.0\.0\.1:5 reason="wrong cluster key"\n$/,
  );
  const json: string[] = [];
  createLogger({ pretty: false, level: "debug", write: (l) => json.push(l) }).debug({ event: "x", n: 1 }, "m");
  assert.deepEqual(Object.keys(JSON.parse(json[0] as string)), ["level", "time", "event", "n", "msg"]);

  const quiet = await startDaemon(["--log-level", "warn"]);
  try {
    const p = await runCli(["-d", quiet.url, "mkproc", `/${quiet.id}/p`, "--", "true"]);
    assert.equal(p.code, 0, p.stderr);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(quiet.stderr(), "", "info events (serving, proc-start) are below warn");
  } finally {
    await quiet.stop();
  }
  const bad = await runCli(["start", "--addr", "127.0.0.1:0", "--log-level", "loud"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^circuit: --log-level is one of trace, debug, info, warn, error, fatal, silent\n$/);
});
