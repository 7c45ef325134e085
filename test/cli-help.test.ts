// The CLI helps a person who got something slightly wrong, and a program that reads its output:
// typos get the nearest command or option, a refused dial says how to get a daemon, keygen never
// overwrites a key, --json output is structured (ls -l states as objects), and `circuit completion`
// writes bash and zsh scripts that complete commands, options and live anchor paths.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { dial } from "../src/index.ts";
import { CLI, type Daemon, killAll, runCli, spawnCli, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let dialArgs: string[];
const tmp = mkdtempSync(join(tmpdir(), "circuit-cli-help-"));

before(async () => {
  d = await startDaemon();
  dialArgs = ["-d", d.url.slice(0, d.url.lastIndexOf("/"))];
});

after(async () => {
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

async function ok(args: string[], input?: string): Promise<string> {
  const r = await runCli([...dialArgs, ...args], { input });
  assert.equal(r.code, 0, `circuit ${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
  return r.stdout.toString();
}

test("a mistyped command or option gets one line naming the nearest one, exit 2", async () => {
  const cases: [string[], string][] = [
    [["sned", "/x"], "circuit: unknown command 'sned' (did you mean send?)\n"],
    [["mkpoc"], "circuit: unknown command 'mkpoc' (did you mean mkproc?)\n"],
    [["ls", "--lnog", "/"], "circuit: unknown option '--lnog' (did you mean --long?)\n"],
    [["--jsno", "ls", "/"], "circuit: unknown option '--jsno' (did you mean --json?)\n"],
    [["ls", "--jsno", "/"], "circuit: unknown option '--jsno' (did you mean --json?)\n"],
    [["recv", "--timout", "5", "/x"], "circuit: unknown option '--timout' (did you mean --timeout?)\n"],
    [["fs", "lss"], "circuit: unknown command 'lss' (did you mean ls?)\n"],
  ];
  for (const [args, line] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stderr, line);
  }
  // Nothing close: no guess.
  const r = await runCli(["frobnicate"]);
  assert.equal(r.stderr, "circuit: unknown command 'frobnicate'\n");
});

test("a command line builds only the command it names, and every command answers under its own name", async () => {
  // `circuit --help` builds every command; `circuit NAME --help` builds only NAME (src/cli/main.ts),
  // so a command registered under another name than the one it is found by would be unknown here.
  const all = await runCli(["--help"]);
  assert.equal(all.code, 0);
  const names = [...all.stdout.toString().matchAll(/^ {2}([a-z@]+) /gm)]
    .map((m) => m[1] as string)
    .filter((n) => n !== "help");
  assert.ok(names.length >= 28, `commands listed: ${names.join(" ")}`);
  for (let i = 0; i < names.length; i += 4) {
    await Promise.all(
      names.slice(i, i + 4).map(async (name) => {
        const r = await runCli([...dialArgs, "--json", name, "--help"]);
        assert.equal(r.code, 0, `circuit ${name} --help: exit ${r.code}, stderr ${r.stderr}`);
        assert.match(r.stdout.toString(), new RegExp(`^Usage: circuit ${name} `), name);
      }),
    );
  }
  // A global option's value is not taken for the command; a registrar's own name is no command.
  const v = await runCli(["--key", "send", "ls", "--help"]);
  assert.match(v.stdout.toString(), /^Usage: circuit ls /);
  const r = await runCli(["mksub"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^circuit: unknown command 'mksub'/);
});

test("a refused dial says how to get a daemon; keygen onto an existing file says so in one line", async () => {
  const r = await runCli(["-d", "circuit://127.0.0.1:9", "ls", "/"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^circuit: ServerGone: cannot reach a circuit server at 127\.0\.0\.1:9: ECONNREFUSED/);
  assert.match(r.stderr, /start one with `circuit start`, or name another with -d URL or CIRCUIT\)\n$/);
  assert.equal(r.stderr.split("\n").length, 2);

  const file = join(tmp, "k");
  writeFileSync(file, "precious\n");
  const k = await runCli(["keygen", file]);
  assert.equal(k.code, 1);
  assert.equal(
    k.stderr,
    `circuit: keygen: ${file} already exists; not overwritten (remove it first, or name another file)\n`,
  );
  assert.equal(readFileSync(file, "utf8"), "precious\n");
  const fresh = join(tmp, "k2");
  assert.deepEqual(JSON.parse(await ok(["--json", "keygen", fresh])), { file: fresh });
  assert.match(readFileSync(fresh, "utf8"), /^[0-9a-f]{64}\n$/);
  assert.match(JSON.parse(await ok(["keygen", "--json"])).key, /^[0-9a-f]{64}$/);
});

test("--json: ls -l states are objects; mkchan, mkchan --open and ports --reserve answer in JSON", async () => {
  const base = `/${d.id}/j`;
  assert.deepEqual(JSON.parse(await ok(["--json", "mkchan", `${base}/q`, "3"])), { path: `${base}/q`, cap: 3 });
  // --open: the channel that is there, whatever its capacity; a plain mkchan is refused.
  assert.deepEqual(JSON.parse(await ok(["mkchan", "--open", "--json", `${base}/q`, "9"])), {
    path: `${base}/q`,
    cap: 3,
  });
  const busy = await runCli([...dialArgs, "mkchan", `${base}/q`, "9"]);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /^circuit: AnchorBusy: /);
  await ok(["send", `${base}/q`], "x");
  await ok(["mkproc", `${base}/p`, "--", "sleep", "30"]);
  await ok(["mk@join", `${base}/s`]);

  const list = JSON.parse(await ok(["ls", "-l", "--json", base])) as {
    path: string;
    kind: string;
    state: string;
    stat: Record<string, unknown>;
  }[];
  const at = (name: string) => list.find((e) => e.path === `${base}/${name}`);
  assert.equal(at("q")?.kind, "chan");
  assert.equal(at("q")?.stat.cap, 3);
  assert.equal(at("q")?.stat.len, 1);
  assert.equal(at("q")?.stat.closed, false);
  assert.equal(at("p")?.kind, "proc");
  assert.equal(typeof at("p")?.stat.pid, "number");
  assert.equal(at("p")?.stat.phase, "running");
  assert.equal(at("s")?.stat.source, "@join");
  assert.equal(at("s")?.stat.pending, 1);
  const servers = JSON.parse(await ok(["--json", "ls", "-l", "/"])) as { path: string; stat: { url: string } }[];
  assert.deepEqual(
    servers.map((s) => [s.path, s.stat.url]),
    [[`/${d.id}`, d.url]],
  );
  // Without --json the same listing stays one aligned line per element.
  assert.match(await ok(["ls", "-l", base]), new RegExp(`^${base}/p +proc +pid=\\d+ running$`, "m"));

  // A stream message (sent by a program) comes out of recv --json as base64, like any byte value.
  const client = await dial(d.url);
  try {
    const w = (await client.walk(`${base}/bytes`).makeChan(1)).sendStream();
    w.end(Buffer.from("streamed bytes"));
    assert.deepEqual(JSON.parse(await ok(["recv", "--json", `${base}/bytes`])), {
      $bytes: Buffer.from("streamed bytes").toString("base64"),
    });
    await w.sent;
  } finally {
    await client.close();
  }

  // start --json: the first line is still the daemon's address, as one line of JSON.
  const started = spawnCli(["--json", "start", "--addr", "127.0.0.1:0"]);
  const [chunk] = (await once(started.stdout!, "data")) as [Buffer];
  const line = chunk.toString();
  started.kill("SIGTERM");
  const first = JSON.parse(line.split("\n")[0] as string) as { url: string; id: string };
  assert.match(first.url, /^circuit:\/\/127\.0\.0\.1:\d+\/X[0-9a-f]{16}$/);
  assert.equal(first.url.endsWith(`/${first.id}`), true);
  assert.equal((await started.result).code, 0);

  const reserved = JSON.parse(await ok(["--json", "ports", "--reserve", `/${d.id}`])) as { port: number };
  assert.ok(Number.isInteger(reserved.port) && reserved.port > 0);
  await ok(["scrub", `${base}/p`]);
});

/** The completions bash offers for `line` (the last word is the one being completed). */
function bashComplete(script: string, words: string[]): string[] {
  const r = spawnSync(
    "bash",
    [
      "-c",
      `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _circuit; printf '%s\\n' "\${COMPREPLY[@]}"`,
      "_",
      script,
      ...words,
    ],
    { encoding: "utf8", env: { ...process.env, PATH: `${binDir()}:${process.env.PATH}` } },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean).sort();
}

/** The completions zsh offers: the script's own function, with compadd filtering by the typed prefix. */
function zshComplete(script: string, words: string[]): string[] {
  const stub = `compdef() { :; }
compadd() { local s; while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -S ]] && shift; shift; done; [[ $1 == -- ]] && shift
  for s in "$@"; do [[ $s == "$PREFIX"* ]] && print -r -- "$s"; done; }
_files() { print -r -- FILES; }`;
  const r = spawnSync(
    "zsh",
    [
      "-f",
      "-c",
      `${stub}\nsource "$1"; shift; words=("$@"); CURRENT=$#; PREFIX="\${words[CURRENT]}"; _circuit`,
      "_",
      script,
      ...words,
    ],
    { encoding: "utf8", env: { ...process.env, PATH: `${binDir()}:${process.env.PATH}` } },
  );
  assert.equal(r.error, undefined, "zsh is needed for this test (.ci/run installs it)");
  // Its status is that of the last test inside compadd; an error would show on stderr.
  assert.equal(r.stderr, "");
  return r.stdout.split("\n").filter(Boolean).sort();
}

