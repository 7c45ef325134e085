// The client's Connection and a daemon's Session, run over the in-memory pair
// (src/transport/memory-pair.ts, DESIGN §5) and over TCP on 127.0.0.1: the same behaviour tests
// for both transports, as a compliance suite. The link can be cut at an exact point.
import assert from "node:assert/strict";
import * as net from "node:net";
import type { Duplex, Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { Connection, type RecvSink } from "../src/client/connection.ts";
import { Daemon } from "../src/daemon/daemon.ts";
import type { CircuitError } from "../src/errors.ts";
import { decode } from "../src/wire/protocol.ts";
import { OPS, type Request } from "../src/wire/requests.ts";

for (const transport of ["memory", "tcp"] as const)
  describe(`client and session over ${transport}`, () => {
    let d: Daemon;
    /** The client end of every in-memory link opened so far, newest last. */
    const links: Duplex[] = [];
    const open = () =>
      Connection.open({
        host: transport === "memory" ? "memory" : "127.0.0.1",
        port: 0,
        connect: () => {
          const end =
            transport === "memory"
              ? d.connectInMemory()
              : net.connect({ host: "127.0.0.1", port: Number(new URL(d.url.replace("circuit:", "http:")).port) });
          links.push(end);
          return end;
        },
      });

    before(async () => {
      d = await Daemon.start({ addr: "127.0.0.1:0", log: () => {} });
    });
    after(async () => {
      await d.stop();
    });

    /** Receives `n` values from channel `handle`, acknowledging as it goes; resolves with them in order. */
    function receive(c: Connection, handle: number, n: number): Promise<unknown[]> {
      return new Promise((resolve, reject) => {
        const got: unknown[] = [];
        let rid = 0;
        const sink: RecvSink = {
          val: (frame, start, end) => {
            got.push(decode(frame.subarray(start, end)));
            c.moreRecv(rid, handle, 1, 1, "now");
            if (got.length === n) {
              c.closeRecv(rid, 0);
              resolve(got);
            }
          },
          stream: (r) => r.destroy(),
          end: (err?: CircuitError) => reject(err ?? new Error("receiver ended")),
          resume: () => 16,
        };
        rid = c.openRecv(handle, 16, sink);
      });
    }

    async function makeChan(c: Connection, name: string, cap: number) {
      const names = [d.id, name];
      const r = (await c.request({ op: "mkchan", path: names, cap })) as { handle: number; cap: number };
      return c.chanState(r.handle, r.cap, names);
    }

    test("the handshake, requests and their answers", async () => {
      const c = await open();
      try {
        assert.equal(c.serverId, d.id);
        const servers = (await c.request({ op: "servers" })) as { id: string }[];
        assert.deepEqual(
          servers.map((s) => s.id),
          [d.id],
        );
        await assert.rejects(c.request({ op: "open", path: [d.id, "bad name"] }), { code: "ProtocolError" });
        assert.equal(await c.request({ op: "open", path: [d.id, "nothing-here"] }), null);
      } finally {
        await c.close();
      }
    });

    test("credited and blocking sends arrive once each, in order", async () => {
      const c = await open();
      try {
        const st = await makeChan(c, "order", 64);
        const n = 2000;
        const got = receive(c, st.handle, n);
        const sends: Promise<void>[] = [];
        for (let i = 0; i < n; i++) sends.push(c.sendValue(st, { i, pad: "x".repeat(i % 50) }));
        await Promise.all(sends);
        const values = (await got) as { i: number }[];
        assert.deepEqual(
          values.map((v) => v.i),
          Array.from({ length: n }, (_, i) => i),
        );
      } finally {
        await c.close();
      }
    });

    test("a stream message crosses the pair with its bytes intact", async () => {
      const c = await open();
      try {
        const st = await makeChan(c, "streams", 1);
        const bytes = Buffer.alloc(3 * 1024 * 1024);
        for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 11)) & 0xff;
        const reading = new Promise<Buffer>((resolve, reject) => {
          const rid = c.openRecv(st.handle, 1, {
            val: () => reject(new Error("expected a stream")),
            stream: (r: Readable) => {
              const parts: Buffer[] = [];
              r.on("data", (b: Buffer) => parts.push(b));
              r.on("end", () => {
                c.closeRecv(rid, 1);
                resolve(Buffer.concat(parts));
              });
              r.on("error", reject);
            },
            end: (err) => reject(err ?? new Error("receiver ended")),
          });
        });
        const { writer, sent } = c.sendStream(st.handle);
        // Written in uneven pieces, bigger and smaller than a frame and than the credit window.
        for (let o = 0, k = 1; o < bytes.length; k++) {
          const n = Math.min(bytes.length - o, (k * 97_003) % 400_000);
          writer.write(bytes.subarray(o, o + n));
          o += n;
        }
        writer.end();
        await sent;
        const got = await reading;
        assert.equal(got.length, bytes.length);
        assert.ok(got.equals(bytes), "the received bytes equal the sent ones");
      } finally {
        await c.close();
      }
    });

    test("a link cut mid-stream is re-established; every send arrives exactly once", async () => {
      const c = await open();
      try {
        const st = await makeChan(c, "cut", 4096);
        const n = 3000;
        const first = links.length;
        const sends: Promise<void>[] = [];
        for (let i = 0; i < n; i++) {
          sends.push(c.sendValue(st, i));
          // Cut twice, between sends, while credited sends are unacknowledged on the wire.
          if (i === 1000 || i === 2200) (links[links.length - 1] as Duplex).destroy();
          if (i % 250 === 0) await new Promise((r) => setImmediate(r));
        }
        await Promise.all(sends);
        assert.ok(links.length >= first + 2, `reconnected ${links.length - first} times`);
        const values = (await receive(c, st.handle, n)) as number[];
        assert.deepEqual(
          values,
          Array.from({ length: n }, (_, i) => i),
        );
      } finally {
        await c.close();
      }
    });

    test("every op of the request schema reaches a handler in the session", async () => {
      const c = await open();
      try {
        // With no arguments each is refused (or answered), but never as an op the daemon lacks.
        for (const op of OPS) {
          const err = await c.request({ op } as Request).then(
            () => undefined,
            (e: CircuitError) => e,
          );
          assert.doesNotMatch(err?.message ?? "", /unknown op/, op);
        }
        // The check can fail: an op outside the schema is refused as unknown.
        await assert.rejects(c.request({ op: "launch" } as unknown as Request), /unknown op/);
      } finally {
        await c.close();
      }
    });
  });
