#!/usr/bin/env node
// The `circuit` command (package.json "bin"): runs the command line bundled as one CommonJS file
// (main.cjs, made by scripts/bundle-cli.mjs from main.js), compiled through V8's code cache when
// one is at hand. Node 20 has no compile cache of its own (22 has module.enableCompileCache), and
// compiling the bundle is a good part of what a command costs above Node's own start-up.
//
// The cache is V8's own bytes for this bundle, one file per command, Node version and architecture, in
// $CIRCUIT_CACHE_DIR, else $XDG_CACHE_HOME/circuit-ts, else ~/.cache/circuit-ts. V8 checks it
// against its own version and flags and the source's length, and refuses it when they differ; the
// cache also begins with the bundle's stamp (stampOf), and one from another bundle is not used,
// whatever its length. The command then compiles as usual and writes the cache again when it
// exits. Code is run from the cache only from a directory that belongs to this user
// and that nobody else may write to; CIRCUIT_CACHE_DIR=off turns the cache off.

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import * as vm from "node:vm";

const bundle = path.join(__dirname, "main.cjs");

/** This user's cache directory, made if missing; undefined when there is none we may trust. */
function cacheDir(): string | undefined {
  const env = process.env.CIRCUIT_CACHE_DIR;
  // Without user ids (Windows) there is no telling whose files these are: no cache.
  if (env === "off" || process.getuid === undefined) return undefined;
  const xdg = process.env.XDG_CACHE_HOME;
  // $HOME is what os.homedir() reads first; node:os loads only when it is not set.
  const home = (): string => process.env.HOME || (require("node:os") as typeof import("node:os")).homedir();
  const dir = env || (xdg ? path.join(xdg, "circuit-ts") : path.join(home(), ".cache", "circuit-ts"));
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

/**
 * The command's name, as far as it can be told without parsing the line: each command compiles
 * functions of its own (`start` none of the client's), and the cache holds those one run compiled,
 * so each command keeps its own. A wrong guess costs only a cache of its own.
 */
function commandName(): string {
  return process.argv.slice(2).find((a) => /^[a-z]{2,12}$/.test(a)) ?? "none";
}

/**
 * The stamp on the bundle's last line (scripts/bundle-stamp.mjs): 32 hex digits of a hash of the
 * rest of it. V8 checks a code cache against the source's length only, so each cache begins with
 * the stamp of the bundle it was made from, and one made from another bundle is not used.
 */
function stampOf(source: string): string | undefined {
  return /\n\/\/# circuit-bundle ([0-9a-f]{32})\n$/.exec(source.slice(-64))?.[1];
}

/** Compiles the bundle (through the code cache when there is one) and runs the command in it. */
function runBundle(): void {
  // The bundle's first line is main.js's "#!": a comment inside the wrapper, so line numbers hold.
  const source = fs.readFileSync(bundle, "utf8").replace(/^#!/, "//");
  const stamp = stampOf(source);
  const dir = stamp && cacheDir();
  const cacheFile = dir && path.join(dir, `${commandName()}-${process.version}-${process.arch}.v8cache`);
  let cachedData: Buffer | undefined;
  if (cacheFile && stamp) {
    try {
      const st = fs.lstatSync(cacheFile);
      if (st.isFile() && st.uid === process.getuid?.()) {
        const data = fs.readFileSync(cacheFile);
        if (data.toString("latin1", 0, stamp.length) === stamp) cachedData = data.subarray(stamp.length);
      }
    } catch {
      // No cache yet: this run writes one.
    }
  }

  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundle,
    cachedData,
  });
  // Code compiled by vm.Script has no import() on Node 20 (not without --experimental-vm-modules):
  // `circuit start` loads its ES modules (start-run.js, next to this file) through this one.
  (globalThis as Record<symbol, unknown>)[Symbol.for("circuit-ts.import")] = (specifier: string) => import(specifier);

  if (cacheFile && (cachedData === undefined || script.cachedDataRejected)) {
    // At exit the cache holds every function the command compiled, not only the bundle's top level.
    process.once("exit", () => {
      const tmp = `${cacheFile}.${process.pid}`;
      try {
        fs.writeFileSync(tmp, Buffer.concat([Buffer.from(stamp as string, "latin1"), script.createCachedData()]), {
          mode: 0o600,
        });
        fs.renameSync(tmp, cacheFile);
      } catch {
        fs.rmSync(tmp, { force: true });
      }
    });
  }

  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, __dirname);
}

if (commandName() === "start") {
  // `circuit start` runs for as long as its daemon: it runs serve.cjs, the command line bundled with
  // the daemon (scripts/bundle-cli.mjs), through Node's own loader and without a code cache. One
  // copy of each module serves the start-up and the daemon, and the daemon starts without loading
  // some 140 ES modules one by one; a code cache would save little more and keep its compiled
  // functions in the daemon's memory.
  require("./serve.cjs");
} else runBundle();
