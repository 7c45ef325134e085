// The command line as one CommonJS file: dist/cli/main.js and everything it loads (commander and
// msgpackr included) bundled into dist/cli/main.cjs, which dist/cli/circuit.cjs (package.json "bin",
// built by tsc from src/cli/circuit.cts) compiles through V8's code cache. A command then starts
// without resolving, reading and linking some 70 ES modules and two packages (bench/cli-startup.ts
// measures both). Left out: `circuit start`'s work (start-run.js and the daemon behind it), which
// a command handling a value or two does not need, and msgpackr's native decoder.
//
// `circuit start` has a bundle of its own, dist/cli/serve.cjs: the same command line with the
// daemon in it, so that a daemon starts without loading some 140 ES modules one by one (0.15–0.2 s
// of CPU of about 0.5 s, README, Performance). Packages with native parts or loaded only on demand
// (lmdb, the NATS client, prom-client) stay outside it, loaded from node_modules as usual; pino,
// which every daemon loads to log, is in it (its 29 files resolved and read one by one took about
// 30 ms; a daemon now starts about 9 ms sooner), and msgpackr's native decoder is left out
// (withoutNativeMsgpack, below). A few places read
// import.meta.url; in a bundle it is the bundle's own URL, and the daemon's name their files from
// dist/'s root ("../http/", "../daemon/") so that both locations lead to the same files.
import { chmodSync } from "node:fs";
import { build } from "esbuild";
import { stampBundle } from "./bundle-stamp.mjs";

/** What both bundles share: the command line from what tsc built, as one CommonJS file for Node 20. */
const common = {
  entryPoints: [new URL("../dist/cli/main.js", import.meta.url).pathname],
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // The packages' CommonJS builds (msgpackr's ES build reads import.meta, empty in CommonJS).
  conditions: ["require"],
  legalComments: "inline",
  logLevel: "warning",
  // A bundled module that needs import.meta would silently get an empty one: fail the build instead.
  logOverride: { "empty-import-meta": "error" },
  // Without the comments and indentation (names are kept, so stack traces still name functions):
  // V8 keeps a bundle's whole source in memory, and one comment outside Latin-1 (a dash, an arrow)
  // makes it two bytes a character. An idle daemon measured 1.5 MB smaller and started sooner.
  minifyWhitespace: true,
  // import.meta in the bundled code: the bundle's own file.
  define: { "import.meta.url": "__bundleUrl", "import.meta.resolve": "__bundleResolve" },
  banner: {
    // "use strict" first, as esbuild would put it: the banner comes before esbuild's own.
    js:
      '"use strict";\nvar __bundleUrl = require("node:url").pathToFileURL(__filename).href;\n' +
      'var __bundleResolve = (s) => require("node:url").pathToFileURL(require.resolve(s)).href;',
  },
};

/**
 * commander's `require("node:child_process")`, made on first use: commander spawns a process only
 * for commands kept in executables of their own, which circuit has none of, and loading
 * child_process (with the modules it brings) cost every command 1.5–2 ms.
 */
const lazyChildProcess = {
  name: "lazy-child-process",
  setup(b) {
    b.onResolve({ filter: /^node:child_process$/ }, (args) =>
      /[\\/]commander[\\/]/.test(args.importer) ? { path: "child_process", namespace: "lazy" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "lazy" }, () => ({
      contents: 'let cp; module.exports = new Proxy({}, { get: (_, k) => (cp ??= require("node:child_process"))[k] });',
      loader: "js",
    }));
  },
};

await build({
  ...common,
  outfile: new URL("../dist/cli/main.cjs", import.meta.url).pathname,
  external: ["./start-run.js", "msgpackr-extract"],
  plugins: [lazyChildProcess],
});
// Its stamp, which each command's code cache must match (scripts/bundle-stamp.mjs).
stampBundle(new URL("../dist/cli/main.cjs", import.meta.url).pathname);
/**
 * msgpackr's native string decoder left out of a bundle: msgpackr tries `require("msgpackr-extract")`
 * and decodes in JavaScript when that gives nothing. It pays off only for messages with much string
 * data; a daemon decodes small control frames (values pass through it undecoded), and finding and
 * loading the addon took about 20 ms of every daemon's start (median 254 -> 234 ms, 16 alternating
 * starts; memory the same).
 */
const withoutNativeMsgpack = {
  name: "without-msgpackr-extract",
  setup(b) {
    b.onResolve({ filter: /^msgpackr-extract$/ }, () => ({ path: "msgpackr-extract", namespace: "left-out" }));
    b.onLoad({ filter: /.*/, namespace: "left-out" }, () => ({ contents: "module.exports = null;", loader: "js" }));
  },
};

await build({
  ...common,
  outfile: new URL("../dist/cli/serve.cjs", import.meta.url).pathname,
  external: ["lmdb", "nats", "prom-client"],
  plugins: [withoutNativeMsgpack],
});
// The command itself (tsc wrote it without the execute bit its "#!" line asks for).
chmodSync(new URL("../dist/cli/circuit.cjs", import.meta.url), 0o755);
