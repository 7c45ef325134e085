// The nameserver's commands as a user runs them: mkdns, set, unset, peek, ls -l; what they print
// and their exit codes. (dns-ports.test.ts: the ports they take and give back.)
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { dig } from "./helpers/dig.ts";
import { cli, ok, setAll, withLib } from "./helpers/dns.ts";

after(killAll);

describe("nameserver commands", () => {
  let d: Daemon;
  let ns: string;
  let addr: string;

  before(async () => {
    d = await startDaemon();
    ns = `/${d.id}/dns/main`;
    addr = (await ok(d, ["mkdns", ns])).trim();
    await ok(d, ["set", ns, "web.circuit. 60 IN A 10.0.0.5"]);
    await setAll(d, ns, ['web.circuit. 300 TXT "v=1 hello"']);
  });

  test("peek shows the address and the records; ls -l shows the nameserver", async () => {
    const [peek, ls] = await Promise.all([ok(d, ["peek", ns]), ok(d, ["ls", "-l", `/${d.id}/dns`])]);
    const st = JSON.parse(peek) as { address: string; records: { name: string; rr: string }[] };
    assert.equal(st.address, addr);
    assert.deepEqual(
      st.records.map((r) => r.rr),
      ["web.circuit. 60 IN A 10.0.0.5", 'web.circuit. 300 IN TXT "v=1 hello"'],
    );
    assert.match(ls, new RegExp(`^${ns}\\s+dns\\s+${addr.replace(/\./g, "\\.")} records=2\\n$`));
  });

  test("a CNAME beside other records is refused (exit 1), and the zone is unchanged", async () => {
    const r = await cli(d, ["set", ns, "web.circuit. CNAME elsewhere.circuit."]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^circuit: ProtocolError: web\.circuit\. already has records/);
    assert.equal((await dig(addr, "web.circuit", "A")).answers.length, 1);
  });

  test("unset removes every record of a name; unsetting it again fails with NotFound", async () => {
    await setAll(d, ns, ["gone.circuit. A 10.0.0.7", "gone.circuit. TXT bye"]);
    assert.equal((await dig(addr, "gone.circuit", "TXT")).answers[0]?.data, '"bye"');
    await ok(d, ["unset", ns, "GONE.circuit"]);
    const [a, txt] = await Promise.all([dig(addr, "gone.circuit", "A"), dig(addr, "gone.circuit", "TXT", ["+tcp"])]);
    assert.equal(a.status, "NXDOMAIN");
    assert.equal(txt.status, "NXDOMAIN");
    const again = await cli(d, ["unset", ns, "gone.circuit."]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^circuit: NotFound: .*gone\.circuit\.\n$/);
  });

  test("malformed records, names and addresses are usage errors (exit 2) with one line", async () => {
    const bad = [
      ["set", ns, "web.circuit. A 10.0.0.256"],
      ["set", ns, "web.circuit. 60 IN BOGUS 1"],
      ["set", ns, 'web.circuit. TXT "unterminated'],
      ["unset", ns, "bad..name"],
    ];
    const results = await Promise.all(bad.map((args) => cli(d, args)));
    for (const [i, r] of results.entries()) {
      const what = (bad[i] as string[]).join(" ");
      assert.equal(r.code, 2, `${what}: exit ${r.code}; ${r.stderr}`);
      assert.match(r.stderr, /^circuit: [^\n]+\n$/, what);
    }
    assert.match(results[0]?.stderr ?? "", /bad IPv4 address "10\.0\.0\.256"/);
    // set on something that is not a nameserver is a failed operation, not a usage error.
    await withLib(d, (c) => c.walk(`/${d.id}/dns/chan`).makeChan(1));
    const wrong = await cli(d, ["set", `/${d.id}/dns/chan`, "a.circuit. A 10.0.0.1"]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^circuit: WrongKind: /);
    await withLib(d, (c) => c.walk(`/${d.id}/dns/chan`).scrub());
  });
});
