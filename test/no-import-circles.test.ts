// No module of src/ reaches itself through its imports, type-only imports included: a circle means
// two modules that cannot be read, tested or replaced one without the other (STYLE.md: narrow
// interfaces such as SelectSession, SessionHost or StreamSession break them).
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";

const src = new URL("../src/", import.meta.url).pathname;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** The relative imports of a file (static, dynamic, type-only and re-exports), as file paths. */
function importsOf(file: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1] as string);
  return specs.map((s) => resolve(dirname(file), s.replace(/\.js$/, ".ts")));
}

/** Every cycle of the graph, each as the list of files around it (one per strongly connected part). */
function circles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const part: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        part.push(w);
      } while (w !== v);
      if (part.length > 1 || graph.get(v)?.includes(v)) found.push(part.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

function graphOf(files: Map<string, string>): Map<string, string[]> {
  return new Map([...files].map(([f, text]) => [f, importsOf(f, text)]));
}

test("the scanner finds a circle, type-only imports and re-exports included", () => {
  const files = new Map([
    ["/x/a.ts", 'import type { B } from "./b.js";\n'],
    ["/x/b.ts", 'export { c } from "./sub/c.js";\n'],
    ["/x/sub/c.ts", 'import { a } from "../a.js";\n'],
    ["/x/d.ts", 'import { a } from "./a.js";\n'],
  ]);
  assert.deepEqual(circles(graphOf(files)), [["/x/a.ts", "/x/b.ts", "/x/sub/c.ts"]]);
  files.set("/x/sub/c.ts", 'import { d } from "node:fs";\n');
  assert.deepEqual(circles(graphOf(files)), []);
});

test("src/ has no import circle", () => {
  const files = new Map(sources(src).map((f) => [f, readFileSync(f, "utf8")]));
  assert.ok(files.size > 50, "found the source files");
  const graph = graphOf(files);
  // Every relative import names a file that exists: otherwise a circle could hide behind a typo.
  const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !files.has(d)).map((d) => `${f} → ${d}`));
  assert.deepEqual(missing, []);
  const found = circles(graph).map((c) => c.map((f) => relative(src, f)).join(" ↔ "));
  assert.deepEqual(found, []);
});
