#!/usr/bin/env node
// Lists the test files and hands them to node's test runner through tsx. Node 20's runner finds no
// .ts files by itself and then exits 0, so an empty list is an error here, and every test gets a
// timeout so that a hang fails instead of blocking CI. Files run one at a time by default: many of
// them start daemons and measure timing (failure detection, latency under attack), and on a
// 2-core machine two such files side by side make each other's bounds meaningless
// (TEST_CONCURRENCY=2 halves the run time on a quiet machine).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
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
const r = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-timeout=60000",
    `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 1}`,
    ...reporter,
    ...files,
  ],
  { stdio: "inherit", cwd: root },
);
process.exit(r.status ?? 1);
