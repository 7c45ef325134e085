// test-runner: heavy (network namespaces and timed partitions)
// A circuit deployed the way an operator would on three machines (network namespaces on a bridge,
// see helpers/hosts.ts): daemons bound to the wildcard addresses [::] and 0.0.0.0 with a cluster
// key, each joining the first by its address — B over IPv6, C over IPv4. Each must advertise an
// address the others can reach, and channels and processes must work across the hosts.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { count, type HostDaemon, Hosts, re } from "./helpers/hosts.ts";

const net = new Hosts(3);
const [A, B, C] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0], (typeof net.hosts)[0]];

describe("a circuit across three hosts (wildcard binds, IPv4 and IPv6, a key)", () => {
  let a: HostDaemon;
  let b: HostDaemon;
  let c: HostDaemon;
  let all = "";

  before(async () => {
    net.setUp();
    a = await net.daemon(A, ["--addr", "[::]:7711", "--key", net.keyFile]);
    [b, c] = await Promise.all([
      net.daemon(B, ["--addr", "[::]:7711", "--key", net.keyFile, "--join", `circuit://[${A.v6}]:7711`]),
      net.daemon(C, ["--addr", "0.0.0.0:7711", "--key", net.keyFile, "--join", `circuit://${A.v4}:7711`]),
    ]);
    all = [a, b, c]
      .map((d) => `/${d.id}`)
      .sort()
      .join(" ");
  });
  after(() => net.tearDown());

  test("each daemon advertises the address the others reach it at, never 0.0.0.0 or ::", () => {
    // A joins nobody: the first address of its one non-loopback interface (IPv4 or IPv6).
    assert.match(a.url, new RegExp(`^circuit://(${re(A.v4)}|\\[${re(A.v6)}\\]):7711/X[0-9a-f]{16}$`));
    // B and C: the address of the interface that routes to the peer they join, in its family.
    assert.match(b.url, new RegExp(`^circuit://\\[${re(B.v6)}\\]:7711/X[0-9a-f]{16}$`));
    assert.match(c.url, new RegExp(`^circuit://${re(C.v4)}:7711/X[0-9a-f]{16}$`));
    assert.match(b.stderr(), new RegExp(`listening on \\[::\\]:7711; address from route to ${re(A.v6)}`));
  });

  test("ls / lists all three servers from every host; each joiner says once that it joined", async () => {
    await Promise.all(
      (
        [
          [A, a],
          [B, b],
          [C, c],
        ] as const
      ).map(([h, d]) =>
        net.until(
          `${h.name} sees all three`,
          15_000,
          () => net.view(h, d.url),
          (v) => v === all,
        ),
      ),
    );
    assert.equal(count(b.stderr(), new RegExp(`joined circuit://\\[${re(A.v6)}\\]:7711 \\(\\d members\\)`)), 1);
    assert.equal(count(c.stderr(), new RegExp(`joined circuit://${re(A.v4)}:7711 \\(\\d members\\)`)), 1);
  });

  test("a channel hosted on B: a client on C sends, a blocked receiver on A gets it", async () => {
    let r = await net.cli(C, ["-d", c.url, "mkchan", `/${b.id}/q`, "0"]);
    assert.equal(r.code, 0, r.err);
    // Unbuffered: the send completes only when A's receive, across the IPv6 link to B, takes it.
    const got = net.cli(A, ["-d", a.url, "recv", "--timeout", "20000", `/${b.id}/q`]);
    await sleep(300);
    r = await net.cli(C, ["-d", c.url, "send", `/${b.id}/q`], { input: "over the bridge" });
    assert.equal(r.code, 0, r.err);
    const g = await got;
    assert.equal(g.code, 0, g.err);
    assert.equal(g.out, "over the bridge");
  });

  test("a process started on A by a client on C; its stdout read from B", async () => {
    let r = await net.cli(C, ["-d", c.url, "mkproc", `/${a.id}/where`, "--", "hostname", "-I"]);
    assert.equal(r.code, 0, r.err);
    r = await net.cli(B, ["-d", b.url, "stdout", `/${a.id}/where`]);
    assert.equal(r.code, 0, r.err);
    // It ran on A: it lists A's addresses.
    assert.match(r.out, new RegExp(`(^|\\s)${re(A.v4)}(\\s|$)`));
    assert.match(r.out, new RegExp(`(^|\\s)${re(A.v6)}(\\s|$)`));
  });
});
