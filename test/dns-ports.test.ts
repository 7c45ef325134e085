// The ports of nameservers: a busy one and a non-loopback one without a key are refused; scrub and
// a stopping daemon give them back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { dig } from "./helpers/dig.ts";
import { cli, ok, portIsFree, portOf, setAll, withLib } from "./helpers/dns.ts";

after(killAll);

describe("nameserver ports", () => {
  let d: Daemon;
  let ns: string;
  let addr: string;

  before(async () => {
    d = await startDaemon();
    ns = `/${d.id}/dns/main`;
    addr = (await ok(d, ["mkdns", ns])).trim();
    await setAll(d, ns, ["web.circuit. 60 IN A 10.0.0.5"]);
  });

  test("a busy port and a non-loopback address without a key are refused, leaving no element", async () => {
    const [busy, open] = await Promise.all([
      cli(d, ["mkdns", `/${d.id}/dns/busy`, addr]),
      cli(d, ["mkdns", `/${d.id}/dns/open`, "0.0.0.0:0"]),
    ]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /^circuit: AddressInUse: /);
    assert.equal(open.code, 1);
    assert.match(open.stderr, /^circuit: AccessDenied: .*--insecure/);
    assert.equal((await ok(d, ["ls", `/${d.id}/dns`])).trim(), ns);
  });

  test("scrub stops the server and frees its port", async () => {
    const p = `/${d.id}/dns/temp`;
    const a = (await ok(d, ["mkdns", p])).trim();
    await setAll(d, p, ["t.circuit. A 10.0.0.1"]);
    assert.equal((await dig(a, "t.circuit", "A")).answers.length, 1);
    await ok(d, ["scrub", p]);
    await portIsFree(portOf(a));
    assert.equal(await withLib(d, (c) => c.walk(p).get()), null);
    // The other nameserver is untouched.
    assert.equal((await dig(addr, "web.circuit", "A")).answers.length, 1);
  });

  test("a daemon started with --insecure may serve DNS beyond loopback; stopping it frees the port", async () => {
    const d2 = await startDaemon(["--insecure"]);
    const a = (await ok(d2, ["mkdns", `/${d2.id}/ns`, "0.0.0.0:0"])).trim();
    assert.match(a, /^0\.0\.0\.0:\d+$/);
    await setAll(d2, `/${d2.id}/ns`, ["wide.circuit. A 10.3.0.1"]);
    assert.equal((await dig(`127.0.0.1:${portOf(a)}`, "wide.circuit", "A")).answers[0]?.data, "10.3.0.1");
    const t0 = performance.now();
    await d2.stop();
    const { code, signal } = await d2.exited;
    assert.equal(signal, null, "the daemon exited by itself, not killed after the grace time");
    assert.equal(code, 0);
    assert.ok(performance.now() - t0 < 5000);
    await portIsFree(portOf(a));
  });
});
