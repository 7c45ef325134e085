// Compiles the project's TypeScript (src, test, examples, bench) into the test loader's cache
// (hooks.mjs): one esbuild pass of about a second instead of a compiler in every test process.
// Each file is compiled by itself (esbuild's transform, what tsx does per process), with its source
// map naming the source by its absolute path: Node maps a stack trace relative to the URL the module
// was loaded as, which is the .ts file's, not the cache's.
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const CACHE = new URL("../../node_modules/.cache/circuit-tests", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;
const tsconfigRaw = readFileSync(join(ROOT, "tsconfig.json"), "utf8");

/** esbuild's options for the TypeScript file at `path`. */
export function options(path) {
  return { loader: "ts", format: "esm", target: "node20", sourcemap: "inline", sourcefile: path, tsconfigRaw };
}

/** Where the JavaScript compiled from the TypeScript file at `path` is kept. */
export function cached(path) {
  return join(CACHE, path.replace(/ts$/, "js"));
}

/** The files under `dir`, at any depth, whose names pass `keep`. */
export function list(dir, keep) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...list(p, keep));
    else if (keep(name)) out.push(p);
  }
  return out;
}

/**
 * Compiles every .ts file of the source folders into the cache; resolves with how many. Each file
 * is written whole and renamed into place, so that a run beside this one never reads half of one.
 */
export async function compile() {
  const { transform } = await import("esbuild");
  const ts = (name) => /\.m?ts$/.test(name) && !name.endsWith(".d.ts");
  const files = ["src", "test", "examples", "bench"].flatMap((d) => list(join(ROOT, d), ts));
  await Promise.all(
    files.map(async (path) => {
      const out = await transform(readFileSync(path, "utf8"), options(path));
      const file = cached(path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(`${file}.${process.pid}`, out.code);
      renameSync(`${file}.${process.pid}`, file);
    }),
  );
  return files.length;
}
