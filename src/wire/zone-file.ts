// One DNS resource record in zone-file syntax (RFC 1035 §5.1), as `set` takes it:
//
//   OWNER [TTL] [IN] TYPE RDATA        (TTL and class in either order; `;` starts a comment)
//
// Both the client (to fail before any I/O) and the hosting daemon (which trusts no peer) parse
// with this. `data` has the shape the dns-packet codec encodes, so the record goes to the wire as
// it is. Names are absolute whether or not they end in a dot (there is no $ORIGIN to be relative
// to), and are kept in lower case: DNS compares names without regard to ASCII case.

/** The record types a nameserver element holds. */
export const RECORD_TYPES = ["A", "AAAA", "CNAME", "TXT", "SRV", "MX", "NS", "PTR"] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export interface MxData {
  preference: number;
  exchange: string;
}

/** A record as the nameserver keeps it and `peek` shows it. */
export interface DnsRecord {
  /** Absolute, lower case, with the trailing dot: "web.circuit.". */
  name: string;
  /** Seconds, 0 to 2^31−1. */
  ttl: number;
  type: RecordType;
  /** A/AAAA: the address; CNAME/NS/PTR: a name; TXT: its strings; SRV and MX: objects. */
  data: string | string[] | SrvData | MxData;
}

/** The TTL of a record that names none. */
export const DEFAULT_TTL = 60;
const MAX_TTL = 2 ** 31 - 1;
/** Longest record text accepted: far more than any record this syntax can describe needs. */
export const MAX_RECORD_TEXT = 64 * 1024;

interface Token {
  text: string;
  quoted: boolean;
}

/** Parses one record; TypeError naming the record and the reason for anything wrong. */
export function parseRecord(text: string): DnsRecord {
  if (typeof text !== "string") throw new TypeError("a record is a string in zone-file syntax");
  const bad = (why: string): TypeError =>
    new TypeError(`bad record ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)}: ${why}`);
  if (text.length > MAX_RECORD_TEXT) throw bad(`longer than ${MAX_RECORD_TEXT} characters`);
  let tokens: Token[];
  try {
    tokens = tokenize(text);
  } catch (err) {
    throw bad((err as Error).message);
  }
  const owner = tokens.shift();
  if (!owner) throw bad("empty; expected OWNER [TTL] [IN] TYPE DATA, e.g. web.circuit. 60 IN A 10.0.0.5");
  if (owner.quoted) throw bad("the owner name cannot be quoted");
  let ttl: number | undefined;
  let cls: string | undefined;
  for (let i = 0; i < 2; i++) {
    const t = tokens[0];
    if (!t || t.quoted) break;
    if (ttl === undefined && /^\d/.test(t.text)) {
      ttl = parseTtl(t.text, bad);
      tokens.shift();
    } else if (cls === undefined && /^(IN|CH|CS|HS|ANY)$/i.test(t.text)) {
      cls = t.text.toUpperCase();
      if (cls !== "IN") throw bad(`class ${cls} is not served; only IN`);
      tokens.shift();
    } else break;
  }
  const typeTok = tokens.shift();
  if (!typeTok) throw bad("no record type; expected one of A, AAAA, CNAME, TXT, SRV, MX, NS, PTR");
  const type = typeTok.text.toUpperCase();
  if (typeTok.quoted || !(RECORD_TYPES as readonly string[]).includes(type)) {
    throw bad(`unknown or unsupported record type ${JSON.stringify(typeTok.text)}; use ${RECORD_TYPES.join(", ")}`);
  }
  const name = domainName(owner.text, "owner", bad);
  const rdata = (n: number, what: string): string[] => {
    if (tokens.length !== n) throw bad(`${type} takes ${what}`);
    for (const t of tokens) if (t.quoted) throw bad(`${type} data cannot be quoted`);
    return tokens.map((t) => t.text);
  };
  const u16 = (s: string, what: string): number => {
    if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) throw bad(`${what} must be a whole number from 0 to 65535`);
    return Number(s);
  };
  const base = { name, ttl: ttl ?? DEFAULT_TTL };
  switch (type as RecordType) {
    case "A": {
      const [a] = rdata(1, "one IPv4 address");
      return { ...base, type: "A", data: ipv4(a as string, bad) };
    }
    case "AAAA": {
      const [a] = rdata(1, "one IPv6 address");
      return { ...base, type: "AAAA", data: ipv6(a as string, bad) };
    }
    case "CNAME":
    case "NS":
    case "PTR": {
      const [target] = rdata(1, "one domain name");
      return { ...base, type: type as "CNAME", data: domainName(target as string, "target", bad) };
    }
    case "MX": {
      const [pref, exchange] = rdata(2, "PREFERENCE EXCHANGE, e.g. 10 mail.circuit.");
      return {
        ...base,
        type: "MX",
        data: {
          preference: u16(pref as string, "MX preference"),
          exchange: domainName(exchange as string, "exchange", bad),
        },
      };
    }
    case "SRV": {
      const [p, w, port, target] = rdata(4, "PRIORITY WEIGHT PORT TARGET, e.g. 0 5 8080 web.circuit.");
      return {
        ...base,
        type: "SRV",
        data: {
          priority: u16(p as string, "SRV priority"),
          weight: u16(w as string, "SRV weight"),
          port: u16(port as string, "SRV port"),
          target: domainName(target as string, "target", bad),
        },
      };
    }
    case "TXT": {
      if (tokens.length === 0) throw bad("TXT takes one or more strings");
      let total = 0;
      for (const t of tokens) {
        const n = Buffer.byteLength(t.text);
        if (n > 255) throw bad("a TXT string is at most 255 bytes; split it into several strings");
        total += n + 1;
      }
      if (total > 65535) throw bad("TXT data longer than 65535 bytes");
      return { ...base, type: "TXT", data: tokens.map((t) => t.text) };
    }
  }
}

