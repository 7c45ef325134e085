// `node --import tsx bench/value-check.ts`: what refusing values that would not come back exactly
// (src/wire/value-check.ts) costs on the send path, beside the codec's own encoding of the same
// values in the same run. Writes bench/results/value-check.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encode } from "../src/wire/protocol.ts";
import { checkValue } from "../src/wire/value-check.ts";
import { repoRoot } from "./harness.ts";

const values: Record<string, unknown> = {
  "small object": { who: "p7", k: 4711, ok: true },
  "job object": {
    id: "job-000123",
    at: new Date(1_700_000_000_000),
    attempts: 3,
    priority: 0.75,
    tags: ["render", "gpu", "eu-west"],
    owner: { name: "ada", uid: 1001, groups: ["staff", "render"] },
    size: 123456789n,
  },
  "100 numbers": Array.from({ length: 100 }, (_, i) => i * 1.5),
  "short string": "hello, circuit",
};

/** This process's CPU time in ms: steadier than the wall clock on a machine shared with other work. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Calls per second of CPU time. */
function rate(fn: () => void, ms = 300): number {
  for (let i = 0; i < 20_000; i++) fn();
  let n = 0;
  const t0 = cpuMs();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < 5000; i++) fn();
    n += 5000;
    t = cpuMs();
  }
  return (n / (t - t0)) * 1000;
}

const rows = [];
for (const [name, v] of Object.entries(values)) {
  // Alternate rounds so that both sides see the same machine state; keep the best of three.
  const enc: number[] = [];
  const both: number[] = [];
  const check: number[] = [];
  for (let r = 0; r < 3; r++) {
    enc.push(rate(() => encode(v)));
    both.push(
      rate(() => {
        checkValue(v);
        encode(v);
      }),
    );
    check.push(rate(() => checkValue(v)));
  }
  const e = Math.max(...enc);
  const b = Math.max(...both);
  const c = Math.max(...check);
  rows.push({
    value: name,
    encodePerSec: e,
    checkAndEncodePerSec: b,
    checkPerSec: c,
    nsPerCheck: 1e9 / c,
    slowdown: e / b,
  });
}
console.log("value          encode/s      check+encode/s   check alone   slowdown");
for (const r of rows) {
  const f = (x: number) => `${(x / 1e6).toFixed(2)} M`.padStart(10);
  console.log(
    `${r.value.padEnd(14)} ${f(r.encodePerSec)}    ${f(r.checkAndEncodePerSec)}      ${r.nsPerCheck.toFixed(0).padStart(5)} ns   ${((r.slowdown - 1) * 100).toFixed(1)} %`,
  );
}
const dir = join(repoRoot, "bench", "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "value-check.json"), `${JSON.stringify({ at: new Date().toISOString(), rows }, null, 2)}\n`);
