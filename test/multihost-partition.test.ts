// test-runner: heavy (network namespaces and timed partitions)
// Three hosts (helpers/hosts.ts), daemons on wildcard addresses: one host's link is cut at the
// switch and restored. The others drop it (a @leave subscription on A reports it), and once the
// link is back it rejoins and every view converges to all three again.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type HostDaemon, Hosts, ip } from "./helpers/hosts.ts";

const net = new Hosts(3);
const [A, B, C] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0], (typeof net.hosts)[0]];

describe("a host whose link is cut and restored", () => {
  let a: HostDaemon;
  let b: HostDaemon;
  let c: HostDaemon;
  let all = "";

  before(async () => {
    net.setUp();
    a = await net.daemon(A, ["--addr", "[::]:7711", "--key", net.keyFile]);
    [b, c] = await Promise.all([
      net.daemon(B, ["--addr", "0.0.0.0:7711", "--key", net.keyFile, "--join", `circuit://${A.v4}:7711`]),
      net.daemon(C, ["--addr", "[::]:7711", "--key", net.keyFile, "--join", `circuit://[${A.v6}]:7711`]),
    ]);
    all = [a, b, c]
      .map((d) => `/${d.id}`)
      .sort()
      .join(" ");
    await net.until(
      "A sees all three",
      15_000,
      () => net.view(A, a.url),
      (v) => v === all,
    );
  });
  after(() => net.tearDown());

  test("drops out (seen by @leave) and rejoins; views converge", async () => {
    const r = await net.cli(A, ["-d", a.url, "mk@leave", `/${a.id}/left`]);
    assert.equal(r.code, 0, r.err);
    // Started before the cut: the receive blocks until C's departure is known on A.
    const left = net.cli(A, ["-d", a.url, "recv", "--timeout", "20000", `/${a.id}/left`], { timeoutMs: 25_000 });
    ip("-n", net.sw, "link", "set", C.peer, "down");
    try {
      const l = await left;
      assert.equal(l.code, 0, l.err);
      assert.equal(JSON.parse(l.out), `/${c.id}`);
      const without = [a, b]
        .map((d) => `/${d.id}`)
        .sort()
        .join(" ");
      await net.until(
        "B drops C too",
        10_000,
        () => net.view(B, b.url),
        (v) => v === without,
      );
    } finally {
      ip("-n", net.sw, "link", "set", C.peer, "up");
    }
    await Promise.all(
      (
        [
          [A, a],
          [B, b],
          [C, c],
        ] as const
      ).map(([h, d]) =>
        net.until(
          `${h.name} sees all three again`,
          25_000,
          () => net.view(h, d.url),
          (v) => v === all,
        ),
      ),
    );
  });
});
