// The nameserver element answers the real dig over UDP and TCP: a daemon in its own process hosts
// it; records are set through the CLI and the library.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, dial, Nameserver } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { dig } from "./helpers/dig.ts";
import { LOOPBACK_ADDR, ok } from "./helpers/dns.ts";

after(killAll);

type Want = [string, number, string];

describe("nameserver answers dig", () => {
  let d: Daemon;
  let c: Client;
  let addr: string;

  before(async () => {
    d = await startDaemon();
    const path = `/${d.id}/dns`;
    addr = (await ok(d, ["mkdns", path])).trim();
    assert.match(addr, LOOPBACK_ADDR, "mkdns prints HOST:PORT");
    // A few through the CLI, as a user types them; the rest through the library (faster).
    await ok(d, ["set", path, "web.circuit. 60 IN A 10.0.0.5"]);
    await ok(d, ["set", path, 'web.circuit. 300 TXT "v=1 hello" "second; string"']);
    await ok(d, ["set", path, "www.circuit. IN 45 CNAME alias.circuit."]);
    c = await dial(d.url);
    const ns = await c.walk(path).get();
    assert.ok(ns instanceof Nameserver);
    for (const rr of [
      "web.circuit. 60 IN A 10.0.0.6",
      "web.circuit. 120 AAAA 2001:db8::5",
      "Alias.Circuit. 30 IN CNAME web.circuit.",
      "_http._tcp.web.circuit. 60 IN SRV 10 5 8080 web.circuit.",
      "circuit. 3600 IN MX 10 mail.circuit.",
      "circuit. 1h IN NS ns1.circuit.",
      "5.0.0.10.in-addr.arpa. PTR web.circuit.",
      "deep.below.empty.circuit. A 10.9.9.9",
    ]) {
      await ns.set(rr);
    }
  });
  after(async () => {
    await c?.close();
  });

  test("every record type, over UDP and over TCP, with its TTL", async () => {
    const cases: [string, string, Want[]][] = [
      [
        "web.circuit",
        "A",
        [
          ["web.circuit.", 60, "10.0.0.5"],
          ["web.circuit.", 60, "10.0.0.6"],
        ],
      ],
      ["web.circuit", "AAAA", [["web.circuit.", 120, "2001:db8::5"]]],
      ["alias.circuit", "CNAME", [["alias.circuit.", 30, "web.circuit."]]],
      ["web.circuit", "TXT", [["web.circuit.", 300, '"v=1 hello" "second; string"']]],
      ["_http._tcp.web.circuit", "SRV", [["_http._tcp.web.circuit.", 60, "10 5 8080 web.circuit."]]],
      ["circuit", "MX", [["circuit.", 3600, "10 mail.circuit."]]],
      ["circuit", "NS", [["circuit.", 3600, "ns1.circuit."]]],
      ["5.0.0.10.in-addr.arpa", "PTR", [["5.0.0.10.in-addr.arpa.", 60, "web.circuit."]]],
    ];
    await Promise.all(
      cases.flatMap(([name, type, want]) =>
        [[], ["+tcp"]].map(async (extra) => {
          const r = await dig(addr, name, type, extra);
          const what = `${name} ${type} ${extra.join(" ")}`;
          assert.equal(r.status, "NOERROR", `${what}: ${r.out}`);
          assert.ok(r.flags.includes("aa"), `${what}: authoritative`);
          assert.ok(!r.flags.includes("tc"), `${what}: not truncated`);
          assert.deepEqual(
            r.answers.map((a) => [a.name, a.ttl, a.data]),
            want,
            `${what}: ${r.out}`,
          );
          assert.ok(
            r.answers.every((a) => a.type === type),
            `${what}: only ${type} records`,
          );
        }),
      ),
    );
  });

  test("names are case-insensitive, and the answer keeps the case asked", async () => {
    const [r, alias] = await Promise.all([dig(addr, "WeB.CIRCUIT", "A"), dig(addr, "ALIAS.circuit", "CNAME")]);
    assert.equal(r.status, "NOERROR");
    assert.deepEqual(
      r.answers.map((a) => [a.name, a.data]),
      [
        ["WeB.CIRCUIT.", "10.0.0.5"],
        ["WeB.CIRCUIT.", "10.0.0.6"],
      ],
    );
    // The owner was set as "Alias.Circuit.": it answers in any case.
    assert.equal(alias.answers[0]?.data, "web.circuit.");
  });

  test("unknown names get NXDOMAIN; known names without that type get NOERROR and no answer", async () => {
    const asks: [string, string, string[], string][] = [];
    for (const extra of [[], ["+tcp"]]) {
      asks.push(["nobody.circuit", "A", extra, "NXDOMAIN"]);
      asks.push(["circuit", "A", extra, "NOERROR"]);
      asks.push(["web.circuit", "MX", extra, "NOERROR"]);
      asks.push(["web.circuit", "SRV", extra, "NOERROR"]);
    }
    // A name with records only below it exists (RFC 8020): NOERROR, not NXDOMAIN.
    asks.push(["below.empty.circuit", "A", [], "NOERROR"]);
    asks.push(["other.empty.circuit", "A", [], "NXDOMAIN"]);
    await Promise.all(
      asks.map(async ([name, type, extra, status]) => {
        const r = await dig(addr, name, type, extra);
        assert.equal(r.status, status, `${name} ${type} ${extra.join(" ")}: ${r.out}`);
        assert.equal(r.answers.length, 0, r.out);
        assert.ok(r.flags.includes("aa"));
      }),
    );
  });

  test("a CNAME chain is followed inside the zone", async () => {
    await Promise.all(
      [[], ["+tcp"]].map(async (extra) => {
        const r = await dig(addr, "www.circuit", "A", extra);
        assert.equal(r.status, "NOERROR", r.out);
        assert.deepEqual(
          r.answers.map((a) => [a.name, a.ttl, a.type, a.data]),
          [
            ["www.circuit.", 45, "CNAME", "alias.circuit."],
            ["alias.circuit.", 30, "CNAME", "web.circuit."],
            ["web.circuit.", 60, "A", "10.0.0.5"],
            ["web.circuit.", 60, "A", "10.0.0.6"],
          ],
          r.out,
        );
      }),
    );
    const aaaa = await dig(addr, "www.circuit", "AAAA");
    assert.deepEqual(
      aaaa.answers.map((a) => a.type),
      ["CNAME", "CNAME", "AAAA"],
    );
  });
});
