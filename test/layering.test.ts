// The tree shows the architecture (DESIGN.md §5): each layer imports only the layers above it.
// errors.ts, version.ts and util/ are leaves that every layer may use; index.ts and client.ts only
// re-export.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const src = new URL("../src/", import.meta.url).pathname;
const allowed: Record<string, string[]> = {
  util: [],
  wire: ["util"],
  transport: ["wire", "util"],
  element: ["util"],
  cluster: ["wire", "transport", "util"],
  daemon: ["wire", "transport", "element", "cluster", "util"],
  client: ["wire", "transport", "util"],
  http: ["client", "daemon", "transport", "wire", "util"],
  cli: ["client", "daemon", "http", "wire", "util"],
};

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1] as string);
}

test("every layer imports only what DESIGN.md §5 allows", () => {
  const layers = readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory());
  const bad: string[] = [];
  let checked = 0;
  for (const layer of layers) {
    const ok = allowed[layer.name];
    assert.ok(ok, `src/${layer.name}/ is not a layer of DESIGN.md §5`);
    for (const f of readdirSync(join(src, layer.name)).filter((n) => n.endsWith(".ts"))) {
      checked++;
      for (const spec of imports(join(src, layer.name, f))) {
        if (spec.startsWith("./")) continue;
        const m = /^\.\.\/([^/]+)(\/|\.js$)/.exec(spec);
        if (spec === "../errors.js" || spec === "../version.js") continue;
        const target = m?.[1];
        if (!target || !ok.includes(target)) bad.push(`src/${layer.name}/${f} imports ${spec}`);
      }
    }
  }
  assert.ok(checked > 10, "found the source files");
  assert.deepEqual(bad, []);
});

test("the pure layers do no I/O", () => {
  for (const layer of ["wire", "element", "util"]) {
    for (const f of readdirSync(join(src, layer)).filter((n) => n.endsWith(".ts"))) {
      const text = readFileSync(join(src, layer, f), "utf8");
      assert.doesNotMatch(text, /from "node:(net|tls|fs|child_process|dgram|http)"/, `src/${layer}/${f}`);
    }
  }
});

test("the client-only entry point (src/client.ts) reaches no daemon or cluster code", () => {
  const seen = new Set<string>();
  const walk = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of imports(file)) walk(join(file, "..", spec.replace(/\.js$/, ".ts")));
  };
  walk(join(src, "client.ts"));
  const bad = [...seen].filter((f) => /\/src\/(daemon|cluster|element|cli)\//.test(f));
  assert.ok(seen.size > 10, "followed the imports");
  assert.deepEqual(bad, []);
});
