// The pure cores of the nameserver: the zone-file record parser, and the zone answering literal
// DNS messages (bytes in, bytes out), no sockets.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as packet from "dns-packet";
import { Zone } from "../src/element/zone.ts";
import { formatRecord, parseName, parseRecord } from "../src/wire/zone-file.ts";

describe("parseRecord", () => {
  test("reads every supported type, with optional TTL and class in either order", () => {
    const cases: [string, unknown][] = [
      ["web.circuit. 60 IN A 10.0.0.5", { name: "web.circuit.", ttl: 60, type: "A", data: "10.0.0.5" }],
      ["Web.Circuit A 10.0.0.5", { name: "web.circuit.", ttl: 60, type: "A", data: "10.0.0.5" }],
      ["web.circuit. IN 30 aaaa 2001:DB8:0:0::1", { name: "web.circuit.", ttl: 30, type: "AAAA", data: "2001:db8::1" }],
      [
        "www.circuit. 1h30m CNAME Web.Circuit.",
        { name: "www.circuit.", ttl: 5400, type: "CNAME", data: "web.circuit." },
      ],
      [
        'web.circuit. TXT "a b" plain "q\\"uote" "\\065\\;" ; a comment',
        { name: "web.circuit.", ttl: 60, type: "TXT", data: ["a b", "plain", 'q"uote', "A;"] },
      ],
      [
        "_http._tcp.circuit. 0 IN SRV 1 2 8080 web.circuit.",
        {
          name: "_http._tcp.circuit.",
          ttl: 0,
          type: "SRV",
          data: { priority: 1, weight: 2, port: 8080, target: "web.circuit." },
        },
      ],
      [
        "circuit. MX 10 mail.circuit.",
        { name: "circuit.", ttl: 60, type: "MX", data: { preference: 10, exchange: "mail.circuit." } },
      ],
      ["circuit. NS ns1.circuit.", { name: "circuit.", ttl: 60, type: "NS", data: "ns1.circuit." }],
      [
        "1.0.0.10.in-addr.arpa. PTR web.circuit.",
        { name: "1.0.0.10.in-addr.arpa.", ttl: 60, type: "PTR", data: "web.circuit." },
      ],
      ["web.circuit. 2147483647 A 10.0.0.5\n", { name: "web.circuit.", ttl: 2147483647, type: "A", data: "10.0.0.5" }],
    ];
    for (const [text, want] of cases) assert.deepEqual(parseRecord(text), want, text);
  });

  test("refuses malformed records with a TypeError that names the record and the reason", () => {
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["web.circuit. 60 IN", /no record type/],
      ["web.circuit. 60 IN SOA x", /unsupported record type "SOA"/],
      ["web.circuit. 60 CH A 10.0.0.1", /only IN/],
      ["web.circuit. A 10.0.0", /bad IPv4/],
      ["web.circuit. A 10.0.0.01", /bad IPv4/],
      ["web.circuit. A 10.0.0.1 10.0.0.2", /A takes one IPv4 address/],
      ["web.circuit. AAAA 10.0.0.1", /bad IPv6/],
      ["web.circuit. AAAA fe80::1%eth0", /bad IPv6/],
      ["web.circuit. 2147483648 A 10.0.0.1", /TTL/],
      ["web.circuit. 5x A 10.0.0.1", /bad TTL/],
      ["web..circuit. A 10.0.0.1", /bad owner/],
      ["-web.circuit. A 10.0.0.1", /bad owner/],
      [`${"a".repeat(64)}.circuit. A 10.0.0.1`, /bad owner/],
      [`${"a.".repeat(130)} A 10.0.0.1`, /longer than 255/],
      ["*.circuit. A 10.0.0.1", /wildcard/],
      ["@ A 10.0.0.1", /ORIGIN/],
      ['"web.circuit." A 10.0.0.1', /cannot be quoted/],
      ['web.circuit. TXT "open', /no closing quote/],
      [`web.circuit. TXT "${"x".repeat(256)}"`, /at most 255 bytes/],
      ["web.circuit. TXT", /one or more strings/],
      ['web.circuit. TXT "\\200"', /not ASCII/],
      ["web.circuit. SRV 1 2 65536 x.circuit.", /SRV port/],
      ["web.circuit. SRV 1 2 80", /PRIORITY WEIGHT PORT TARGET/],
      ["web.circuit. MX ten mail.circuit.", /MX preference/],
      ["web.circuit. CNAME bad_name!.", /bad target/],
      ["web.circuit. 60 IN A 10.0.0.1\nweb.circuit. A 10.0.0.2", /one record per line/],
      ["web.circuit. 60 IN A ( 10.0.0.1 )", /\( … \)/],
      ["x".repeat(70_000), /longer than/],
    ];
    for (const [text, why] of cases) {
      assert.throws(
        () => parseRecord(text),
        (err: Error) => err instanceof TypeError && /^bad record /.test(err.message) && why.test(err.message),
        text.slice(0, 60),
      );
    }
    assert.throws(() => parseRecord(42 as unknown as string), TypeError);
  });

  test("formatRecord writes what parseRecord reads back", () => {
    for (const text of [
      "web.circuit. 60 IN A 10.0.0.5",
      "web.circuit. 3600 IN AAAA 2001:db8::1",
      'web.circuit. 60 IN TXT "a \\"b\\" \\\\ c" "" "tab\\009"',
      "s.circuit. 5 IN SRV 0 1 2 t.circuit.",
      "circuit. 60 IN MX 0 .",
    ]) {
      const r = parseRecord(text);
      assert.equal(formatRecord(r), text);
      assert.deepEqual(parseRecord(formatRecord(r)), r);
    }
  });

  test("parseName normalizes case and the trailing dot", () => {
    assert.equal(parseName("Web.Circuit"), "web.circuit.");
    assert.equal(parseName("web.circuit."), "web.circuit.");
    assert.equal(parseName("."), ".");
    assert.throws(() => parseName("a b"), TypeError);
    assert.throws(() => parseName(""), TypeError);
  });
});

