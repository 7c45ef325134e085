// test-runner: heavy (network namespaces and timed partitions)
// `circuit join` across hosts (helpers/hosts.ts): two separate circuits, told of each other by one
// `circuit join`, become one view on every member of both.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type HostDaemon, Hosts, re } from "./helpers/hosts.ts";

const net = new Hosts(3);
const [A, B, C] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0], (typeof net.hosts)[0]];

describe("circuit join across hosts", () => {
  let a: HostDaemon;

  before(async () => {
    net.setUp();
    a = await net.daemon(A, ["--addr", "[::]:7711", "--key", net.keyFile]);
  });
  after(() => net.tearDown());

  test("circuit join merges two separate circuits into one view everywhere", async () => {
    // Circuit 1: A and B. Circuit 2: F on B and G on C, G joining F over IPv6.
    const [b, f] = await Promise.all([
      net.daemon(B, ["--addr", "[::]:7713", "--key", net.keyFile, "--join", `circuit://[${A.v6}]:7711`]),
      net.daemon(B, ["--addr", "[::]:7714", "--key", net.keyFile]),
    ]);
    const g = await net.daemon(C, ["--addr", "0.0.0.0:7714", "--key", net.keyFile, "--join", f.url]);
    await net.until(
      "F and G form a circuit of two",
      15_000,
      () => net.view(C, g.url),
      (v) => v.split(" ").length === 2,
    );
    await net.until(
      "A and B form a circuit of two",
      15_000,
      () => net.view(A, a.url),
      (v) => v.split(" ").length === 2,
    );
    const r = await net.cli(C, ["-d", g.url, "join", a.url]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^joined ${re(a.url)} \\(\\d members\\)\\n$`));
    const four = [a, b, f, g]
      .map((x) => `/${x.id}`)
      .sort()
      .join(" ");
    await Promise.all(
      (
        [
          [A, a],
          [B, b],
          [B, f],
          [C, g],
        ] as const
      ).map(([h, d]) =>
        net.until(
          `${d.id} sees all four`,
          15_000,
          () => net.view(h, d.url),
          (v) => v === four,
        ),
      ),
    );
  });
});
