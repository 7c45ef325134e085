// test-runner: heavy (three servers and a burst of 20,000 jobs)
// examples/worker-pool, run the way the README says (smaller, so that it stays well within the
// per-file bound on a loaded machine): the pool scales up on the burst, survives the kill -9 of a
// server, processes every job and scales back down to one worker.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, test } from "node:test";
import { exited, killAll, ROOT } from "./helpers/daemon.ts";

after(killAll);

test("worker-pool example: burst, scale up, kill -9 a server, every job processed, scale down", async () => {
  const p = spawn(process.execPath, ["--import", "tsx", "examples/worker-pool/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, JOBS: "3000", MAX: "4", PER_REPLICA: "500", COOLDOWN_MS: "1500", TIMEOUT_S: "45" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  // TERM first: the example then kills its daemons (they would outlive a KILLed example).
  const t = setTimeout(() => p.kill("SIGTERM"), 50_000);
  const k = setTimeout(() => p.kill("SIGKILL"), 55_000);
  const r = await exited(p);
  clearTimeout(t);
  clearTimeout(k);
  assert.equal(r.code, 0, `exit ${r.code}\n${out}\n${err}`);
  assert.match(out, /service: scale: scaled up from 1 to [2-4]/);
  assert.match(out, /kill -9 server [BC] \(X[0-9a-f]{16}\) with \d+ workers on it/);
  assert.match(out, /workers of [BC] running elsewhere after \d+ ms/);
  assert.match(out, /all 3000 jobs processed/);
  assert.match(out, /scaled back down to 1 worker: 1\/1 workers/);
  // The pool really grew beyond one worker on more than one server before the kill.
  assert.match(out, /\d\/[2-4] workers \[[ABC]:\d [ABC]:\d/);
});
