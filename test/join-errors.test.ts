// A --join that cannot complete, as an operator sees it on one machine (loopback): each reason
// said once on the daemon's stderr while it keeps trying. The same across hosts is in
// multihost-join.test.ts; --advertise and `circuit join` are in advertise.test.ts.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FrameWriter } from "../src/wire/frame.ts";
import { encode, PROTOCOL_VERSION, T } from "../src/wire/protocol.ts";
import { killAll, startDaemon } from "./helpers/daemon.ts";

const keyA = join(tmpdir(), `circuit-join-a-${process.pid}.key`);
const keyB = join(tmpdir(), `circuit-join-b-${process.pid}.key`);
writeFileSync(keyA, randomBytes(32).toString("hex"), { mode: 0o600 });
writeFileSync(keyB, randomBytes(32).toString("hex"), { mode: 0o600 });

const servers: net.Server[] = [];
after(async () => {
  for (const s of servers) s.close();
  await killAll();
  rmSync(keyA, { force: true });
  rmSync(keyB, { force: true });
});

async function waitFor(what: string, ms: number, f: () => string, re: RegExp): Promise<number> {
  const t0 = Date.now();
  while (!re.test(f())) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms:\n${f()}`);
    await sleep(50);
  }
  return Date.now() - t0;
}

/** A TCP server on 127.0.0.1 that answers every connection with `reply` (bytes, or a function). */
async function fakeServer(reply: (sock: net.Socket) => void): Promise<number> {
  const s = net.createServer(reply);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as net.AddressInfo).port;
}

/** A port on 127.0.0.1 where nothing listens (it did a moment ago). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function frame(type: number, fields: number[], body: unknown): Buffer {
  const w = new FrameWriter();
  w.frame(type, fields, encode(body));
  return Buffer.from(w.take());
}

// The tests are independent (each its own daemons and ports) and mostly wait: run side by side.
describe("a --join that cannot complete says why, once, and keeps trying", { concurrency: true }, () => {
  test("nothing listening: unreachable (ECONNREFUSED), said once over several tries", async () => {
    const port = await deadPort();
    const d = await startDaemon(["--join", `circuit://127.0.0.1:${port}`]);
    const line = new RegExp(
      `join circuit://127\\.0\\.0\\.1:${port}: unreachable \\(ECONNREFUSED\\); retrying every ≤30 s`,
    );
    const took = await waitFor("the reason", 10_000, d.stderr, line);
    assert.ok(took < 10_000);
    // Tries at 0, 1 and 3 s: the same state, said once.
    await sleep(3500);
    assert.equal(
      d
        .stderr()
        .split("\n")
        .filter((l) => line.test(l)).length,
      1,
      d.stderr(),
    );
  });

  test("another cluster key, no key against a keyed daemon, a key against a keyless one", async () => {
    const keyed = await startDaemon(["--key", keyA]);
    const plain = await startDaemon([]);
    const [wrong, none, extra] = await Promise.all([
      startDaemon(["--key", keyB, "--join", keyed.url]),
      startDaemon(["--join", keyed.url]),
      startDaemon(["--key", keyA, "--join", plain.url]),
    ]);
    await waitFor("wrong key", 10_000, wrong.stderr, /: refused our cluster key/);
    await waitFor(
      "no key",
      10_000,
      none.stderr,
      /ended the connection before the circuit handshake: it may require a cluster key/,
    );
    await waitFor("key against keyless", 10_000, extra.stderr, /does not speak TLS: it runs without a cluster key/);
  });

  test("a peer that is not a circuit daemon (HTTP), or speaks another protocol version", async () => {
    const web = http.createServer((_q, s) => s.end("hello"));
    servers.push(web as unknown as net.Server);
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    const webPort = (web.address() as net.AddressInfo).port;
    // What an older daemon does with our HELLO: refuses it and says why.
    const oldPort = await fakeServer((s) => {
      s.once("data", () =>
        s.end(
          frame(T.ERR, [0], { code: "ProtocolError", message: `unsupported protocol version ${PROTOCOL_VERSION}` }),
        ),
      );
    });
    // A future daemon that answers with its own version.
    const newPort = await fakeServer((s) => {
      s.once("data", () =>
        s.write(frame(T.HELLO, [], { v: PROTOCOL_VERSION + 1, id: "X0123456789abcdef", url: "circuit://x:1" })),
      );
    });
    const [h, o, n] = await Promise.all([
      startDaemon(["--join", `circuit://127.0.0.1:${webPort}`]),
      startDaemon(["--join", `circuit://127.0.0.1:${oldPort}`]),
      startDaemon(["--join", `circuit://127.0.0.1:${newPort}`]),
    ]);
    await waitFor(
      "http",
      10_000,
      h.stderr,
      /: is not a circuit daemon \(it answered \\"HTTP\/1\.1 400 Bad Request\\"\)/,
    );
    await waitFor(
      "old",
      10_000,
      o.stderr,
      new RegExp(`: refused the connection: unsupported protocol version ${PROTOCOL_VERSION}`),
    );
    const v = PROTOCOL_VERSION;
    await waitFor(
      "new",
      10_000,
      n.stderr,
      new RegExp(`: speaks circuit protocol version ${v + 1}; this daemon speaks ${v} \\(`),
    );
  });

  test("a seed that cannot connect back to our advertised URL: connected, but no answer (see --advertise)", async () => {
    const seed = await startDaemon([]);
    const d = await startDaemon(["--advertise", "127.0.0.1:1", "--join", seed.url]);
    await waitFor(
      "the hint",
      10_000,
      d.stderr,
      /connected, but got no answer within 3 s: the seed must be able to connect back to circuit:\/\/127\.0\.0\.1:1\/X[0-9a-f]{16} \(if it cannot, start this daemon with --advertise/,
    );
  });

  test("several --join: one that answers suffices, and the others stop quietly", async () => {
    const seed = await startDaemon([]);
    const dead = await deadPort();
    const d = await startDaemon(["--join", `circuit://127.0.0.1:${dead}`, "--join", seed.url]);
    await waitFor("joined", 10_000, d.stderr, new RegExp(`joined ${seed.url.replaceAll(".", "\\.")} \\(2 members\\)`));
    const before = d.stderr().length;
    await sleep(3500);
    // Other news may follow (the seed's own join event, logged a moment after "joined"): only the
    // dead seed must not be mentioned again.
    assert.doesNotMatch(
      d.stderr().slice(before),
      new RegExp(`127\\.0\\.0\\.1:${dead}\\b`),
      "no more about the dead seed",
    );
  });
});
