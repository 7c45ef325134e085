// Fuzzing the wire: random and mutated frames against the frame decoder and against every request
// decoder of a live daemon. Used by test/fuzz.test.ts (a few thousand inputs) and bench/fuzz.ts
// (100,000 and more).
import * as net from "node:net";
import fc from "fast-check";
import { Daemon } from "../../src/daemon/daemon.ts";
import { dial } from "../../src/index.ts";
import { batchTail, FrameDecoder, FrameWriter } from "../../src/wire/frame.ts";
import { encode, PROTOCOL_VERSION, T } from "../../src/wire/protocol.ts";

/** Feeds random bytes, cut at random points, to the decoder; only ProtocolError may come out. */
export function fuzzDecoder(runs: number, seed?: number): void {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(2048), { maxLength: 8 }), (bytes, cuts) => {
      const d = new FrameDecoder(1024, () => {});
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let at = 0;
      try {
        for (const p of [...points, bytes.length]) {
          d.push(Buffer.from(bytes.subarray(at, p)));
          at = p;
        }
      } catch (err) {
        if ((err as { code?: string }).code !== "ProtocolError") throw err;
      }
    }),
    { numRuns: runs, seed },
  );
}

const TYPES = Object.values(T);

/** Valid requests and frames to mutate. */
function seeds(id: string): { type: number; fields: number[]; tail?: Uint8Array }[] {
  const p = [id, "fz"];
  return [
    { type: T.REQ, fields: [1], tail: encode({ op: "mkchan", path: p, cap: 2 }) },
    { type: T.REQ, fields: [2], tail: encode({ op: "open", path: p }) },
    { type: T.REQ, fields: [3], tail: encode({ op: "ls", path: [id], recursive: true, long: true }) },
    { type: T.REQ, fields: [4], tail: encode({ op: "stat", handle: 1 }) },
    { type: T.REQ, fields: [5], tail: encode({ op: "close", handle: 1 }) },
    { type: T.REQ, fields: [6], tail: encode({ op: "peek", path: p }) },
    { type: T.REQ, fields: [7], tail: encode({ op: "mksub", path: [id, "j"], kind: "@join" }) },
    { type: T.REQ, fields: [8], tail: encode({ op: "scrub", path: p }) },
    { type: T.SEND, fields: [9, 1, 4, 1], tail: encode("v") },
    { type: T.CSEND, fields: [1, 1], tail: batchTail([encode("v"), encode(2)]) },
    { type: T.RECV, fields: [10, 1, 0, 2] },
    { type: T.RCLOSE, fields: [10, 1, 0] },
    { type: T.RELEASE, fields: [1] },
    { type: T.CANCEL, fields: [9] },
    { type: T.SOPEN, fields: [11, 1, 12] },
    { type: T.SDATA, fields: [12], tail: Buffer.from("abc") },
    { type: T.SFIN, fields: [12] },
    { type: T.SCREDIT, fields: [1, 100] },
    { type: T.SDROP, fields: [1] },
    {
      type: T.SELECT,
      fields: [0, 13, 1],
      tail: encode({
        cases: [
          [0, 1, 0],
          [1, 1, 1, encode(1)],
        ],
      }),
    },
    { type: T.DECIDE, fields: [0, 13, 0] },
    { type: T.SWIM, fields: [], tail: encode({ t: "ping", seq: 1, gossip: [] }) },
  ];
}

const frameArb = (id: string) =>
  fc.oneof(
    // Random everything.
    fc.record({
      type: fc.oneof(fc.constantFrom(...TYPES), fc.integer({ min: 0, max: 255 })),
      fields: fc.array(fc.oneof(fc.nat(16), fc.constant(0xffffffff), fc.nat()), { maxLength: 6 }),
      tail: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }),
    }),
    // A valid frame with mutations: a flipped byte, a truncated tail, fields changed.
    fc
      .record({
        seed: fc.constantFrom(...seeds(id)),
        flip: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { nil: undefined }),
        cut: fc.option(fc.nat(), { nil: undefined }),
        field: fc.option(fc.tuple(fc.nat(5), fc.oneof(fc.nat(4), fc.constant(0xffffffff))), { nil: undefined }),
      })
      .map(({ seed, flip, cut, field }) => {
        const fields = [...seed.fields];
        if (field && fields.length > 0) fields[field[0] % fields.length] = field[1];
        let tail = seed.tail ? Buffer.from(seed.tail) : undefined;
        if (tail && flip && tail.length > 0) tail[flip[0] % tail.length] ^= flip[1];
        if (tail && cut !== undefined) tail = tail.subarray(0, cut % (tail.length + 1));
        return { type: seed.type, fields, tail };
      }),
  );

/**
 * Sends `runs` random or mutated frames (after a valid HELLO) to an in-process daemon, reconnecting
 * whenever the daemon closes a connection, then checks that a well-behaved client is still served.
 * An exception escaping the daemon fails the caller's process, which is the point.
 */
export async function fuzzDaemon(runs: number, seed?: number): Promise<{ frames: number; closes: number }> {
  const d = await Daemon.start({ addr: "127.0.0.1:0", log: () => {} });
  const port = Number(new URL(d.url.replace("circuit:", "http:")).port);
  let sock: net.Socket | undefined;
  let closes = 0;
  let answered: (() => void) | undefined;
  const hello = new FrameWriter();
  hello.frame(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "client" }));
  const helloBytes = hello.take();
  const PING_ID = 0x7fffffff;
  const open = async () => {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    const dec = new FrameDecoder(64 * 1024 * 1024, (type, body) => {
      if (type === T.RES && body.readUInt32BE(0) === PING_ID) answered?.();
    });
    s.on("data", (c: Buffer) => dec.push(c));
    s.on("close", () => {
      closes++;
      if (sock === s) sock = undefined;
      answered?.();
    });
    await new Promise<void>((r) => s.once("connect", () => r()));
    s.write(helloBytes);
    sock = s;
  };
  const batches = fc.sample(fc.array(frameArb(d.id), { minLength: 1, maxLength: 50 }), {
    numRuns: runs,
    seed,
  });
  let frames = 0;
  try {
    for (const batch of batches) {
      if (frames >= runs) break;
      if (!sock) await open();
      const w = new FrameWriter();
      for (const f of batch) w.frame(f.type, f.fields, f.tail);
      // Then a ping: its answer (or the close) says the daemon has dealt with the whole batch.
      w.frame(T.REQ, [PING_ID], encode({ op: "ping" }));
      frames += batch.length;
      const done = new Promise<void>((r) => {
        answered = r;
      });
      (sock as net.Socket).write(w.take());
      await Promise.race([done, new Promise((r) => setTimeout(r, 2000))]);
    }
    sock?.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const c = await dial(d.url);
    const ch = await c.walk(`/${d.id}/after-fuzz`).makeChan<number>(1);
    await ch.send(1);
    if ((await ch.recv()) !== 1) throw new Error("the daemon no longer serves correctly");
    await c.close();
  } finally {
    sock?.destroy();
    await d.stop();
  }
  return { frames, closes };
}
