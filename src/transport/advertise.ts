// The address a daemon tells others to reach it at. Peers connect to what a daemon advertises (its
// membership record and HELLO carry it), so a wildcard such as 0.0.0.0 — which means "every
// interface" to bind() but "this machine" to connect() — must never be advertised.

import * as dgram from "node:dgram";
import * as net from "node:net";
import * as os from "node:os";
import { isLoopback, isWildcard, parseHostPort, parseUrl } from "../wire/url.js";

export interface Advertised {
  host: string;
  port: number;
  /** How the host was chosen, for the log: "--advertise", "bound address", "route to …", … */
  how: string;
}

export interface AdvertiseOptions {
  /** What the listening socket is bound to (server.address()). */
  bound: { address: string; port: number; family: string };
  /** `HOST[:PORT]` from --advertise / CIRCUIT_ADVERTISE; the port defaults to the bound one. */
  advertise?: string;
  /** The --join URLs, in order: the first one we have a route to decides the interface. */
  joins?: readonly string[];
  /** Bounds the route lookup of a join URL that names a host (DNS). Default 2 s. */
  lookupMs?: number;
}

/**
 * Works out the advertised address: --advertise if given; else a specific bound address; else (a
 * wildcard bind) the local address of the interface that routes to the first --join peer, else
 * the first non-loopback interface address, else loopback. Throws TypeError for a bad --advertise.
 */
export async function advertisedAddress(o: AdvertiseOptions): Promise<Advertised> {
  if (o.advertise !== undefined) {
    const a = parseHostPort(o.advertise, o.bound.port);
    if (isWildcard(a.host)) {
      throw new TypeError(`--advertise ${o.advertise}: a wildcard address cannot be reached; give this host's address`);
    }
    if (a.port === 0) throw new TypeError(`--advertise ${o.advertise}: port 0 cannot be reached`);
    return { ...a, how: "--advertise" };
  }
  const port = o.bound.port;
  const bound = unmapped(o.bound.address);
  if (!isWildcard(bound)) return { host: bound, port, how: "bound address" };
  // A socket bound to 0.0.0.0 takes IPv4 only; one bound to :: takes both (Node's default).
  const families = o.bound.family === "IPv4" ? ["IPv4"] : ["IPv4", "IPv6"];
  for (const url of o.joins ?? []) {
    let peer: { host: string; port: number };
    try {
      peer = parseUrl(url);
    } catch {
      continue;
    }
    const local = await routeFrom(peer.host, peer.port, families, o.lookupMs ?? 2000);
    if (local) return { host: local, port, how: `route to ${peer.host}` };
  }
  const first = firstInterfaceAddress(families);
  if (first) return { host: first.address, port, how: `interface ${first.name}` };
  return { host: families.length === 1 ? "127.0.0.1" : "::1", port, how: "loopback (no other interface)" };
}

/**
 * The local address the kernel would use to reach host:port: a connected UDP socket has one, and
 * connecting it sends nothing. Undefined if there is no route (or the name does not resolve).
 */
export async function routeFrom(
  host: string,
  port: number,
  families: readonly string[],
  timeoutMs: number,
): Promise<string | undefined> {
  const v = net.isIP(host);
  const types: ("udp4" | "udp6")[] = [];
  if ((v === 4 || v === 0) && families.includes("IPv4")) types.push("udp4");
  if ((v === 6 || v === 0) && families.includes("IPv6")) types.push("udp6");
  for (const type of types) {
    const local = await new Promise<string | undefined>((resolve) => {
      const sock = dgram.createSocket(type);
      const done = (addr: string | undefined) => {
        clearTimeout(timer);
        sock.close();
        resolve(addr);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      sock.on("error", () => done(undefined));
      sock.connect(port, host, () => {
        try {
          done(unmapped(sock.address().address));
        } catch {
          done(undefined);
        }
      });
    });
    if (local && !isWildcard(local)) return local;
  }
  return undefined;
}

/** The first address of a non-loopback interface, skipping IPv6 link-local ones (they need a scope). */
export function firstInterfaceAddress(families: readonly string[]): { name: string; address: string } | undefined {
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || !families.includes(a.family) || isLoopback(a.address)) continue;
      if (a.family === "IPv6" && /^fe[89ab]/i.test(a.address)) continue;
      return { name, address: a.address };
    }
  }
  return undefined;
}

function unmapped(addr: string): string {
  return addr.startsWith("::ffff:") && net.isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}
