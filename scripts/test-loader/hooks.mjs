// Module hooks that run the project's TypeScript (tests, src, examples) without a compiler in each
// process: scripts/run-tests.mjs compiles every .ts file with esbuild once, before the run
// (compile.mjs), and `load` hands Node that JavaScript for the .ts file's own URL, so
// import.meta.url, relative paths and stack traces stay those of the source. A file missing from
// the cache or changed since (a test edited during a run) is compiled here, on the spot. tsx does
// the same per process but loads its compiler into every test process, about 0.3 s of CPU each.
import { existsSync, readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const isTs = (url) => url.startsWith("file:") && /\.m?ts$/.test(url);

/** TypeScript's NodeNext style: "./x.js" written in a .ts module names ./x.ts. */
export function resolve(specifier, context, next) {
  if (specifier[0] === "." && specifier.endsWith(".js") && context.parentURL && isTs(context.parentURL)) {
    const url = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL);
    if (existsSync(url)) return { url: url.href, shortCircuit: true };
  }
  return next(specifier, context);
}

let compiler;

export async function load(url, context, next) {
  if (!isTs(url)) return next(url, context);
  const path = fileURLToPath(url);
  compiler ??= await import("./compile.mjs");
  const out = compiler.cached(path);
  try {
    if (statSync(out).mtimeMs >= statSync(path).mtimeMs) {
      return { format: "module", source: readFileSync(out, "utf8"), shortCircuit: true };
    }
  } catch {
    // Not in the cache: compiled below.
  }
  const { transformSync } = await import("esbuild");
  const { code } = transformSync(readFileSync(path, "utf8"), compiler.options(path));
  return { format: "module", source: code, shortCircuit: true };
}
