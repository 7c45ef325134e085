// The process and host-resource commands of the built `circuit` CLI, driven as a user would: one
// OS process per command against a real daemon. Exit codes 0/1/2 (DESIGN.md §8), one-line errors.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type CliResult,
  type Daemon,
  killAll,
  type RunCliOptions,
  runCli,
  spawnCli,
  startDaemon,
} from "./helpers/daemon.ts";
import { alive } from "./helpers/streams.ts";

after(killAll);

const root = mkdtempSync(join(tmpdir(), "circuit-cli-fs-"));
let d: Daemon;
let n = 0;
const path = (name: string) => `/${d.id}/cli/${name}-${++n}`;
const run = (args: string[], opts?: RunCliOptions) => runCli(["-d", d.url, ...args], opts);

before(async () => {
  d = await startDaemon(["--fs-root", root]);
});
after(async () => {
  await d?.stop();
  rmSync(root, { recursive: true, force: true });
});

function ok(r: CliResult): string {
  assert.equal(r.code, 0, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
  return r.stdout.toString();
}

function fails(r: CliResult, exit: 1 | 2, pattern: RegExp): void {
  assert.equal(r.code, exit, `exit ${r.code}; stdout: ${r.stdout}; stderr: ${r.stderr}`);
  assert.match(r.stderr, /^circuit: [^\n]+\n$/, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, pattern);
}

describe("circuit process commands", () => {
  test("mkproc -- CMD, stdout, stderr, wait (exit 0 whatever the exit code), peek and ls -l", async () => {
    const p = path("job");
    ok(await run(["mkproc", p, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]));
    const st = JSON.parse(ok(await run(["wait", p])));
    assert.equal(st.phase, "exited");
    assert.equal(st.exitCode, 3);
    assert.deepEqual(st.cmd.args, ["-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(ok(await run(["stdout", p])), "out\n");
    assert.equal(ok(await run(["stderr", p])), "err\n");
    assert.equal(JSON.parse(ok(await run(["peek", p]))).pid, st.pid);
    assert.match(
      ok(await run(["ls", "-l", p.slice(0, p.lastIndexOf("/"))])),
      new RegExp(`${p}\\s+proc\\s+pid=${st.pid} exited 3`),
    );
    ok(await run(["scrub", p]));
  });

  test("mkproc reads a JSON command from stdin; --json prints the pid", async () => {
    const p = path("json");
    const cmd = { path: "sh", args: ["-c", 'echo "$GREETING"'], env: { GREETING: "hi from json" }, scrub: false };
    const out = JSON.parse(ok(await run(["--json", "mkproc", p], { input: JSON.stringify(cmd) })));
    assert.equal(out.path, p);
    assert.ok(out.pid > 0);
    ok(await run(["wait", p]));
    assert.equal(ok(await run(["stdout", p])), "hi from json\n");
    fails(await run(["mkproc", path("bad")], { input: "{not json" }), 2, /JSON/);
    fails(await run(["mkproc", path("bad")], { input: '{"args": []}' }), 2, /path/);
  });

  test("stdout streams live and stdin is interactive, each in its own CLI process", async () => {
    const p = path("cat");
    ok(await run(["mkproc", p, "--", "cat"]));
    const reader = spawnCli(["-d", d.url, "stdout", p]);
    const writer = spawnCli(["-d", d.url, "stdin", p], { openStdin: true });
    let seen = "";
    reader.stdout!.on("data", (b: Buffer) => (seen += b.toString()));
    for (const line of ["one\n", "two\n"]) {
      writer.stdin!.write(line);
      const t0 = Date.now();
      while (!seen.endsWith(line)) {
        assert.ok(Date.now() - t0 < 5000, `"${line.trim()}" did not come through: ${JSON.stringify(seen)}`);
        await sleep(20);
      }
    }
    writer.stdin!.end();
    assert.equal((await writer.result).code, 0);
    const r = await reader.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(seen, "one\ntwo\n");
    assert.equal(JSON.parse(ok(await run(["wait", p]))).exitCode, 0);
  });

  test("signal: names with or without SIG; an unknown name is a usage error (exit 2)", async () => {
    const p = path("sleeper");
    ok(await run(["mkproc", p, "--", "sleep", "100"]));
    fails(await run(["signal", p, "FOO"]), 2, /^circuit: BadSignal: /);
    fails(await run(["signal", p]), 2, /signal/);
    ok(await run(["signal", p, "STOP"]));
    assert.equal(JSON.parse(ok(await run(["peek", p]))).phase, "stopped");
    ok(await run(["signal", p, "SIGCONT"]));
    ok(await run(["signal", p, "TERM"]));
    const st = JSON.parse(ok(await run(["wait", p])));
    assert.equal(st.phase, "signaled");
    assert.equal(st.signal, "SIGTERM");
  });

  test("wait --timeout expires with exit 1; scrub kills; scrub --keep does not", async () => {
    const p = path("long");
    ok(await run(["mkproc", p, "--", "sleep", "100"]));
    fails(await run(["wait", "--timeout", "300", p]), 1, /Timeout/);
    const pid = JSON.parse(ok(await run(["peek", p]))).pid as number;
    ok(await run(["scrub", p]));
    assert.equal(alive(pid), false);
    fails(await run(["peek", p]), 1, /^circuit: NotFound: /);
    const k = path("kept");
    ok(await run(["mkproc", k, "--", "sleep", "100"]));
    const kpid = JSON.parse(ok(await run(["peek", k]))).pid as number;
    ok(await run(["scrub", "--keep", k]));
    assert.ok(alive(kpid));
    process.kill(kpid, "SIGKILL");
  });

  test("bad commands fail with one line: SpawnFailed (exit 1, anchor empty), wrong kinds, bad paths", async () => {
    const p = path("nothing");
    fails(await run(["mkproc", p, "--", "no-such-program-xyz"]), 1, /^circuit: SpawnFailed: /);
    fails(await run(["peek", p]), 1, /NotFound/);
    const ch = path("chan");
    ok(await run(["mkchan", ch, "1"]));
    fails(await run(["stdout", ch]), 1, /^circuit: WrongKind: /);
    fails(await run(["wait", ch]), 1, /^circuit: WrongKind: /);
    fails(await run(["wait", "nope"]), 2, /path/);
    fails(await run(["mkproc", `/${d.id}`, "--", "true"]), 1, /WrongKind/);
  });
});

describe("circuit host commands", () => {
  test("ports lists the daemon's own port; ports --reserve prints a port number", async () => {
    const port = /:(\d+)\//.exec(d.url)?.[1];
    assert.ok(
      ok(await run(["ports", `/${d.id}`]))
        .split("\n")
        .includes(`127.0.0.1:${port}`),
    );
    assert.match(ok(await run(["ports", "--reserve", `/${d.id}`])), /^\d+\n$/);
    const j = JSON.parse(ok(await run(["--json", "ports", `/${d.id}`])));
    assert.ok(Array.isArray(j) && j.every((p: { port: number }) => typeof p.port === "number"));
  });

  test("fs put, cat, ls and stat; escapes refused; bad targets are usage errors", async () => {
    const X = `/${d.id}`;
    ok(await run(["fs", "put", `${X}:notes/today.txt`], { input: "remember the milk\n" }));
    assert.equal(readFileSync(join(root, "notes", "today.txt"), "utf8"), "remember the milk\n");
    assert.equal(ok(await run(["fs", "cat", `${X}:notes/today.txt`])), "remember the milk\n");
    assert.equal(ok(await run(["fs", "ls", `${X}:`])), "notes/\n");
    assert.match(ok(await run(["fs", "ls", "-l", `${X}:notes`])), /^file\s+18\s+\S+\s+today\.txt\n$/);
    assert.equal(JSON.parse(ok(await run(["fs", "stat", `${X}:notes/today.txt`]))).size, 18);
    fails(await run(["fs", "cat", `${X}:../etc/passwd`]), 1, /^circuit: AccessDenied: /);
    fails(await run(["fs", "cat", `${X}:/etc/passwd`]), 1, /^circuit: AccessDenied: /);
    fails(await run(["fs", "put", `${X}:../x`], { input: "x" }), 1, /^circuit: AccessDenied: /);
    fails(await run(["fs", "cat", `${X}:notes/missing`]), 1, /^circuit: NotFound: /);
    fails(await run(["fs", "cat", "notes/today.txt"]), 2, /XID:PATH/);
  });

  test("start --fs-root with a missing directory is a usage error", async () => {
    fails(
      await runCli(["start", "--addr", "127.0.0.1:0", "--fs-root", "/no/such/dir"], { timeoutMs: 10_000 }),
      2,
      /fs-root/,
    );
  });
});
