// The records of a nameserver element and how it answers a query: bytes in, bytes out (or nothing),
// no sockets. The dns-packet codec reads and writes the packets; this file decides what to say.
//
// Answers are authoritative (AA): a name with records of the asked type gets them all; a name with
// other records, or with records only below it (an empty non-terminal), gets NOERROR and no answer;
// any other name gets NXDOMAIN. CNAMEs are followed inside the zone (8 links at most, loops cut).
// A UDP answer larger than the client can take (512 bytes, or the size its EDNS record advertises,
// up to 4096) is sent truncated (TC, question only) so that the client asks again over TCP.

import * as packet from "dns-packet";

/** The shape of a record (src/wire/zone-file.ts makes them): data in the codec's own shapes. */
export interface ZoneRecord {
  name: string;
  ttl: number;
  type: string;
  data: unknown;
}

/** Records a zone holds at most, so that a client cannot make the daemon hold unbounded memory. */
export const MAX_RECORDS = 10_000;
/** The links of a CNAME chain followed at most. */
const MAX_CHAIN = 8;
/** UDP answers: the classic limit, and the most an EDNS client may ask for. */
const UDP_MIN = 512;
const UDP_MAX = 4096;
/** What we advertise in our own EDNS record. */
const OUR_UDP_SIZE = 1232;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const AA = 1 << 10;
const TC = 1 << 9;
const RD = 1 << 8;

/** ASCII lower case, without the trailing dot; the root is "". */
function key(name: string): string {
  const n = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return n === "." ? "" : n.endsWith(".") ? n.slice(0, -1) : n;
}

/** The name and every name above it, up to the root (""). */
function* ancestry(k: string): Generator<string> {
  let n = k;
  for (;;) {
    yield n;
    if (n === "") return;
    const dot = n.indexOf(".");
    n = dot < 0 ? "" : n.slice(dot + 1);
  }
}

function sameData(a: ZoneRecord, b: ZoneRecord): boolean {
  return a.type === b.type && JSON.stringify(a.data) === JSON.stringify(b.data);
}

export class Zone {
  /** Records by key, in the order they were set. */
  private readonly byName = new Map<string, ZoneRecord[]>();
  /** How many records sit at or below each name: a name exists while its count is above 0. */
  private readonly below = new Map<string, number>();
  private count = 0;

  constructor(private readonly maxRecords = MAX_RECORDS) {}

  get size(): number {
    return this.count;
  }

  /**
   * Adds a record; the same data again replaces the old one (its TTL too). RangeError when a CNAME
   * would share its name with other records (RFC 1034 §3.6.2) or the zone is full.
   */
  add(r: ZoneRecord): void {
    const k = key(r.name);
    const list = this.byName.get(k) ?? [];
    const same = list.findIndex((x) => sameData(x, r));
    if (same >= 0) {
      list[same] = r;
      return;
    }
    if (r.type === "CNAME" && list.length > 0) {
      throw new RangeError(`${r.name} already has records; a CNAME cannot sit beside others (unset it first)`);
    }
    if (r.type !== "CNAME" && list.some((x) => x.type === "CNAME")) {
      throw new RangeError(`${r.name} has a CNAME; no other record can sit beside it (unset it first)`);
    }
    if (this.count >= this.maxRecords) throw new RangeError(`the nameserver holds ${this.maxRecords} records already`);
    list.push(r);
    this.byName.set(k, list);
    this.count++;
    for (const a of ancestry(k)) this.below.set(a, (this.below.get(a) ?? 0) + 1);
  }

  /** Removes every record of a name; returns how many there were. */
  remove(name: string): number {
    const k = key(name);
    const list = this.byName.get(k);
    if (!list) return 0;
    this.byName.delete(k);
    this.count -= list.length;
    for (const a of ancestry(k)) {
      const n = (this.below.get(a) ?? 0) - list.length;
      if (n > 0) this.below.set(a, n);
      else this.below.delete(a);
    }
    return list.length;
  }

  /** Every record, by name, in the order set. */
  records(): ZoneRecord[] {
    return [...this.byName.keys()].sort().flatMap((k) => this.byName.get(k) as ZoneRecord[]);
  }

  /** Records of one name (any case). */
  recordsOf(name: string): readonly ZoneRecord[] {
    return this.byName.get(key(name)) ?? [];
  }

