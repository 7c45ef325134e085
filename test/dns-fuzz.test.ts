// Random and mutated packets thrown at a live nameserver over UDP and TCP (a bounded, seeded
// count): every answer it gives is a well-formed DNS response, and afterwards it still answers dig
// and its daemon still serves.
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import * as net from "node:net";
import { after, before, describe, test } from "node:test";
import * as packet from "dns-packet";
import { type Client, dial, type Nameserver } from "../src/index.ts";
import { type Daemon, killAll, running, startDaemon } from "./helpers/daemon.ts";
import { dig } from "./helpers/dig.ts";

after(killAll);

const COUNT = 2000;

/** xorshift32: the same packets on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function validQueries(): Buffer[] {
  const q = (name: string, type: packet.RecordType | "ANY", edns?: number): Buffer =>
    packet.encode({
      type: "query",
      id: 4242,
      flags: packet.RECURSION_DESIRED,
      questions: [{ name, type, class: "IN" }],
      additionals: edns
        ? [
            {
              name: ".",
              type: "OPT",
              udpPayloadSize: edns,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ]
        : [],
    } as packet.Packet);
  return [
    q("web.circuit", "A"),
    q("www.circuit", "A", 1232),
    q("many.circuit", "TXT", 4096),
    q("_srv._tcp.circuit", "SRV"),
    q("circuit", "ANY", 512),
    q("nobody.circuit", "AAAA"),
  ];
}

/** A random packet: noise, or a valid query with bytes changed, cut off, or added. */
function fuzzPacket(r: () => number, seeds: Buffer[]): Buffer {
  const byte = () => Math.floor(r() * 256);
  const kind = r();
  if (kind < 0.25) return Buffer.from(Array.from({ length: Math.floor(r() * 600) }, byte));
  const base = Buffer.from(seeds[Math.floor(r() * seeds.length)] as Buffer);
  if (kind < 0.7) {
    for (let i = 1 + Math.floor(r() * 8); i > 0; i--) base[Math.floor(r() * base.length)] = byte();
    return base;
  }
  if (kind < 0.85) return base.subarray(0, Math.floor(r() * base.length));
  // Header fields that lie: huge counts, a response flag, odd opcodes, pointers that point anywhere.
  base.writeUInt16BE(Math.floor(r() * 65536), 2 + 2 * Math.floor(r() * 5));
  if (r() < 0.5) base.writeUInt16BE(0xc000 | Math.floor(r() * 64), 12);
  return Buffer.concat([base, Buffer.from(Array.from({ length: Math.floor(r() * 40) }, byte))]);
}

/** Every reply decodes as a DNS response. */
function checkReply(b: Buffer): void {
  const p = packet.decode(b);
  assert.equal(p.type, "response", `a reply that is not a response: ${b.toString("hex")}`);
}

