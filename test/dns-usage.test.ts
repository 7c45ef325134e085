// The nameserver commands, given missing, extra or malformed arguments, answer with one line on
// stderr and exit code 2, without touching the network (nobody listens at the dial address, so a
// command that dialled would fail with exit 1 instead). Like cli-usage.test.ts, for mkdns/set/unset.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type CliResult, killAll, runCli } from "./helpers/daemon.ts";

after(killAll);

const ID = "X0123456789abcdef";
const P = `/${ID}/a`;
const DEAD = ["-d", "circuit://127.0.0.1:9"];

const RR = "web.circuit. 60 IN A 10.0.0.5";
const runs: string[][] = [
  ["mkdns"],
  ["mkdns", P, "127.0.0.1:0", "extra"],
  ["mkdns", P, "nonsense"],
  ["mkdns", P, "[::1]"],
  ["set", P],
  ["set", P, RR, "extra"],
  ["set", P.replace(ID, "Xnot-an-id"), RR],
  ["set", P, "web.circuit. A 10.0.0.999"],
  ["set", P, "web.circuit. 60 IN HINFO x y"],
  ["unset", P],
  ["unset", P, "web.circuit.", "extra"],
  ["unset", P, "-web.circuit."],
];

test("mkdns, set and unset: usage errors exit 2 with one line, before dialling", async () => {
  const results: CliResult[] = [];
  // Four at a time: quick on a loaded machine, without starting 18 processes at once.
  for (let i = 0; i < runs.length; i += 4) {
    results.push(
      ...(await Promise.all(runs.slice(i, i + 4).map((args) => runCli([...DEAD, ...args], { timeoutMs: 30_000 })))),
    );
  }
  for (const [i, r] of results.entries()) {
    const what = (runs[i] as string[]).join(" ");
    assert.equal(r.code, 2, `${what}: exit ${r.code}; stderr: ${r.stderr}`);
    assert.match(r.stderr, /^circuit: [^\n]+\n$/, `${what}: one line, got ${JSON.stringify(r.stderr)}`);
    assert.equal(r.stdout.length, 0, what);
  }
});
