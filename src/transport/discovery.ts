// (In transport/ because clients use it too: dial({ discover }) listens for the same packets.)
// Discovery by UDP multicast (off unless asked for): a server announces its URL to GROUP:PORT now
// and then, and joins any server it hears. With a cluster key every packet carries an HMAC tag and
// a packet without a valid one is ignored.

import { createHmac, timingSafeEqual } from "node:crypto";
import * as dgram from "node:dgram";
import { Timeout } from "../errors.js";
import { decode, encode } from "../wire/protocol.js";
import { parseUrl } from "../wire/url.js";
import type { GroupAddr } from "./group.js";

export const ANNOUNCE_MS = 1000;
const TAG_BYTES = 32;
const MAX_PACKET = 1024;

function tag(key: Buffer, body: Buffer): Buffer {
  return createHmac("sha256", key).update("circuit discovery\0").update(body).digest();
}

export function seal(msg: { id: string; url: string }, key: Buffer | undefined): Buffer {
  const body = encode({ v: 1, ...msg, at: Date.now() });
  return key ? Buffer.concat([body, tag(key, body)]) : body;
}

/** The announcement in a packet, or undefined if it is not one (or not tagged with our key). */
export function open(packet: Buffer, key: Buffer | undefined): { id: string; url: string } | undefined {
  if (packet.length > MAX_PACKET) return undefined;
  let body = packet;
  if (key) {
    if (packet.length <= TAG_BYTES) return undefined;
    body = packet.subarray(0, packet.length - TAG_BYTES);
    const got = packet.subarray(packet.length - TAG_BYTES);
    if (!timingSafeEqual(got, tag(key, body))) return undefined;
  }
  try {
    const m = decode(body) as { v?: unknown; id?: unknown; url?: unknown };
    if (m.v !== 1 || typeof m.id !== "string" || typeof m.url !== "string") return undefined;
    if (!/^X[0-9a-f]{16}$/.test(m.id)) return undefined;
    // Throws (ignored below) for anything that is not a circuit URL.
    parseUrl(m.url);
    return { id: m.id, url: m.url };
  } catch {
    return undefined;
  }
}

async function bind(g: GroupAddr, onPacket: (p: Buffer) => void): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
  sock.on("message", (p) => onPacket(p));
  sock.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(g.port, () => {
      sock.off("error", reject);
      resolve();
    });
  });
  sock.addMembership(g.group);
  sock.setMulticastLoopback(true);
  sock.setMulticastTTL(1);
  return sock;
}

/** A server's side: announce ourselves, and report every other server heard. */
export class Discovery {
  private sock: dgram.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly g: GroupAddr,
    private readonly self: { id: string; url: string },
    private readonly key: Buffer | undefined,
    private readonly onPeer: (peer: { id: string; url: string }) => void,
  ) {}

  async start(): Promise<void> {
    this.sock = await bind(this.g, (p) => {
      const m = open(p, this.key);
      if (m && m.id !== this.self.id) this.onPeer(m);
    });
    const announce = () => this.sock?.send(seal(this.self, this.key), this.g.port, this.g.group);
    announce();
    this.timer = setInterval(announce, ANNOUNCE_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.sock?.close();
    this.sock = undefined;
  }
}

/** A client's side: the URL of the first server heard announcing itself, or Timeout. */
export async function discoverServer(g: GroupAddr, key: Buffer | undefined, timeoutMs: number): Promise<string> {
  let found: (url: string) => void = () => {};
  const heard = new Promise<string>((r) => {
    found = r;
  });
  const sock = await bind(g, (p) => {
    const m = open(p, key);
    if (m) found(m.url);
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      heard,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Timeout(`no circuit server announced itself on ${g.group}:${g.port} within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}
