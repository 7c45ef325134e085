// The one parser and printer of addresses (src/wire/url.ts): circuit URLs and HOST[:PORT] options,
// IPv6 in brackets.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatUrl, isLoopback, isWildcard, parseHostPort, parseUrl } from "../src/wire/url.ts";

const ID = "X0123456789abcdef";

test("circuit URLs: IPv4, names and bracketed IPv6, with or without the server ID", () => {
  assert.deepEqual(parseUrl("circuit://10.0.0.1:7711"), { host: "10.0.0.1", port: 7711 });
  assert.deepEqual(parseUrl(`circuit://db-1.example:7711/${ID}`), { host: "db-1.example", port: 7711, id: ID });
  assert.deepEqual(parseUrl(`circuit://[fd00::1]:7711/${ID}`), { host: "fd00::1", port: 7711, id: ID });
  assert.deepEqual(parseUrl("circuit://[::ffff:10.0.0.1]:1/"), { host: "::ffff:10.0.0.1", port: 1 });
  for (const bad of [
    "circuit://fd00::1:7711",
    "circuit://[fd00::1:7711",
    "circuit://[zz::1]:7711",
    "circuit://host",
    "circuit://host:0",
    "circuit://host:65536",
    "http://host:1",
    `circuit://host:1/${ID}/x`,
    "circuit://a b:1",
  ]) {
    assert.throws(() => parseUrl(bad), TypeError, bad);
  }
});

test("a URL printed and parsed back is the same, IPv6 bracketed", () => {
  for (const [host, port] of [
    ["10.0.0.1", 7711],
    ["fd00::1", 7711],
    ["::1", 1],
    ["example.org", 65535],
  ] as const) {
    const url = formatUrl(host, port, ID);
    assert.equal(url.includes("["), host.includes(":"));
    assert.deepEqual(parseUrl(url), { host, port, id: ID });
  }
});

test("HOST:PORT options: brackets, bare IPv6 without a port, the default port", () => {
  assert.deepEqual(parseHostPort("0.0.0.0:7711"), { host: "0.0.0.0", port: 7711 });
  assert.deepEqual(parseHostPort("[::]:0"), { host: "::", port: 0 });
  assert.deepEqual(parseHostPort("[fd00::1]", 7711), { host: "fd00::1", port: 7711 });
  assert.deepEqual(parseHostPort("fd00::1", 7711), { host: "fd00::1", port: 7711 });
  assert.deepEqual(parseHostPort("db.example", 9), { host: "db.example", port: 9 });
  for (const bad of ["db.example", "[::1]", ":7711", "h:99999", "[x]:1", "a b:1", "[::1]:x"]) {
    assert.throws(() => parseHostPort(bad), TypeError, bad);
  }
});

test("wildcards and loopback", () => {
  for (const w of ["0.0.0.0", "::", "0:0:0:0:0:0:0:0"]) assert.ok(isWildcard(w), w);
  for (const w of ["10.0.0.1", "::1", "fd00::"]) assert.ok(!isWildcard(w), w);
  for (const l of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) assert.ok(isLoopback(l), l);
  assert.ok(!isLoopback("10.0.0.1"));
});