function query(
  name: string,
  type: string,
  opts: { id?: number; flags?: number; edns?: number; ednsVersion?: number } = {},
): Buffer {
  return packet.encode({
    type: "query",
    id: opts.id ?? 7,
    flags: opts.flags ?? packet.RECURSION_DESIRED,
    questions: [{ name, type: type as packet.RecordType, class: "IN" }],
    additionals:
      opts.edns !== undefined
        ? [
            {
              name: ".",
              type: "OPT",
              udpPayloadSize: opts.edns,
              extendedRcode: 0,
              ednsVersion: opts.ednsVersion ?? 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ]
        : [],
  } as packet.Packet);
}

function ask(z: Zone, msg: Buffer, transport: "udp" | "tcp" = "udp") {
  const out = z.respond(msg, transport);
  assert.ok(out, "an answer");
  return { bytes: out, p: packet.decode(out) as packet.DecodedPacket & { rcode: string; opcode: string } };
}

function zone(): Zone {
  const z = new Zone();
  for (const rr of [
    "web.circuit. A 10.0.0.5",
    "web.circuit. A 10.0.0.6",
    "www.circuit. CNAME web.circuit.",
    "loop1.circuit. CNAME loop2.circuit.",
    "loop2.circuit. CNAME loop1.circuit.",
    "out.circuit. CNAME example.org.",
  ]) {
    z.add(parseRecord(rr));
  }
  return z;
}

describe("Zone", () => {
  test("answers with every record of the asked type, authoritative, id and RD echoed", () => {
    const { p } = ask(zone(), query("WEB.circuit", "A", { id: 0xbeef }));
    assert.equal(p.id, 0xbeef);
    assert.equal(p.rcode, "NOERROR");
    assert.ok(p.flag_qr && p.flag_aa && p.flag_rd && !p.flag_tc);
    assert.deepEqual(
      p.answers?.map((a) => [a.name, (a as packet.StringAnswer).data]),
      [
        ["WEB.circuit", "10.0.0.5"],
        ["WEB.circuit", "10.0.0.6"],
      ],
    );
  });

  test("a CNAME loop ends; a CNAME leading out of the zone is answered NOERROR with the CNAME", () => {
    const loop = ask(zone(), query("loop1.circuit", "A")).p;
    assert.equal(loop.rcode, "NOERROR");
    assert.deepEqual(
      loop.answers?.map((a) => a.type),
      ["CNAME", "CNAME"],
    );
    const out = ask(zone(), query("out.circuit", "A")).p;
    assert.equal(out.rcode, "NOERROR");
    assert.deepEqual(
      out.answers?.map((a) => (a as packet.StringAnswer).data),
      ["example.org"],
    );
  });

  test("ANY answers every record of the name", () => {
    const z = zone();
    z.add(parseRecord("web.circuit. TXT hi"));
    assert.equal(ask(z, query("web.circuit", "ANY")).p.answers?.length, 3);
  });

  test("malformed or unsupported messages: FORMERR, NOTIMP, REFUSED, BADVERS, or silence", () => {
    const z = zone();
    // A header that promises a question it does not carry.
    const header = Buffer.from("1234 0100 0001 0000 0000 0000".replace(/ /g, ""), "hex");
    const formerr = ask(z, header).p;
    assert.equal(formerr.id, 0x1234);
    assert.equal(formerr.rcode, "FORMERR");
    // Two questions.
    const two = packet.encode({
      type: "query",
      id: 9,
      questions: [
        { name: "a.circuit", type: "A" },
        { name: "b.circuit", type: "A" },
      ],
    });
    assert.equal(ask(z, two).p.rcode, "FORMERR");
    // A compression pointer to itself.
    const selfPtr = Buffer.from("000901000001000000000000c00c00010001", "hex");
    assert.equal(ask(z, selfPtr).p.rcode, "FORMERR");
    // Opcode UPDATE (5).
    const update = query("web.circuit", "A", { flags: 5 << 11 });
    assert.equal(ask(z, update).p.rcode, "NOTIMP");
    assert.equal(ask(z, query("web.circuit", "AXFR")).p.rcode, "REFUSED");
    const ch = packet.encode({ type: "query", id: 3, questions: [{ name: "web.circuit", type: "A", class: "CH" }] });
    assert.equal(ask(z, ch).p.rcode, "REFUSED");
    // EDNS version 1: BADVERS, whose upper rcode bits are in the OPT record.
    const bad = ask(z, query("web.circuit", "A", { edns: 1232, ednsVersion: 1 })).p;
    const opt = bad.additionals?.find((a) => a.type === "OPT") as packet.OptAnswer;
    assert.equal(opt.extendedRcode, 1);
    // Silence: shorter than a header, or a response.
    assert.equal(z.respond(Buffer.alloc(11), "udp"), undefined);
    const response = Buffer.from(query("web.circuit", "A"));
    response[2] = (response[2] as number) | 0x80;
    assert.equal(z.respond(response, "udp"), undefined);
  });

  test("over UDP an answer larger than 512 bytes, or the EDNS size, is truncated; over TCP it is whole", () => {
    const z = new Zone();
    for (let i = 0; i < 10; i++) z.add(parseRecord(`big.circuit. TXT "${i}${"z".repeat(100)}"`));
    const plain = ask(z, query("big.circuit", "TXT")).p;
    assert.ok(plain.flag_tc);
    assert.equal(plain.answers?.length, 0);
    assert.equal(plain.questions?.[0]?.name, "big.circuit");
    const edns = ask(z, query("big.circuit", "TXT", { edns: 4096 }));
    assert.ok(!edns.p.flag_tc);
    assert.equal(edns.p.answers?.length, 10);
    assert.ok(edns.bytes.length > 512);
    // An advertised size below 512 counts as 512.
    assert.ok(ask(z, query("big.circuit", "TXT", { edns: 100 })).p.flag_tc);
    const tcp = ask(z, query("big.circuit", "TXT"), "tcp").p;
    assert.ok(!tcp.flag_tc);
    assert.equal(tcp.answers?.length, 10);
  });

  test("CNAME conflicts, duplicates, removal and the record limit", () => {
    const z = new Zone(3);
    z.add(parseRecord("a.circuit. A 10.0.0.1"));
    z.add(parseRecord("a.circuit. 99 A 10.0.0.1"));
    assert.equal(z.size, 1);
    assert.equal(z.recordsOf("A.CIRCUIT.")[0]?.ttl, 99);
    assert.throws(() => z.add(parseRecord("a.circuit. CNAME b.circuit.")), RangeError);
    z.add(parseRecord("c.circuit. CNAME a.circuit."));
    assert.throws(() => z.add(parseRecord("c.circuit. TXT x")), RangeError);
    z.add(parseRecord("x.y.circuit. A 10.0.0.2"));
    assert.throws(() => z.add(parseRecord("d.circuit. A 10.0.0.3")), /holds 3 records/);
    assert.equal(ask(z, query("y.circuit", "A")).p.rcode, "NOERROR");
    assert.equal(z.remove("X.Y.circuit"), 1);
    assert.equal(ask(z, query("y.circuit", "A")).p.rcode, "NXDOMAIN");
    assert.equal(z.remove("nothing.circuit"), 0);
    assert.equal(z.size, 2);
  });
});