  /**
   * The answer to one DNS message, or undefined when it deserves none (shorter than a header, or a
   * response: answering responses could start a loop between two servers). Never throws.
   */
  respond(msg: Uint8Array, transport: "udp" | "tcp"): Buffer | undefined {
    const buf = Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    if (buf.length < 12) return undefined;
    const id = buf.readUInt16BE(0);
    const flags = buf.readUInt16BE(2);
    if (flags & 0x8000) return undefined;
    const opcode = (flags >> 11) & 0xf;
    const head = (opcode << 11) | (flags & RD);
    const bare = (rcode: number, questions: packet.Question[] = []): Buffer =>
      packet.encode({ id, type: "response", flags: head | rcode, questions, answers: [], additionals: [] });
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(buf);
    } catch {
      return bare(RCODE.FORMERR);
    }
    try {
      return this.answer(q, id, head, transport);
    } catch {
      // A question the codec read but cannot write back (odd bytes in a name): say so, without it.
      try {
        return bare(RCODE.SERVFAIL);
      } catch {
        return undefined;
      }
    }
  }

  private answer(q: packet.DecodedPacket, id: number, head: number, transport: "udp" | "tcp"): Buffer {
    const questions = q.questions ?? [];
    const opts = (q.additionals ?? []).filter((a) => a.type === "OPT") as packet.OptAnswer[];
    const ourOpt: packet.OptAnswer[] = opts.length === 1 ? [optRecord(0)] : [];
    const reply = (rcode: number, answers: packet.Answer[] = [], extra = head): Buffer =>
      packet.encode({
        id,
        type: "response",
        flags: extra | rcode,
        questions: questions.slice(0, 1),
        answers,
        additionals: ourOpt,
      });
    if (questions.length !== 1 || opts.length > 1) return reply(RCODE.FORMERR);
    if (head >> 11 !== 0) return reply(RCODE.NOTIMP);
    const opt = opts[0];
    if (opt && opt.ednsVersion !== 0) {
      // BADVERS (16): the upper bits of the rcode travel in our OPT record.
      return packet.encode({
        id,
        type: "response",
        flags: head,
        questions: questions.slice(0, 1),
        answers: [],
        additionals: [optRecord(1)],
      });
    }
    const question = questions[0] as packet.Question;
    const qclass = question.class ?? "IN";
    if (qclass !== "IN" && qclass !== "ANY") return reply(RCODE.REFUSED);
    const qtype = question.type as string;
    if (qtype === "AXFR" || qtype === "IXFR") return reply(RCODE.REFUSED);

    const answers: packet.Answer[] = [];
    let rcode: number = RCODE.NOERROR;
    let name = key(question.name);
    // The first owner keeps the case the client asked in (some resolvers check it, RFC 5452 §9.1).
    let owner = question.name;
    const seen = new Set<string>();
    for (let hop = 0; hop <= MAX_CHAIN; hop++) {
      seen.add(name);
      const list = this.byName.get(name);
      if (!list) {
        // An unknown first name does not exist; a CNAME that leads out of the zone is not ours to deny.
        if (hop === 0 && !this.below.has(name)) rcode = RCODE.NXDOMAIN;
        break;
      }
      const cname = list.find((r) => r.type === "CNAME");
      if (cname && qtype !== "CNAME" && qtype !== "ANY") {
        answers.push(toAnswer(cname, owner));
        name = key(cname.data as string);
        owner = cname.data as string;
        if (seen.has(name)) break;
        continue;
      }
      for (const r of list) if (qtype === "ANY" || r.type === qtype) answers.push(toAnswer(r, owner));
      break;
    }
    const full = reply(rcode, answers, head | AA);
    if (transport === "tcp") return full.length <= 65535 ? full : reply(RCODE.SERVFAIL);
    const limit = opt ? Math.min(UDP_MAX, Math.max(UDP_MIN, opt.udpPayloadSize)) : UDP_MIN;
    return full.length <= limit ? full : reply(rcode, [], head | AA | TC);
  }
}

function toAnswer(r: ZoneRecord, owner: string): packet.Answer {
  // A copy: the codec turns the strings of a TXT array into Buffers in place.
  const data = Array.isArray(r.data) ? [...r.data] : r.data;
  return { name: owner, type: r.type, ttl: r.ttl, class: "IN", data } as packet.Answer;
}

function optRecord(extendedRcode: number): packet.OptAnswer {
  return {
    name: ".",
    type: "OPT",
    udpPayloadSize: OUR_UDP_SIZE,
    extendedRcode,
    ednsVersion: 0,
    flags: 0,
    flag_do: false,
    options: [],
  };
}
