// A handle on a nameserver element (DESIGN.md §3.5): a DNS server on the hosting machine, UDP and
// TCP on one port, answering from the records set through the circuit.

import { NotFound } from "../errors.js";
import type { DnsDo, DnsRequest } from "../wire/requests.js";
import { type DnsRecord, parseName, parseRecord } from "../wire/zone-file.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";

export type { DnsRecord, MxData, RecordType, SrvData } from "../wire/zone-file.js";

/** A nameserver's state as of the moment the server answered. */
export interface NameserverStat {
  /** Where it listens, UDP and TCP: "127.0.0.1:53535" or "[::1]:53535". */
  address: string;
  /** Every record, by name, each with its canonical zone-file text in `rr`. */
  records: (DnsRecord & { rr: string })[];
}

/** Checks a HOST:PORT nameserver address before any I/O (the host must be an IP address or localhost). */
export function checkNameserverAddr(addr: string): void {
  const m = typeof addr === "string" ? /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr) : null;
  if (!m || Number(m[3]) > 65535) {
    throw new TypeError(`bad nameserver address ${JSON.stringify(addr)}: expected HOST:PORT, e.g. 127.0.0.1:0`);
  }
}

export class Nameserver implements AsyncDisposable {
  readonly kind = "dns";

  /** @internal */
  constructor(
    private readonly c: Connection,
    /** The anchor path of this nameserver. */
    readonly path: string,
    private readonly names: readonly string[],
    /** The element id: a handle keeps addressing this nameserver, not a later one at the same anchor. */
    private readonly eid: number,
    /** Where it listens (UDP and TCP), e.g. "127.0.0.1:53535". */
    readonly address: string,
  ) {}

  /**
   * Adds a record in zone-file syntax: `OWNER [TTL] [IN] TYPE DATA`, e.g.
   * "web.circuit. 60 IN A 10.0.0.5" (A, AAAA, CNAME, TXT, SRV, MX, NS, PTR; TTL default 60 s).
   * Names are absolute with or without the trailing dot. The same record again only updates its
   * TTL. A malformed record throws TypeError before any I/O; a CNAME beside other records of its
   * name, or a record beside a CNAME, fails with ProtocolError.
   */
  async set(rr: string, opts?: OpOptions): Promise<void> {
    parseRecord(rr);
    await this.c.request(this.req({ do: "set", rr }), opts?.signal);
  }

  /** Removes every record of a name; resolves with how many there were (NotFound when none). */
  async unset(name: string, opts?: OpOptions): Promise<number> {
    parseName(name);
    return (await this.c.request(this.req({ do: "unset", name }), opts?.signal)) as number;
  }

  async peek(opts?: OpOptions): Promise<NameserverStat> {
    return (await this.c.request(this.req({ do: "peek" }), opts?.signal)) as NameserverStat;
  }

  /** Stops the DNS server and removes the element; resolves once its port is free again. */
  async scrub(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "scrub", path: this.names }, opts?.signal);
  }

  /** `await using ns = await anchor.makeNameserver()` scrubs it when the scope ends (if still there). */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.scrub();
    } catch (err) {
      if (!(err instanceof NotFound)) throw err;
    }
  }

  private req(more: DnsDo): DnsRequest {
    return { op: "dns", path: this.names, eid: this.eid, ...more };
  }
}
