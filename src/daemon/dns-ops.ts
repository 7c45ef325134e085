// Requests on nameserver elements (session.ts delegates here; DESIGN.md §3.5).
//
//   {op: "mkdns", path, addr?}          → {kind: "dns", eid, address}; addr "HOST:PORT", default
//                                         127.0.0.1:0 (a free port). A non-loopback address needs a
//                                         cluster key or a daemon started with --insecure.
//   {op: "dns", path, eid?, do, ...}    eid: from mkdns/open; a nameserver replaced at the same
//                                         anchor answers NotFound to the old handle
//     do "set", rr                      → null; rr in zone-file syntax (src/wire/zone-file.ts)
//     do "unset", name                  → the number of records removed (NotFound when none)
//     do "peek"                         → {address, records}
//
// peek and scrub by path (the generic ops) reach a nameserver through Daemon.stateOf/scrubElement.

import { isIP } from "node:net";
import { AccessDenied, AnchorBusy, NotFound, ProtocolError, WrongKind } from "../errors.js";
import type { Logger } from "../util/log.js";
import { formatPath } from "../wire/path.js";
import type { Received } from "../wire/requests.js";
import { formatRecord, parseName, parseRecord } from "../wire/zone-file.js";
import type { DnsElement, Element } from "./elements.js";

/** What these requests need of the daemon (and nothing more). */
export interface DnsHost {
  element(names: string[]): Element | { kind: "server" } | null;
  place(names: string[], el: Element): void;
  unplace(el: Element): void;
  /** Whether a socket may listen on a non-loopback address (a cluster key, or --insecure). */
  readonly mayListenBeyondLoopback: boolean;
  /** A nameserver to close when the daemon stops. */
  trackNameserver(el: DnsElement): void;
  log: Logger;
}

type Reply = (v: unknown) => void;
type Fail = (err: unknown) => void;

let eids = 0;

export function dnsInfo(el: DnsElement): { kind: "dns"; eid: number; address: string } {
  return { kind: "dns", eid: el.eid, address: el.ns.address };
}

/** The peek answer: the address, and each record with its zone-file text. */
export function dnsStat(el: DnsElement): { address: string; records: unknown[] } {
  const { address, records } = el.ns.stat();
  return { address, records: records.map((r) => ({ ...(r as object), rr: formatRecord(r as never) })) };
}

/** A short state for `ls -l`. */
export function dnsShortState(el: DnsElement): string {
  return `${el.ns.address} records=${el.ns.zone.size}`;
}

/** Stops the DNS server (its port is free once done runs) and removes the element. */
export function scrubDns(d: DnsHost, el: DnsElement, done: () => void): void {
  d.unplace(el);
  void el.ns.close().then(() => {
    d.log.info(
      { event: "nameserver-stop", path: formatPath(el.names), address: el.ns.address },
      `nameserver ${formatPath(el.names)} stopped, ${el.ns.address} free`,
    );
    done();
  });
}

export function dnsRequest(d: DnsHost, names: string[], r: Received<"mkdns" | "dns">, reply: Reply, fail: Fail): void {
  if (r.op === "mkdns") return makeDns(d, names, r.addr, reply, fail);
  const el = d.element(names);
  const path = formatPath(names);
  if (!el) throw new NotFound(`${path} holds no element`);
  if (el.kind !== "dns") throw new WrongKind(`${path} holds a ${el.kind}, not a nameserver`);
  if (typeof r.eid === "number" && r.eid !== el.eid) {
    throw new NotFound(`${path}: that nameserver is gone (another one is there now)`);
  }
  switch (r.do) {
    case "set": {
      if (typeof r.rr !== "string") throw new ProtocolError("set takes a record string");
      el.ns.zone.add(parseRecord(r.rr));
      return reply(null);
    }
    case "unset": {
      if (typeof r.name !== "string") throw new ProtocolError("unset takes a name");
      const name = parseName(r.name);
      const n = el.ns.zone.remove(name);
      if (n === 0) throw new NotFound(`${path} has no records for ${name}`);
      return reply(n);
    }
    case "peek":
      return reply(dnsStat(el));
    default:
      fail(new ProtocolError(`unknown nameserver operation ${JSON.stringify(r.do)}`));
  }
}

function makeDns(d: DnsHost, names: string[], addr: unknown, reply: Reply, fail: Fail): void {
  const path = formatPath(names);
  if (names.length < 2) throw new WrongKind(`${path} cannot hold a nameserver`);
  if (addr !== undefined && addr !== null && typeof addr !== "string") {
    throw new TypeError("a nameserver address is HOST:PORT");
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr ?? "127.0.0.1:0");
  if (!m || Number(m[3]) > 65535) throw new TypeError(`bad nameserver address ${JSON.stringify(addr)}: HOST:PORT`);
  const given = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  const host = given === "localhost" ? "127.0.0.1" : given;
  if (isIP(host) === 0)
    throw new TypeError(`bad nameserver address ${JSON.stringify(addr)}: HOST must be an IP address`);
  const loopback = host === "::1" || host.startsWith("127.");
  // The same rule as for the daemon's own address (DESIGN.md §7).
  if (!loopback && !d.mayListenBeyondLoopback) {
    throw new AccessDenied(
      `refusing to serve DNS on ${addr} from a server without a cluster key: start it with --key FILE, or --insecure`,
    );
  }
  if (d.element(names)) throw new AnchorBusy(`${path} already holds an element`);
  // Loaded on first use: a daemon (and every CLI command) that runs no nameserver never loads the
  // DNS codec.
  import("./nameserver.js")
    .then(({ HostedNameserver }) => HostedNameserver.start(host, port, d.log))
    .then((ns) => {
      const el: DnsElement = { kind: "dns", ns, names, eid: ++eids };
      try {
        // Another request may have taken the anchor while we were binding.
        d.place(names, el);
      } catch (err) {
        void ns.close().then(() => fail(err));
        return;
      }
      d.trackNameserver(el);
      d.log.info(
        { event: "nameserver-start", path, address: ns.address },
        `nameserver ${path} serving DNS on ${ns.address} (udp, tcp)`,
      );
      reply(dnsInfo(el));
    }, fail);
}
