// The published command (dist/cli/circuit.cjs) compiles the bundled command line through V8's code
// cache: one file per command in the user's cache directory, written when missing or refused,
// never read from a directory others may write to, off with CIRCUIT_CACHE_DIR=off. Whatever the
// cache holds, the command does the same thing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stampBundle } from "../scripts/bundle-stamp.mjs";
import { CLI, type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";

const tmp = mkdtempSync(join(tmpdir(), "circuit-cli-cache-"));
const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version;
let d: Daemon;
let dialArgs: string[];
let path: string;

before(async () => {
  d = await startDaemon();
  dialArgs = ["-d", d.url.slice(0, d.url.lastIndexOf("/"))];
  path = `/${d.url.slice(d.url.lastIndexOf("/") + 1)}/q`;
  const r = await runCli([...dialArgs, "mkchan", path, "100"]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

/** `circuit send` then `circuit recv` of one value with this cache directory: the value comes back. */
async function roundTrip(cacheDir: string, value: string): Promise<void> {
  const env = { CIRCUIT_CACHE_DIR: cacheDir };
  const s = await runCli([...dialArgs, "send", path], { input: value, env });
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stderr, "");
  const r = await runCli([...dialArgs, "recv", path], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), value);
}

const cacheFile = (dir: string, command: string) => join(dir, `${command}-${process.version}-${process.arch}.v8cache`);

test("each command writes its cache once, readable only by its user, and runs the same from it", async () => {
  const dir = join(tmp, "fresh", "circuit-ts");
  await roundTrip(dir, "first");
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.deepEqual(
    readdirSync(dir).sort(),
    [cacheFile(dir, "recv"), cacheFile(dir, "send")].map((f) => f.slice(dir.length + 1)),
  );
  const sent = statSync(cacheFile(dir, "send"));
  assert.equal(sent.mode & 0o777, 0o600);
  assert.ok(sent.size > 10_000, `a cache of the functions send compiled (${sent.size} bytes)`);
  // From the cache: the same results, and the cache is left as it is (accepted, not rewritten).
  await roundTrip(dir, "second");
  assert.equal(statSync(cacheFile(dir, "send")).mtimeMs, sent.mtimeMs);
  const v = await runCli(["--version"], { env: { CIRCUIT_CACHE_DIR: dir } });
  assert.equal(v.stdout.toString().trim(), version);
});

test("a cache V8 refuses (corrupt, or from another build) is replaced and the command still works", async () => {
  const dir = join(tmp, "corrupt");
  await roundTrip(dir, "before");
  const garbage = Buffer.alloc(4096, 0x5a);
  writeFileSync(cacheFile(dir, "send"), garbage, { mode: 0o600 });
  await roundTrip(dir, "after");
  assert.notDeepEqual(readFileSync(cacheFile(dir, "send")), garbage);
  assert.ok(statSync(cacheFile(dir, "send")).size > 10_000);
});

test("a bundle changed at the same length (a new version string) does not run the old one's cache", () => {
  // V8 checks a cache against the source's length only: each cache begins with the stamp of the
  // bundle it came from (scripts/bundle-stamp.mjs), and one from another bundle is not used.
  const bin = join(tmp, "bin");
  mkdirSync(bin);
  for (const f of ["circuit.cjs", "main.cjs"]) copyFileSync(join(CLI, "..", f), join(bin, f));
  const dir = join(tmp, "upgrade", "circuit-ts");
  const run = () =>
    spawnSync(process.execPath, [join(bin, "circuit.cjs"), "--version"], {
      env: { ...process.env, CIRCUIT_CACHE_DIR: dir },
      encoding: "utf8",
    });
  assert.equal(run().stdout.trim(), version);
  assert.equal(run().stdout.trim(), version);
  const main = join(bin, "main.cjs");
  const stamp = /([0-9a-f]{32})\n$/.exec(readFileSync(main, "latin1"))?.[1] as string;
  assert.equal(readFileSync(cacheFile(dir, "none")).toString("latin1", 0, 32), stamp);
  // The next version, the same length: the rebuilt bundle gets a stamp of its own.
  const next = version.replace(/\d/g, "9");
  const before = readFileSync(main, "latin1");
  assert.ok(before.includes(`"${version}"`));
  writeFileSync(main, before.replace(`"${version}"`, `"${next}"`), "latin1");
  const newStamp = stampBundle(main);
  assert.equal(readFileSync(main).length, Buffer.byteLength(before, "latin1"));
  assert.notEqual(newStamp, stamp);
  assert.equal(run().stdout.trim(), next);
  assert.equal(readFileSync(cacheFile(dir, "none")).toString("latin1", 0, 32), newStamp);
  assert.equal(run().stdout.trim(), next);
});

test("a cache directory others may write to is neither read nor written; CIRCUIT_CACHE_DIR=off uses none", async () => {
  const open = join(tmp, "open");
  await roundTrip(open, "one");
  const planted = Buffer.alloc(4096, 0x41);
  writeFileSync(cacheFile(open, "send"), planted, { mode: 0o600 });
  chmodSync(open, 0o777);
  await roundTrip(open, "two");
  // Untouched: not read (it would have been refused and replaced) and nothing new written.
  assert.deepEqual(readFileSync(cacheFile(open, "send")), planted);
  assert.deepEqual(
    readdirSync(open).sort(),
    ["recv", "send"].map((c) => cacheFile(open, c).slice(open.length + 1)),
  );

  const home = join(tmp, "home");
  const s = await runCli([...dialArgs, "send", path], {
    input: "three",
    env: { CIRCUIT_CACHE_DIR: "off", XDG_CACHE_HOME: home, HOME: home },
  });
  assert.equal(s.code, 0, s.stderr);
  assert.throws(() => readdirSync(home), /ENOENT/);
  const r = await runCli([...dialArgs, "recv", path]);
  assert.equal(r.stdout.toString(), "three");
});

test("circuit start through the published command runs the ES modules, not the bundle: a bad option exits 2 with one line", async () => {
  const dir = join(tmp, "start");
  const bad = await runCli(["start", "--max-value", "lots"], { env: { CIRCUIT_CACHE_DIR: dir } });
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, "circuit: --max-value takes a positive whole number\n");
  const again = await runCli(["start", "--addr", "256.0.0.1:0"], { env: { CIRCUIT_CACHE_DIR: dir } });
  assert.equal(again.code, 2, again.stderr);
  assert.match(again.stderr, /^circuit: .+\n$/);
  // The daemon keeps no bundle in its memory: start compiled none, so it wrote no cache.
  assert.throws(() => statSync(cacheFile(dir, "start")), /ENOENT/);
  // A command that dials still runs from the bundle and its cache.
  const ls = await runCli(["-d", d.url, "ls", "/"], { env: { CIRCUIT_CACHE_DIR: dir } });
  assert.equal(ls.code, 0, ls.stderr);
  assert.ok(statSync(cacheFile(dir, "ls")).size > 0);
});