/** A directory holding a `circuit` that runs the CLI under test, as an installed one would. */
function binDir(): string {
  const dir = join(tmp, "bin");
  spawnSync("mkdir", ["-p", dir]);
  writeFileSync(join(dir, "circuit"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  return dir;
}

test("circuit completion bash|zsh completes commands, options, subcommands and live anchor paths", async () => {
  const base = `/${d.id}/comp`;
  await ok(["mkchan", `${base}/jobs`, "1"]);
  await ok(["mkchan", `${base}/junk`, "1"]);
  for (const [shell, complete] of [
    ["bash", bashComplete],
    ["zsh", zshComplete],
  ] as const) {
    const file = join(tmp, `c.${shell}`);
    writeFileSync(file, await ok(["completion", shell]));
    assert.deepEqual(complete(file, ["circuit", "se"]), ["send", "set"], shell);
    assert.deepEqual(complete(file, ["circuit", "-d", "x", "mkp"]), ["mkproc"], shell);
    assert.deepEqual(complete(file, ["circuit", "ls", "--l"]), ["--long"], shell);
    assert.deepEqual(complete(file, ["circuit", "--js"]), ["--json"], shell);
    assert.deepEqual(complete(file, ["circuit", "fs", "s"]), ["stat"], shell);
    assert.deepEqual(complete(file, ["circuit", "mkchan", "--o"]), ["--open"], shell);
    assert.deepEqual(
      complete(file, ["circuit", ...dialArgs, "recv", `${base}/j`]),
      [`${base}/jobs`, `${base}/junk`],
      shell,
    );
  }
  const bad = await runCli(["completion", "fish"]);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'circuit: completion: no script for "fish": bash or zsh\n');
});
