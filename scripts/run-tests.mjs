#!/usr/bin/env node
// Lists the test files and hands them to node's test runner through tsx. Node 20's runner finds no
// .ts files by itself and then exits 0, so an empty list is an error here, and every test gets a
// timeout so that a hang fails instead of blocking CI.
//
// Two phases. Files whose first line says `// test-runner: alone (why)` measure time, memory or
// failure detection, or load the machine themselves (a NATS cluster, a browser, namespaces): on a
// 2-core machine two of them side by side make each other's bounds meaningless, so they run one at
// a time, after the others. The others run two at a time (TEST_CONCURRENCY sets how many; 1 runs
// every file alone).
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filter = process.argv.slice(2);

function list(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...list(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

let files = list(join(root, "test")).sort();
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error("run-tests: no test files found");
  process.exit(1);
}
const reporter = process.env.CI ? ["--test-reporter=tap"] : ["--test-reporter=spec"];
const alone = (f) => readFileSync(f, "utf8").startsWith("// test-runner: alone");
const shared = files.filter((f) => !alone(f));
const solo = files.filter(alone);
const concurrency = process.env.TEST_CONCURRENCY ?? "2";

function run(list, n) {
  if (list.length === 0) return 0;
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", "--test", "--test-timeout=60000", `--test-concurrency=${n}`, ...reporter, ...list],
    { stdio: "inherit", cwd: root },
  );
  return r.status ?? 1;
}

const t0 = performance.now();
const a = run(shared, concurrency);
const t1 = performance.now();
const b = run(solo, 1);
const t2 = performance.now();
const s = (ms) => `${(ms / 1000).toFixed(0)} s`;
console.log(
  `run-tests: ${shared.length} files ${concurrency} at a time in ${s(t1 - t0)} (${a === 0 ? "passed" : "FAILED"}), ` +
    `${solo.length} files alone in ${s(t2 - t1)} (${b === 0 ? "passed" : "FAILED"})`,
);
process.exit(a || b);
