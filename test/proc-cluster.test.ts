// test-runner: heavy (failure-detection bounds)
// Processes across servers: a client dialled into one server runs and watches processes on
// another, and when that server dies its waiters and readers get ServerGone. Plus the examples
// (wait-all, wait-first, watchbot), run the way the README says.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, dial, type Proc, ServerGone } from "../src/index.ts";
import { circuit } from "./helpers/circuit.ts";
import { exited, killAll, ROOT } from "./helpers/daemon.ts";

after(killAll);

const orphans: number[] = [];
after(() => {
  // A process whose daemon was killed -9 runs on; the test that made it cleans it up.
  for (const pid of orphans) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Runs an example script; resolves with its exit code and output. */
function example(args: string[], onLine?: (line: string, p: ChildProcess) => void) {
  const p = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let partial = "";
  p.stdout.setEncoding("utf8").on("data", (s: string) => {
    out += s;
    partial += s;
    let nl = partial.indexOf("\n");
    while (nl >= 0) {
      onLine?.(partial.slice(0, nl), p);
      partial = partial.slice(nl + 1);
      nl = partial.indexOf("\n");
    }
  });
  p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
  return exited(p).then((r) => {
    clearTimeout(t);
    return { ...r, out, err };
  });
}

describe("processes across servers", () => {
  test("a client dialled into A runs a process on B; when B is killed -9, its waiter and reader get ServerGone", async () => {
    const [a, b] = await circuit(2);
    let c: Client | undefined;
    try {
      c = await dial(a!.url);
      const p: Proc = await c.walk(`/${b!.id}/jobs/sleeper`).makeProc({
        path: "sh",
        args: ["-c", "echo started; sleep 30"],
      });
      orphans.push(p.pid);
      assert.equal((await c.walk(`/${b!.id}/jobs/sleeper`).peek()) !== null, true);
      const out = p.stdout;
      out.on("error", () => {});
      const firstLine = new Promise<string>((resolve) => out.once("data", (b: Buffer) => resolve(b.toString())));
      assert.equal(await firstLine, "started\n");
      const waiting = p.wait();
      const ended = new Promise<Error | undefined>((resolve) => {
        out.once("error", resolve);
        out.once("end", () => resolve(undefined));
      });
      await sleep(100);
      const t0 = Date.now();
      b!.kill("SIGKILL");
      await assert.rejects(waiting, ServerGone);
      const took = Date.now() - t0;
      assert.ok(took < 2000, `ServerGone after ${took} ms`);
      assert.ok((await ended) instanceof ServerGone, "the output reader fails too");
    } finally {
      await c?.close();
      await Promise.all([a!.stop(), b!.stop()]);
    }
  });
});

describe("examples", () => {
  test("wait-all starts a process on every server and waits for all", async () => {
    const r = await example(["examples/wait-all/main.ts"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^all 3 exited/m);
    assert.equal(r.out.match(/: exit 0: hello from pid \d+/g)?.length, 3, r.out);
  });

  test("wait-first takes the first to finish and kills the rest", async () => {
    const r = await example(["examples/wait-first/main.ts"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^first: \/X[0-9a-f]{16}\/wait-first-\d+ exited 0/m);
    assert.equal(r.out.match(/^killed: .* signaled SIGTERM$/gm)?.length, 2, r.out);
  });

  test("watchbot (its own demo) moves the process when its server stops", async () => {
    const r = await example(["examples/watchbot/main.ts"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /watchbot: done after 1 move\(s\)/);
  });

  test("watchbot moves the process to another server when its server is killed -9", async () => {
    const ds = await circuit(3);
    try {
      const started: string[] = [];
      const r = await example(["examples/watchbot/main.ts", ds[0]!.url, "--moves", "1"], (line) => {
        const m = /^started \/(X[0-9a-f]{16})\/\S+ pid (\d+)$/.exec(line);
        if (!m) return;
        orphans.push(Number(m[2]));
        started.push(m[1]!);
        // The first start: kill its server the hard way.
        if (started.length === 1) ds.find((d) => d.id === m[1])?.kill("SIGKILL");
      });
      assert.equal(r.code, 0, `${r.out}\n${r.err}`);
      assert.equal(started.length, 2, r.out);
      assert.notEqual(started[0], started[1], "the process moved to another server");
      assert.notEqual(started[0], ds[0]!.id, "the supervisor keeps the process off its dial-in server");
      assert.match(r.out, /lost X[0-9a-f]{16}: moving/);
    } finally {
      await Promise.all(ds.map((d) => d.stop()));
    }
  });
});
