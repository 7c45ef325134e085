// test-runner: heavy (network namespaces and timed partitions)
// Joins that go wrong across hosts (helpers/hosts.ts): a join to an address where nothing
// answers, and a join with another cluster key. Each must say why on stderr, once.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { count, type HostDaemon, Hosts, ip, re } from "./helpers/hosts.ts";

const net = new Hosts(3);
const [A, B, C] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0], (typeof net.hosts)[0]];

describe("joins across hosts", () => {
  let a: HostDaemon;

  before(async () => {
    net.setUp();
    a = await net.daemon(A, ["--addr", "[::]:7711", "--key", net.keyFile]);
  });
  after(() => net.tearDown());

  test("a join to an unreachable address says why within the handshake time, once, and keeps retrying", async () => {
    const ghost = "10.77.0.99";
    const d = await net.daemon(C, [
      "--addr",
      "0.0.0.0:7711",
      "--key",
      net.keyFile,
      "--join",
      `circuit://${ghost}:7711`,
    ]);
    const line = new RegExp(`join circuit://${re(ghost)}:7711: unreachable \\(.*\\); retrying every ≤30 s`);
    await net.until(
      "the reason on stderr",
      10_000,
      () => d.stderr(),
      (s) => line.test(s),
    );
    assert.ok(Date.now() - d.startedAt < 10_000, `within the 10 s handshake time:\n${d.stderr()}`);
    // Tries at 0, 1 and 3 s fail alike; then the address comes to life (on B, whose daemon
    // listens on [::]) and a later try joins.
    await sleep(3500);
    const b = await net.daemon(B, ["--addr", "[::]:7711", "--key", net.keyFile, "--join", `circuit://${A.v4}:7711`]);
    ip("-n", B.ns, "addr", "add", `${ghost}/24`, "dev", B.dev);
    await net.until(
      "a later try joins",
      20_000,
      () => d.stderr(),
      (s) => new RegExp(`joined circuit://${re(ghost)}:7711 \\(\\d members\\)`).test(s),
    );
    assert.equal(count(d.stderr(), line), 1, `said once, not once per try:\n${d.stderr()}`);
    const all = [a, b, d]
      .map((x) => `/${x.id}`)
      .sort()
      .join(" ");
    await net.until(
      "A sees all three",
      10_000,
      () => net.view(A, a.url),
      (v) => v === all,
    );
    d.proc.kill("SIGKILL");
    b.proc.kill("SIGKILL");
  });

  test("a join with another cluster key says the key was refused", async () => {
    const other = join(net.dir, "other-key");
    net.writeKey(other);
    const d = await net.daemon(C, ["--addr", "0.0.0.0:7712", "--key", other, "--join", `circuit://${A.v4}:7711`]);
    await net.until(
      "the reason on stderr",
      10_000,
      () => d.stderr(),
      (s) => new RegExp(`join circuit://${re(A.v4)}:7711: refused our cluster key`).test(s),
    );
    d.proc.kill("SIGKILL");
  });
});
