// The command line as one CommonJS file: dist/cli/main.js and everything it loads (commander and
// msgpackr included) bundled into dist/cli/main.cjs, which dist/cli/circuit.cjs (package.json "bin",
// built by tsc from src/cli/circuit.cts) compiles through V8's code cache. A command then starts
// without resolving, reading and linking some 70 ES modules and two packages (bench/cli-startup.ts
// measures both). Left out: `circuit start`'s work (start-run.js and the daemon behind it) stays the
// ES modules tsc built, so the daemon shares one copy of every module with its start-up (and
// `circuit start` itself runs main.js, not this bundle: see src/cli/circuit.cts); and msgpackr's
// native decoder, which a command handling a value or two does not load.
import { chmodSync } from "node:fs";
import { build } from "esbuild";

await build({
  entryPoints: [new URL("../dist/cli/main.js", import.meta.url).pathname],
  outfile: new URL("../dist/cli/main.cjs", import.meta.url).pathname,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // The packages' CommonJS builds (msgpackr's ES build reads import.meta, empty in CommonJS).
  conditions: ["require"],
  external: ["./start-run.js", "msgpackr-extract"],
  legalComments: "inline",
  logLevel: "warning",
  // A bundled module that needs import.meta would silently get an empty one: fail the build instead.
  logOverride: { "empty-import-meta": "error" },
});
// The command itself (tsc wrote it without the execute bit its "#!" line asks for).
chmodSync(new URL("../dist/cli/circuit.cjs", import.meta.url), 0o755);