/** Checks and normalizes a domain name ("Web.Circuit" → "web.circuit."); TypeError when invalid. */
export function parseName(text: string): string {
  if (typeof text !== "string") throw new TypeError("a domain name is a string");
  return domainName(text, "name", (why) => new TypeError(why));
}

/** The record in canonical zone-file syntax: "web.circuit. 60 IN A 10.0.0.5". */
export function formatRecord(r: DnsRecord): string {
  let rdata: string;
  switch (r.type) {
    case "TXT":
      rdata = (r.data as string[]).map(quote).join(" ");
      break;
    case "MX": {
      const d = r.data as MxData;
      rdata = `${d.preference} ${d.exchange}`;
      break;
    }
    case "SRV": {
      const d = r.data as SrvData;
      rdata = `${d.priority} ${d.weight} ${d.port} ${d.target}`;
      break;
    }
    default:
      rdata = r.data as string;
  }
  return `${r.name} ${r.ttl} IN ${r.type} ${rdata}`;
}

function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (c < 0x20 || c === 0x7f) out += `\\${String(c).padStart(3, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch === " " || ch === "\t" || ch === "\r" || ch === "\n") {
      // One record per call: a line break may only trail it.
      if (ch === "\n" && text.slice(i).trim() !== "" && !text.slice(i).trim().startsWith(";")) {
        throw new Error("one record per line, one line per record");
      }
      i++;
    } else if (ch === ";") {
      if (text.indexOf("\n", i) >= 0 && text.slice(text.indexOf("\n", i)).trim() !== "") {
        throw new Error("one record per line, one line per record");
      }
      break;
    } else if (ch === "(" || ch === ")") {
      throw new Error("records spanning lines with ( … ) are not supported: write it on one line");
    } else if (ch === '"') {
      let s = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new Error("a quoted string has no closing quote");
        const c = text[i] as string;
        if (c === '"') {
          i++;
          break;
        }
        if (c === "\\") {
          const [v, n] = unescape1(text, i);
          s += v;
          i += n;
        } else {
          s += c;
          i++;
        }
      }
      if (i < text.length && !/[\s;]/.test(text[i] as string)) throw new Error("a quoted string must end at a space");
      out.push({ text: s, quoted: true });
    } else {
      let s = "";
      while (i < text.length && !/[\s;"()]/.test(text[i] as string)) {
        if (text[i] === "\\") {
          const [v, n] = unescape1(text, i);
          s += v;
          i += n;
        } else s += text[i++];
      }
      out.push({ text: s, quoted: false });
    }
  }
  return out;
}

/** A backslash escape at text[i]: \DDD (a decimal byte, ASCII only) or \X (X itself). */
function unescape1(text: string, i: number): [string, number] {
  const d = /^\\(\d{3})/.exec(text.slice(i, i + 4));
  if (d) {
    const n = Number(d[1]);
    if (n > 127) throw new Error(`escape \\${d[1]} is not ASCII: write the UTF-8 text itself`);
    return [String.fromCharCode(n), 4];
  }
  if (i + 1 >= text.length) throw new Error("a backslash at the end");
  if (/\d/.test(text[i + 1] as string)) throw new Error("a \\DDD escape takes three decimal digits");
  return [text[i + 1] as string, 2];
}

function parseTtl(s: string, bad: (why: string) => TypeError): number {
  let ttl: number;
  if (/^\d+$/.test(s)) ttl = Number(s);
  else if (/^(\d+[smhdw])+$/i.test(s)) {
    const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
    ttl = 0;
    for (const [, n, u] of s.toLowerCase().matchAll(/(\d+)([smhdw])/g))
      ttl += Number(n) * (unit[u as string] as number);
  } else throw bad(`bad TTL ${JSON.stringify(s)}: seconds, or units like 1h30m`);
  if (!Number.isSafeInteger(ttl) || ttl > MAX_TTL) throw bad(`TTL ${s} is over the largest, ${MAX_TTL} seconds`);
  return ttl;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function domainName(text: string, what: string, bad: (why: string) => TypeError): string {
  if (text === "." || text === "") {
    if (text === "") throw bad(`empty ${what}`);
    return ".";
  }
  if (text === "@") throw bad(`${what} @ needs an $ORIGIN, which a single record has not: write the full name`);
  const lower = text.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const body = lower.endsWith(".") ? lower.slice(0, -1) : lower;
  const labels = body.split(".");
  for (const l of labels) {
    if (l === "*" && what === "owner") throw bad("wildcard names are not supported");
    if (!LABEL.test(l)) {
      throw bad(
        `bad ${what} ${JSON.stringify(text)}: each label is 1 to 63 of a-z 0-9 _ - (not starting or ending with -)`,
      );
    }
  }
  // On the wire: a length byte per label, the labels, and the root's zero byte.
  if (body.length + 2 > 255) throw bad(`${what} ${JSON.stringify(text)} is longer than 255 bytes`);
  return `${body}.`;
}

function ipv4(s: string, bad: (why: string) => TypeError): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m || m.slice(1).some((o) => Number(o) > 255 || (o.length > 1 && o.startsWith("0")))) {
    throw bad(`bad IPv4 address ${JSON.stringify(s)}`);
  }
  return s;
}

function ipv6(s: string, bad: (why: string) => TypeError): string {
  // The WHATWG URL parser holds a strict IPv6 parser, and gives back the canonical (RFC 5952) form.
  if (!/^[0-9A-Fa-f:.]+$/.test(s) || !s.includes(":")) throw bad(`bad IPv6 address ${JSON.stringify(s)}`);
  let host: string;
  try {
    host = new URL(`http://[${s}]/`).hostname;
  } catch {
    throw bad(`bad IPv6 address ${JSON.stringify(s)}`);
  }
  return host.slice(1, -1);
}