describe("fuzzed packets", () => {
  let d: Daemon;
  let c: Client;
  let ns: Nameserver;
  let host: string;
  let port: number;

  before(async () => {
    d = await startDaemon();
    c = await dial(d.url);
    ns = await c.walk(`/${d.id}/dns`).makeNameserver();
    [host, port] = [ns.address.slice(0, ns.address.lastIndexOf(":")), Number(ns.address.split(":")[1])];
    await ns.set("web.circuit. A 10.0.0.5");
    await ns.set("www.circuit. CNAME web.circuit.");
    await ns.set("_srv._tcp.circuit. SRV 0 0 80 web.circuit.");
    for (let i = 0; i < 12; i++) await ns.set(`many.circuit. TXT "${i}${"y".repeat(200)}"`);
  });
  after(async () => {
    await c?.close();
  });

  async function stillAnswers(): Promise<void> {
    const [udp, tcp] = await Promise.all([
      dig(ns.address, "www.circuit", "A"),
      dig(ns.address, "many.circuit", "TXT", ["+tcp"]),
    ]);
    assert.deepEqual(
      udp.answers.map((a) => a.data),
      ["web.circuit.", "10.0.0.5"],
    );
    assert.equal(tcp.answers.length, 12);
    assert.ok(running(d.proc), "the daemon is alive");
    assert.doesNotMatch(d.stderr(), /session error| {4}at /);
  }

  test(`${COUNT} random and mutated packets over UDP`, async () => {
    const r = rng(0x5eed);
    const seeds = validQueries();
    const sock = dgram.createSocket("udp4");
    const replies: Buffer[] = [];
    let probeWaiter: { id: number; done: () => void } | undefined;
    sock.on("message", (m) => {
      try {
        const p = packet.decode(m);
        if (probeWaiter && p.id === probeWaiter.id && p.questions?.[0]?.name === "probe.circuit") {
          probeWaiter.done();
          return;
        }
      } catch {
        // checked below, with the others
      }
      replies.push(m);
    });
    await new Promise<void>((resolve) => sock.bind(0, "127.0.0.1", () => resolve()));
    const send = (b: Buffer) => new Promise<void>((resolve) => sock.send(b, port, host, () => resolve()));
    try {
      for (let i = 0; i < COUNT; i++) {
        await send(fuzzPacket(r, seeds));
        // After every 50 packets a probe, answered before we go on: the server has read the batch
        // (so no socket buffer overflowed under load), and it still answers.
        if (i % 50 === 49) {
          const id = i & 0xffff;
          const answered = new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no answer to the probe after packet ${i}`)), 10_000);
            probeWaiter = {
              id,
              done: () => {
                clearTimeout(t);
                resolve();
              },
            };
          });
          await send(packet.encode({ type: "query", id, questions: [{ name: "probe.circuit", type: "A" }] }));
          await answered;
        }
      }
    } finally {
      sock.close();
    }
    for (const b of replies) checkReply(b);
    // Noise gets no answer or FORMERR; mutated queries mostly get one.
    assert.ok(replies.length > COUNT / 4, `only ${replies.length} replies to ${COUNT} packets`);
    console.log(`udp: ${COUNT} packets, ${replies.length} replies, all well-formed`);
    await stillAnswers();
  });

  test(`${COUNT} random and mutated messages over TCP, and raw byte streams`, async () => {
    const r = rng(0xfeed);
    const seeds = validQueries();
    const PER_CONN = 100;
    let replies = 0;
    const oneConn = (bytes: Buffer) =>
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, host);
        let got = Buffer.alloc(0);
        s.on("data", (b) => {
          got = Buffer.concat([got, b]);
        });
        s.on("error", () => {}); // a reset is the server giving up on nonsense: allowed
        s.on("close", () => {
          try {
            while (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
              checkReply(got.subarray(2, 2 + got.readUInt16BE(0)));
              got = got.subarray(2 + got.readUInt16BE(0));
              replies++;
            }
            resolve();
          } catch (err) {
            reject(err);
          }
        });
        s.end(bytes);
      });
    const framed: Buffer[] = [];
    for (let i = 0; i < COUNT / PER_CONN; i++) {
      const msgs: Buffer[] = [];
      for (let j = 0; j < PER_CONN; j++) {
        const p = fuzzPacket(r, seeds).subarray(0, 65535);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(p.length);
        msgs.push(len, p);
      }
      framed.push(Buffer.concat(msgs));
    }
    // Four connections at a time.
    for (let i = 0; i < framed.length; i += 4) await Promise.all(framed.slice(i, i + 4).map(oneConn));
    // Streams that are not length-framed at all.
    for (let i = 0; i < 20; i++) {
      await oneConn(Buffer.from(Array.from({ length: Math.floor(r() * 3000) }, () => Math.floor(r() * 256))));
    }
    // Unlike UDP's, a TCP stream of noise loses its framing, after which nothing more is answered.
    assert.ok(replies > COUNT / 4, `only ${replies} replies to ${COUNT} framed messages`);
    console.log(`tcp: ${COUNT} messages on ${COUNT / PER_CONN} connections + 20 raw streams, ${replies} replies`);
    await stillAnswers();
  });
});
