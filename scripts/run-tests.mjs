#!/usr/bin/env node
// Lists the test files and hands them to node's test runner. Node 20's runner finds no .ts files by
// itself and then exits 0, so an empty list is an error here, and every test gets a timeout so
// that a hang fails instead of blocking CI. The TypeScript is compiled once, up front, by esbuild
// (test-loader/compile.mjs), and each test process loads that JavaScript through small module hooks
// (test-loader/hooks.mjs) instead of loading a compiler of its own.
//
// Two phases. Files whose first line says `// test-runner: alone (why)` measure what a neighbour
// would disturb (CPU shares, the daemon's CPU figures, latency under attack) or starve the machine
// on purpose: they run one at a time, after the others. The others run two at a time
// (TEST_CONCURRENCY sets how many; 1 runs every file alone), those whose first line says
// `// test-runner: heavy (why)` first: they take longest or load the machine most, and started
// last they would leave one core idle at the end while they finish.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compile, list } from "./test-loader/compile.mjs";

const root = new URL("..", import.meta.url).pathname;
const filter = process.argv.slice(2);

let files = list(join(root, "test"), (name) => name.endsWith(".test.ts")).sort();
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error("run-tests: no test files found");
  process.exit(1);
}
const reporter = process.env.CI ? ["--test-reporter=tap"] : ["--test-reporter=spec"];
const marker = (f) => /^\/\/ test-runner: (\w+)/.exec(readFileSync(f, "utf8"))?.[1];
const solo = files.filter((f) => marker(f) === "alone");
const shared = [
  ...files.filter((f) => marker(f) === "heavy"),
  ...files.filter((f) => marker(f) !== "alone" && marker(f) !== "heavy"),
];
const concurrency = process.env.TEST_CONCURRENCY ?? "2";

// The runner and every process its tests start (daemons, nats-servers, browsers) run in a process
// group of their own. A test file the runner cuts off at its timeout dies without its exit hooks,
// leaving what it started running: once the runner is done, whatever is left in the group is
// killed. So is the whole group if this script is interrupted (it is not in the terminal's group).
let group = 0;
const killGroup = () => {
  if (group === 0) return;
  try {
    process.kill(-group, "SIGKILL");
  } catch {
    // nothing left in it
  }
};
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    killGroup();
    process.exit(1);
  });
}

// The timeout bounds each test and each file as a whole (the runner counts a file as a test).
function run(list, n, timeoutMs) {
  if (list.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    ["--import", loader, "--test", `--test-timeout=${timeoutMs}`, `--test-concurrency=${n}`, ...reporter, ...list],
    { stdio: "inherit", cwd: root, detached: true },
  );
  group = child.pid ?? 0;
  return new Promise((resolve) => {
    child.once("error", () => resolve(1));
    child.once("exit", (code) => {
      killGroup();
      group = 0;
      resolve(code ?? 1);
    });
  });
}

const loader = join(root, "scripts/test-loader/register.mjs");
const tc = performance.now();
const compiled = await compile();
const t0 = performance.now();
const a = await run(shared, concurrency, 60_000);
const t1 = performance.now();
// The files alone get longer: the store chaos test's chaos, last sends and drain take 30–55 s.
const b = await run(solo, 1, 180_000);
const t2 = performance.now();
const s = (ms) => `${(ms / 1000).toFixed(0)} s`;
console.log(
  `run-tests: ${compiled} TypeScript files compiled in ${s(t0 - tc)}, ` +
    `${shared.length} files ${concurrency} at a time in ${s(t1 - t0)} (${a === 0 ? "passed" : "FAILED"}), ` +
    `${solo.length} files alone in ${s(t2 - t1)} (${b === 0 ? "passed" : "FAILED"})`,
);
process.exit(a || b);
