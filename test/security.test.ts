// Cluster keys: only holders of the key can talk to a keyed circuit, nobody can alter its traffic,
// and a daemon without a key serves loopback only.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AuthFailed, type Chan, dial, ServerGone, select } from "../src/index.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { until } from "./helpers/wait.ts";

after(killAll);

const dir = mkdtempSync(join(tmpdir(), "circuit-keys-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function keyFile(name: string): Promise<string> {
  const f = join(dir, name);
  const r = await runCli(["keygen", f]);
  assert.equal(r.code, 0, r.stderr);
  return f;
}

describe("cluster keys", () => {
  let k1: string;
  let k2: string;
  before(async () => {
    k1 = await keyFile("k1");
    k2 = await keyFile("k2");
  });

  test("keygen prints a fresh 64-hex-digit key; keygen FILE writes it readable by its owner only", async () => {
    const a = await runCli(["keygen"]);
    const b = await runCli(["keygen"]);
    assert.match(a.stdout.toString(), /^[0-9a-f]{64}\n$/);
    assert.notEqual(a.stdout.toString(), b.stdout.toString());
    assert.equal(statSync(k1).mode & 0o777, 0o600);
    assert.match(readFileSync(k1, "utf8"), /^[0-9a-f]{64}\n$/);
    const again = await runCli(["keygen", k1]);
    assert.equal(again.code, 1, "keygen never overwrites a key");
  });

  test("over TLS a 16 MiB stream message and a 16 MiB value arrive intact (big frames in 16 KiB records)", async () => {
    const d = await startDaemon(["--key", k1]);
    const key = readFileSync(k1, "utf8");
    const base = d.url.replace(/\/X[0-9a-f]+$/, "");
    const a = await dial(base, { key });
    const b = await dial(base, { key });
    try {
      const size = 16 * 1024 * 1024;
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) bytes.writeUInt32BE((i * 2654435761) >>> 0, i);
      const tx = await a.walk(`/${d.id}/big`).makeChan<unknown>(1);
      const rx = await b.walk(`/${d.id}/big`).getChan<unknown>();
      const w = tx.sendStream();
      for (let off = 0; off < size; off += 1024 * 1024) w.write(bytes.subarray(off, off + 1024 * 1024));
      w.end();
      const got: Buffer[] = [];
      for await (const chunk of (await rx.recv()) as AsyncIterable<Buffer>) got.push(chunk);
      await w.sent;
      assert.ok(Buffer.concat(got).equals(bytes), "the stream's bytes, in order");
      const value = bytes.subarray(0, size - 5);
      const sent = tx.send(value);
      const back = (await rx.recv()) as Uint8Array;
      await sent;
      assert.ok(Buffer.from(back).equals(value), "the value's bytes");
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("the right key works; no key or a wrong key fails fast with AuthFailed and learns nothing", async () => {
    const d = await startDaemon(["--key", k1]);
    try {
      const c = await dial(d.url.replace(/\/X[0-9a-f]+$/, ""), { key: readFileSync(k1, "utf8") });
      assert.equal(c.serverId, d.id);
      const ch = await c.walk(`/${d.id}/secret`).makeChan<string>(1);
      await ch.send("only for key holders");
      await c.close();
      const base = d.url.replace(/\/X[0-9a-f]+$/, "");
      for (const key of [undefined, readFileSync(k2, "utf8")]) {
        const t0 = Date.now();
        await assert.rejects(dial(base, { key }), (e: Error) => {
          assert.ok(e instanceof AuthFailed, `${e.name}: ${e.message}`);
          assert.ok(!e.message.includes(d.id), "the error does not reveal the server ID");
          return true;
        });
        assert.ok(Date.now() - t0 < 5000);
      }
      // The CLI: no key → exit 1 with a one-line reason; no ls, no stop.
      for (const args of [
        ["ls", "/"],
        ["stop", `/${d.id}`],
      ]) {
        const r = await runCli(["-d", base, ...args]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^circuit: AuthFailed: .*cluster key/);
        assert.equal(r.stdout.length, 0);
      }
      const wrong = await runCli(["-d", base, "--key", k2, "ls", "/"]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /AuthFailed/);
      const viaEnv = await runCli(["-d", base, "recv", `/${d.id}/secret`], { env: { CIRCUIT_KEY: k1 } });
      assert.equal(viaEnv.code, 0, viaEnv.stderr);
      assert.equal(viaEnv.stdout.toString(), '"only for key holders"\n');
      assert.equal(d.proc.exitCode, null, "the daemon still runs");
    } finally {
      await d.stop();
    }
  });

  test("a keyed client cannot talk to a daemon without a key, and says why", async () => {
    const d = await startDaemon();
    try {
      await assert.rejects(dial(d.url, { key: readFileSync(k1, "utf8") }), AuthFailed);
    } finally {
      await d.stop();
    }
  });

  test("key rotation: --key new --accept-key old takes both; without it the old key is refused", async () => {
    const rolling = await startDaemon(["--key", k2, "--accept-key", k1]);
    try {
      for (const k of [k1, k2]) {
        const c = await dial(rolling.url, { key: k });
        assert.equal(c.serverId, rolling.id);
        await c.close();
      }
    } finally {
      await rolling.stop();
    }
    const done = await startDaemon(["--key", k2]);
    try {
      await assert.rejects(dial(done.url, { key: k1 }), AuthFailed);
      const c = await dial(done.url, { key: k2 });
      await c.close();
    } finally {
      await done.stop();
    }
  });

  test("servers with the same key form one circuit; a server with another key cannot join", async () => {
    const a = await startDaemon(["--key", k1]);
    const b = await startDaemon(["--key", k1, "--join", a.url]);
    const stranger = await startDaemon(["--key", k2, "--join", a.url]);
    const c = await dial(a.url, { key: k1 });
    try {
      const t0 = Date.now();
      for (;;) {
        const ids = (await c.servers()).map((s) => s.id);
        if (ids.includes(b.id)) break;
        assert.ok(Date.now() - t0 < 5000, "b joins");
        await sleep(50);
      }
      // A cross-server operation works over the keyed links.
      const ch = await c.walk(`/${b.id}/q`).makeChan<number>(1);
      await ch.send(7);
      assert.equal(await ch.recv(), 7);
      await sleep(1500);
      assert.ok(!(await c.servers()).some((s) => s.id === stranger.id), "the stranger never joined");
    } finally {
      await c.close();
      await Promise.all([a.stop(), b.stop(), stranger.stop()]);
    }
  });

  test("tampered bytes in an established session end that connection; the client reconnects and its send is stored once, intact", async () => {
    const d = await startDaemon(["--key", k1]);
    const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    // A relay that flips one bit in the client's traffic once the session is established.
    let flip = false;
    const relay = net.createServer((inbound) => {
      const outbound = net.connect(port, "127.0.0.1");
      inbound.on("data", (b: Buffer) => {
        if (flip && b.length > 10) {
          b[b.length - 3] = (b[b.length - 3] as number) ^ 1;
          flip = false;
        }
        outbound.write(b);
      });
      outbound.pipe(inbound);
      inbound.on("error", () => outbound.destroy());
      outbound.on("error", () => inbound.destroy());
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
    const rport = (relay.address() as net.AddressInfo).port;
    try {
      const c = await dial(`circuit://127.0.0.1:${rport}`, { key: k1 });
      const ch = await c.walk(`/${d.id}/t`).makeChan<string>(4);
      flip = true;
      // The record with the flipped bit fails its integrity check: the daemon ends that
      // connection and executes nothing of it. The client reaches the daemon again and sends
      // its value once more, which then arrives exactly as sent, once.
      await ch.send("the value as sent");
      assert.equal(flip, false, "the relay flipped a bit");
      const honest = await dial(d.url, { key: k1 });
      const got = (await honest.walk(`/${d.id}/t`).get()) as Chan<string>;
      assert.equal((await got.stat()).len, 1);
      assert.equal(await got.recv(), "the value as sent");
      await c.close();
      await honest.close();
    } finally {
      relay.close();
      await d.stop();
    }
  });

  test("a recorded session replayed byte for byte executes nothing", async () => {
    const d = await startDaemon(["--key", k1]);
    const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    const recorded: Buffer[] = [];
    const relay = net.createServer((inbound) => {
      const outbound = net.connect(port, "127.0.0.1");
      inbound.on("data", (b: Buffer) => {
        recorded.push(Buffer.from(b));
        outbound.write(b);
      });
      outbound.pipe(inbound);
      for (const s of [inbound, outbound]) s.on("error", () => {});
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
    try {
      const setup = await dial(d.url, { key: k1 });
      const ch = await setup.walk(`/${d.id}/replay`).makeChan<string>(8);
      const c = await dial(`circuit://127.0.0.1:${(relay.address() as net.AddressInfo).port}`, { key: k1 });
      const mine = (await c.walk(`/${d.id}/replay`).get()) as Chan<string>;
      await mine.send("once");
      await mine.stat();
      await c.close();
      assert.equal((await ch.stat()).len, 1);
      // Replay everything the client sent, on a fresh connection.
      const again = net.connect(port, "127.0.0.1");
      again.on("error", () => {});
      again.resume();
      for (const b of recorded) again.write(b);
      await new Promise<void>((r) => again.on("close", () => r()));
      assert.equal((await ch.stat()).len, 1, "the replayed send was not executed");
      await setup.close();
    } finally {
      relay.close();
      await d.stop();
    }
  });

  test("a connection that does not authenticate within the handshake deadline is closed", async () => {
    const d = await startDaemon(["--key", k1, "--handshake-ms", "300"]);
    const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    try {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => {});
      const t0 = Date.now();
      await new Promise<void>((r) => s.on("close", () => r()));
      assert.ok(Date.now() - t0 < 3000, `closed after ${Date.now() - t0} ms`);
    } finally {
      await d.stop();
    }
  });
});

describe("without a key", () => {
  test("the daemon refuses a non-loopback address unless --insecure", async () => {
    // A documentation address (TEST-NET-1): even if the refusal broke, nothing could be bound there.
    const r = await runCli(["start", "--addr", "192.0.2.1:0"], { timeoutMs: 5000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /refusing to listen on 192\.0\.2\.1:0 without a cluster key/);
  });

  test("bad key input is a usage error", async () => {
    const bad = join(dir, "bad");
    writeFileSync(bad, "not a key\n");
    for (const args of [
      ["--key", bad, "ls", "/"],
      ["--key", join(dir, "missing"), "ls", "/"],
      ["start", "--key", bad],
    ]) {
      const r = await runCli(args, { timeoutMs: 5000 });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /key/);
    }
  });
});

describe("limits", () => {
  test("connections past --max-connections are refused; the others keep working", async () => {
    const d = await startDaemon(["--max-connections", "3"]);
    const clients = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await dial(d.url));
      await assert.rejects(
        dial(d.url, { timeoutMs: 3000 }),
        (e: Error) => e instanceof ServerGone || e.name === "Timeout",
      );
      assert.equal((await clients[0]!.servers()).length, 1);
      await clients.pop()!.close();
      await sleep(100);
      clients.push(await dial(d.url));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await d.stop();
    }
  });

  test("a connection that says nothing past --idle-ms is closed; a live client pings and stays", async () => {
    const d = await startDaemon(["--idle-ms", "2500"]);
    const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
    const c = await dial(d.url);
    try {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => {});
      s.resume();
      await new Promise<void>((r) => s.once("connect", () => r()));
      const { FrameWriter } = await import("../src/wire/frame.ts");
      const { encode, PROTOCOL_VERSION, T } = await import("../src/wire/protocol.ts");
      const w = new FrameWriter();
      w.frame(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "client" }));
      s.write(w.take());
      const t0 = Date.now();
      await new Promise<void>((r) => s.on("close", () => r()));
      const took = Date.now() - t0;
      assert.ok(took >= 2000 && took < 10_000, `closed after ${took} ms`);
      // The library client, idle just as long, is still connected: its keepalive speaks for it.
      await sleep(3000);
      assert.equal((await c.servers()).length, 1);
    } finally {
      await c.close();
      await d.stop();
    }
  });

  test("each limit has a flag: pending operations, credits, streams, select cases, depth, name length, subscription buffer", async () => {
    const d = await startDaemon([
      "--max-pending",
      "4",
      "--max-credits",
      "8",
      "--max-streams",
      "1",
      "--max-select-cases",
      "2",
      "--max-depth",
      "3",
      "--max-name",
      "8",
      "--sub-buffer",
      "1",
    ]);
    const a = await startDaemon(["--join", d.url]);
    try {
      // `lawless`: the client ignores the bounds the daemon's HELLO gave it (an older or hostile
      // client would), so that the daemon's own enforcement is what is seen.
      const probe = async (f: (c: Awaited<ReturnType<typeof dial>>) => Promise<unknown>, lawless = false) => {
        const c = await dial(d.url);
        if (lawless) {
          const bounds = { serverPending: 1e9, serverStreams: 1e9, creditBound: 1e9, selectCaseBound: 1e9 };
          Object.assign(await c.connFor(d.id), bounds);
        }
        try {
          return await f(c).then(
            () => "ok",
            (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
          );
        } finally {
          await c.close();
        }
      };
      // Five blocked sends on one connection: the fifth is one too many, the connection goes.
      const tooMany = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/p`).makeChan<number>(0);
        await Promise.all(Array.from({ length: 5 }, (_, i) => ch.send(i)));
      }, true);
      assert.match(tooMany, /^ServerGone: .*too many pending/);
      // The library keeps within the bound itself: the fifth waits in the client, and all five
      // complete as a receiver takes them.
      const kept = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/p2`).makeChan<number>(0);
        const sends = Promise.all(Array.from({ length: 5 }, (_, i) => ch.send(i)));
        const got = [];
        for (let i = 0; i < 5; i++) got.push(await ch.recv());
        await sends;
        assert.deepEqual(got, [0, 1, 2, 3, 4]);
      });
      assert.equal(kept, "ok");
      // A stream message is a blocked send until taken, though its bytes have ended: the fifth
      // waiting one is one too many as well.
      const streamSends = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/ps`).makeChan(0);
        for (let i = 1; i <= 5; i++) {
          const w = ch.sendStream();
          w.end(`message ${i}`);
          // Its stream ended (SFIN sent) before the next opens: --max-streams here is 1.
          await finished(w);
          const t0 = Date.now();
          while ((await ch.stat()).waitingSenders < i) {
            assert.ok(Date.now() - t0 < 5000);
            await sleep(10);
          }
        }
      }, true);
      assert.match(streamSends, /^ServerGone: .*too many pending/);
      const credits = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/q`).makeChan<number>(0);
        for await (const _ of ch.iterate({ prefetch: 9 })) break;
      }, true);
      assert.match(credits, /^ServerGone: .*more than 8 receives/);
      // The library holds a prefetch to the server's --max-credits (its HELLO says): 20 values come
      // through an iterate({ prefetch: 9 }) and the connection stays.
      const prefetched = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/q2`).makeChan<number>(4);
        const sends = (async () => {
          for (let i = 0; i < 20; i++) await ch.send(i);
          await ch.close();
        })();
        const got = [];
        for await (const v of ch.iterate({ prefetch: 9 })) got.push(v);
        await sends;
        assert.deepEqual(
          got,
          Array.from({ length: 20 }, (_, i) => i),
        );
      });
      assert.equal(prefetched, "ok");
      // Select cases: the daemon cuts a connection whose select has more than --max-select-cases
      // on it; the library refuses such a select itself, before anything is sent.
      const names = (p: string) => ["x", "y", "z"].map((n) => `/${d.id}/${p}${n}`);
      const threeCases = (p: string) => async (c: Awaited<ReturnType<typeof dial>>) => {
        const chans = await Promise.all(names(p).map((n) => c.walk(n).makeChan<number>(1)));
        await chans[2]?.send(3);
        return { chans, result: await select(chans.map((ch) => ch.recvCase())) };
      };
      assert.match(await probe(threeCases("l"), true), /^ServerGone: .*a select has 1 to 2 cases/);
      assert.equal(
        await probe(async (c) => {
          await assert.rejects(threeCases("k")(c), (e: Error) => {
            assert.equal(e.name, "RangeError");
            assert.match(
              e.message,
              /3 cases of this select are on server X[0-9a-f]+, which takes at most 2 \(its --max-select-cases\)/,
            );
            return true;
          });
          // The connection goes on: two of the cases, as a select the server takes.
          const [x, , z] = await Promise.all(names("k").map((n) => c.walk(n).getChan<number>()));
          assert.deepEqual(await select([x!.recvCase(), z!.recvCase()]), { index: 1, value: 3 });
        }),
        "ok",
      );
      const streams = await probe(async (c) => {
        const ch = await c.walk(`/${d.id}/s`).makeChan(0);
        ch.sendStream();
        ch.sendStream();
        await ch.stat();
      }, true);
      assert.match(streams, /^ServerGone: .*more than 1 open streams/);
      assert.match(await probe((c) => c.walk(`/${d.id}/a/b/c`).makeChan(1)), /^ProtocolError: path deeper than 3/);
      assert.match(
        await probe((c) => c.walk(`/${d.id}/abcdefghi`).makeChan(1)),
        /^ProtocolError: anchor name longer than 8/,
      );
      // Two live servers, a buffer of one: the @join subscription keeps the newest and counts one lost.
      const t0 = Date.now();
      const c = await dial(d.url);
      while ((await c.servers()).length < 2) {
        assert.ok(Date.now() - t0 < 5000);
        await sleep(50);
      }
      const joins = await c.walk(`/${d.id}/j`).makeOnJoin();
      assert.deepEqual(await joins.peek(), { source: "@join", pending: 1, lost: 1 });
      await c.close();
    } finally {
      await a.stop();
      await d.stop();
    }
  });

  test("--max-streams: a process's stdin or an upload past it fails alone with NoCapacity; ending one makes room", async () => {
    const root = mkdtempSync(join(tmpdir(), "circuit-maxstreams-"));
    // Where the processes put what their stdin brings (their output is not read: reading it would
    // be byte streams of this connection too).
    const outs = mkdtempSync(join(tmpdir(), "circuit-maxstreams-out-"));
    const d = await startDaemon(["--max-streams", "2", "--fs-root", root]);
    const c = await dial(d.url);
    try {
      const cat = async (name: string) => {
        const file = join(outs, name);
        const p = await c.walk(`/${d.id}/${name}`).makeProc({ path: "sh", args: ["-c", `exec cat > ${file}`] });
        return { p, out: () => (existsSync(file) ? readFileSync(file, "utf8") : "") };
      };
      // Two stdins open (each has carried a line through its process): the bound.
      const [a, b, x] = await Promise.all([cat("a"), cat("b"), cat("x")]);
      for (const [k, q] of [a, b].entries()) {
        q.p.stdin.write(`line ${k}\n`);
        await until(`stdin ${k} reaches its process`, 5000, () => q.out() === `line ${k}\n`);
      }
      const refusal = (e: { code?: string; message?: string }) => {
        assert.equal(e.code, "NoCapacity");
        assert.match(String(e.message), /has 2 byte streams open, the most the server takes \(--max-streams\)/);
        return true;
      };
      // A third stdin fails, and so does an upload; neither leaves anything behind.
      const third = new Promise<Error>((r) => x.p.stdin.once("error", r));
      x.p.stdin.write("never\n");
      refusal(await third);
      const srv = await c.walk(`/${d.id}`).get();
      assert.ok(srv && "writeFile" in srv);
      const up = srv.writeFile("up.txt");
      up.on("error", () => {});
      up.end("upload\n");
      await assert.rejects(up.done, refusal);
      assert.deepEqual(readdirSync(root), [], "no file, and no temporary file");
      // The connection goes on: ending one stdin makes room for an upload, then for another stdin.
      a.p.stdin.end();
      assert.equal((await a.p.wait()).exitCode, 0);
      const up2 = srv.writeFile("up.txt");
      up2.end("upload\n");
      await up2.done;
      assert.equal(readFileSync(join(root, "up.txt"), "utf8"), "upload\n");
      const y = await cat("y");
      y.p.stdin.end("after\n");
      await y.p.wait();
      assert.equal(y.out(), "after\n");
      b.p.stdin.end();
      await b.p.wait();
      assert.equal(b.out(), "line 1\n");
      // The process whose stdin was refused still runs (it waits for input it will never get).
      assert.equal((await x.p.peek()).phase, "running");
      await x.p.scrub();
    } finally {
      await c.close();
      await d.stop();
      rmSync(root, { recursive: true, force: true });
      rmSync(outs, { recursive: true, force: true });
    }
  });

  test("--max-streams bounds what a connection reads too: process output or a file read past it fails alone with NoCapacity", async () => {
    const root = mkdtempSync(join(tmpdir(), "circuit-maxout-"));
    writeFileSync(join(root, "f.txt"), "file\n");
    const d = await startDaemon(["--max-streams", "2", "--fs-root", root]);
    const c = await dial(d.url);
    try {
      const refusal = (e: { code?: string; message?: string }) => {
        assert.equal(e.code, "NoCapacity");
        assert.match(String(e.message), /is reading 2 byte streams, the most the server takes \(--max-streams\)/);
        return true;
      };
      const readAll = async (r: NodeJS.ReadableStream) => {
        let out = "";
        for await (const b of r) out += b;
        return out;
      };
      // Two outputs streaming (one attached as the process starts): the bound.
      const talk = { path: "sh", args: ["-c", "echo up; exec sleep 30"] };
      const a = await c.walk(`/${d.id}/a`).makeProc(talk, { stdout: true });
      const b = await c.walk(`/${d.id}/b`).makeProc(talk);
      const outs = [a, b].map((p) => {
        const o = { got: "", ended: false };
        p.stdout.setEncoding("utf8").on("data", (x: string) => (o.got += x));
        p.stdout.on("end", () => (o.ended = true));
        return o;
      });
      for (const [i, o] of outs.entries()) await until(`output ${i} streams`, 5000, () => o.got === "up\n");
      // A third: a file read, another process's output, a process started with its output attached.
      const srv = await c.walk(`/${d.id}`).get();
      assert.ok(srv && "readFile" in srv);
      await assert.rejects(readAll(srv.readFile("f.txt")), refusal);
      const x = await c.walk(`/${d.id}/x`).makeProc(talk);
      await assert.rejects(readAll(x.stdout), refusal);
      await assert.rejects(c.walk(`/${d.id}/y`).makeProc(talk, { stdout: true }), refusal);
      assert.equal(await c.walk(`/${d.id}/y`).get(), null, "the refused process was never started");
      // One output ends: the file can be read, and the connection goes on.
      await a.scrub();
      await until("the scrubbed process's output ends", 5000, () => outs[0]?.ended === true);
      assert.equal(await readAll(srv.readFile("f.txt")), "file\n");
      await x.scrub();
      await b.scrub();
    } finally {
      await c.close();
      await d.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("--max-channels: an open past it fails with a clear error (durable ones too); the connection and the daemon go on", async () => {
    const data = mkdtempSync(join(tmpdir(), "circuit-maxch-"));
    const d = await startDaemon(["--max-channels", "2", "--data", data]);
    const c = await dial(d.url);
    try {
      const a = await c.walk(`/${d.id}/a`).makeChan<number>(1);
      await c.walk(`/${d.id}/b`).openChan<number>(1);
      const refusal = (e: { code?: string; message?: string }) => {
        assert.equal(e.code, "NoCapacity");
        assert.match(String(e.message), /more than 2 open channels on this connection \(--max-channels\)/);
        return true;
      };
      await assert.rejects(c.walk(`/${d.id}/c`).makeChan(1), refusal);
      await assert.rejects(c.walk(`/${d.id}/c`).makeChan(1, { durable: true }), refusal);
      await assert.rejects(c.walk(`/${d.id}/e`).openChan(1, { durable: true }), refusal);
      // A third channel someone else made: this connection cannot take it either.
      const other = await dial(d.url);
      try {
        await other.walk(`/${d.id}/f`).makeChan(1);
        await assert.rejects(c.walk(`/${d.id}/f`).getChan(), refusal);
        await assert.rejects(c.walk(`/${d.id}/f`).openChan(1), refusal);
        // Nothing was made by the refused opens.
        for (const n of ["c", "e"]) assert.equal(await other.walk(`/${d.id}/${n}`).get(), null, n);
      } finally {
        await other.close();
      }
      // The connection is whole: a channel it has open again is the same handle, not a third; the
      // channels work, and so does the daemon.
      const b = await c.walk(`/${d.id}/b`).getChan<number>();
      await b.send(8);
      assert.equal(await b.recv(), 8);
      await a.send(7);
      assert.equal(await a.recv(), 7);
    } finally {
      await c.close();
      await d.stop();
      rmSync(data, { recursive: true, force: true });
    }
  });

  test("discovery packets need the key's tag: a forged or tampered one is ignored", async () => {
    const { open, seal } = await import("../src/transport/discovery.ts");
    const k = Buffer.alloc(32, 7);
    const other = Buffer.alloc(32, 8);
    const msg = { id: "X0123456789abcdef", url: "circuit://127.0.0.1:7711/X0123456789abcdef" };
    assert.deepEqual(open(seal(msg, k), k), msg);
    assert.equal(open(seal(msg, other), k), undefined, "another key's tag");
    assert.equal(open(seal(msg, undefined), k), undefined, "no tag at all");
    const tampered = seal(msg, k);
    tampered[5] = (tampered[5] as number) ^ 1;
    assert.equal(open(tampered, k), undefined, "a flipped bit");
    assert.equal(open(Buffer.from("garbage"), undefined), undefined);
  });
});
