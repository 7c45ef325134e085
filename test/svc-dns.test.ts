// A service publishing its replicas in a nameserver (issue #16 with DESIGN.md §3.5, §3.7): A and
// SRV records follow the running replicas as they scale, move and go, as the real `dig` sees them.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dial } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { killAll } from "./helpers/daemon.ts";
import { type DigResult, dig } from "./helpers/dig.ts";

after(killAll);

test("svc with dns keeps A and SRV records of its live replicas current", async (t) => {
  const [a, b] = await circuit(2);
  const c = await dial(a!.url);
  t.after(() => c.close());
  const ns = await c.walk(`/${a!.id}/ns`).makeNameserver();
  const name = "workers.circuit.";
  const svc = await c.walk(`/${a!.id}/svc/workers`).makeService({
    cmd: { path: "sleep", args: ["300"] },
    replicas: 2,
    dns: { nameserver: ns.path, name, port: 8080, ttl: 1 },
  });
  const srv = () => dig(ns.address, name, "SRV");
  const until = async (what: string, ok: (r: DigResult) => boolean): Promise<DigResult> => {
    const t0 = Date.now();
    for (;;) {
      const r = await srv();
      if (ok(r)) return r;
      assert.ok(Date.now() - t0 < 10_000, `${what}: ${r.out}`);
      await sleep(100);
    }
  };
  const targets = (r: DigResult) =>
    r.answers
      .filter((x) => x.type === "SRV")
      .map((x) => x.data)
      .sort();
  let r = await until("2 SRV records", (x) => targets(x).length === 2);
  assert.deepEqual(targets(r), [`0 1 8080 r1.${name}`, `0 1 8080 r2.${name}`]);
  assert.equal(r.answers[0]!.ttl, 1);
  const aRec = await dig(ns.address, `r1.${name}`, "A");
  assert.deepEqual(
    aRec.answers.map((x) => x.data),
    ["127.0.0.1"],
  );
  assert.deepEqual(
    (await dig(ns.address, name, "A")).answers.map((x) => x.data),
    ["127.0.0.1"],
    "one A per address, both servers being on 127.0.0.1",
  );
  // The two replicas are on the two servers; scaling adds and removes records.
  const st = await svc.peek();
  assert.deepEqual(new Set(st.replicas.map((x) => x.server)), new Set([`/${a!.id}`, `/${b!.id}`]));
  await svc.scale(3);
  r = await until("3 SRV records", (x) => targets(x).length === 3);
  assert.ok(targets(r).includes(`0 1 8080 r3.${name}`));
  await svc.scale(1);
  r = await until("1 SRV record", (x) => targets(x).length === 1);
  assert.deepEqual(targets(r), [`0 1 8080 r1.${name}`]);
  assert.equal((await dig(ns.address, `r3.${name}`, "A")).status, "NXDOMAIN");
  // Scrubbed: every record of the service is gone, the nameserver stays.
  await svc.scrub();
  assert.equal((await srv()).status, "NXDOMAIN");
  assert.equal((await dig(ns.address, `r1.${name}`, "A")).status, "NXDOMAIN");
  assert.deepEqual((await ns.peek()).records, []);
  // A bad dns spec is refused before any I/O.
  await assert.rejects(
    c.walk(`/${a!.id}/svc/bad`).makeService({ cmd: { path: "true" }, dns: { nameserver: ns.path, name: "bad name" } }),
    TypeError,
  );
});
