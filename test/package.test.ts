// The package as a user gets it: `npm pack` of this repository, installed into an empty directory
// (from npm's local cache only: no registry traffic), holds what a user runs and nothing else; its
// `circuit` binary starts a daemon; a program imports the library by name from ESM (both entry
// points), CommonJS `require` gets a clear error, and a TypeScript file type-checks against the
// shipped declarations (with the repository's tsc), including errors it must report.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ROOT } from "./helpers/daemon.ts";

const tmp = mkdtempSync(join(tmpdir(), "circuit-package-"));
const app = join(tmp, "app");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  bin: Record<string, string>;
};
let tarball = "";
let files: string[] = [];
let daemon: ChildProcess | undefined;
let url = "";

function run(cmd: string, args: string[], cwd = app): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 40_000, env: { ...process.env, CIRCUIT: "" } });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

before(() => {
  // Pack what is built (`npm test` builds first); --ignore-scripts: no rebuild inside the test.
  const out = JSON.parse(run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", tmp], ROOT)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(tmp, out[0]!.filename);
  files = out[0]!.files.map((f) => f.path).sort();
  execFileSync("mkdir", ["-p", app]);
  // An app that depends on the tarball, with a lockfile naming the versions this repository's
  // lockfile installed: `npm ci --offline` then takes everything from npm's cache, which `npm ci`
  // in this repository filled, and never asks the registry.
  const repoLock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const spec = `file:${tarball}`;
  const packages: Record<string, unknown> = {
    "": { name: "app", dependencies: { [pkg.name]: spec } },
    [`node_modules/${pkg.name}`]: {
      version: pkg.version,
      resolved: spec,
      integrity: `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
    },
  };
  for (const [k, v] of Object.entries(repoLock.packages)) if (k && !v.dev) packages[k] = v;
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "app", private: true, type: "module", dependencies: { [pkg.name]: spec } }),
  );
  writeFileSync(
    join(app, "package-lock.json"),
    JSON.stringify({ name: "app", lockfileVersion: 3, requires: true, packages }),
  );
  run("npm", ["ci", "--offline", "--no-audit", "--no-fund", "--ignore-scripts"]);
});

after(() => {
  daemon?.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

test("the tarball holds dist, docs, README and LICENSE: no sources, tests, maps, keys or tarballs", () => {
  assert.ok(pkg.name !== "circuit", "the bare name circuit belongs to another npm package");
  for (const f of ["LICENSE", "README.md", "package.json", "docs/design.md", "docs/protocol.md", "docs/select.md"]) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  for (const f of [
    "dist/index.js",
    "dist/index.d.ts",
    "dist/client.js",
    "dist/client.d.ts",
    "dist/cli/main.js",
    // The command (package.json "bin"), the command line bundled for it, and the bundle `start` runs.
    "dist/cli/circuit.cjs",
    "dist/cli/main.cjs",
    "dist/cli/serve.cjs",
    // The dashboard's page (`start --http`) is served from these.
    "dist/http/static/index.html",
    "dist/http/static/app.js",
    "dist/http/static/app.css",
  ]) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  const stray = files.filter(
    (f) =>
      !/^(dist\/.+\.(js|d\.ts)|dist\/cli\/[a-z]+\.cjs|dist\/http\/static\/[a-z]+\.(html|css)|docs\/[^/]+\.md|cjs\/[^/]+\.cjs|README\.md|LICENSE|package\.json)$/.test(
        f,
      ) || /\.map$|\.key$|\.tgz$|^dist\/.*\.test\./.test(f),
  );
  assert.deepEqual(stray, []);
  assert.match(readFileSync(join(ROOT, "LICENSE"), "utf8"), /^MIT License/);
});

test("README and docs link only to files inside the package, and to headings that exist", () => {
  const slug = (h: string) =>
    h
      .toLowerCase()
      .replace(/[^a-z0-9 _-]/g, "")
      .replace(/ /g, "-");
  const headings = (file: string) =>
    new Set([...readFileSync(file, "utf8").matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1] as string)));
  const bad: string[] = [];
  for (const doc of ["README.md", "docs/design.md", "docs/protocol.md", "docs/select.md"]) {
    const text = readFileSync(join(ROOT, doc), "utf8");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const [file = "", frag] = (target as string).split("#");
      const path = file === "" ? doc : join(doc, "..", file);
      if (/^[a-z]+:/.test(file) || !files.includes(path)) bad.push(`${doc}: ${target} (not in the tarball)`);
      else if (frag && !headings(join(ROOT, path)).has(frag)) bad.push(`${doc}: ${target} (no such heading)`);
    }
  }
  assert.deepEqual(bad, []);
});

test("npx circuit --version and a daemon started with the installed binary", async () => {
  assert.equal(run("npx", ["--no-install", "circuit", "--version"]).trim(), pkg.version);
  daemon = spawn(join(app, "node_modules", ".bin", "circuit"), ["start", "--addr", "127.0.0.1:0"], {
    cwd: app,
    stdio: ["ignore", "pipe", "pipe"],
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("no URL within 10 s")), 10_000);
    daemon!.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      if (out.includes("\n")) {
        clearTimeout(t);
        resolve(out.split("\n")[0] as string);
      }
    });
    daemon!.once("exit", (code) => reject(new Error(`daemon exited with ${code}`)));
  });
  assert.match(url, /^circuit:\/\/127\.0\.0\.1:\d+\/X[0-9a-f]{16}$/);
  assert.equal(run("npx", ["--no-install", "circuit", "-d", url, "ls", "/"]).trim(), url.slice(url.lastIndexOf("/")));
});

test("ESM imports both entry points by name; require() gets a clear error", () => {
  writeFileSync(
    join(app, "main.mjs"),
    `import { dial, select, Daemon } from "${pkg.name}";
import * as client from "${pkg.name}/client";
if (typeof Daemon !== "function" || "Daemon" in client) throw new Error("Daemon belongs to the full entry only");
if (client.dial !== dial || client.select !== select) throw new Error("one client API behind both entries");
const c = await dial(process.argv[2]);
const q = await c.walk("/" + c.serverId + "/app/q").openChan(2);
await q.send({ hello: "world" });
const r = await select([q.recvCase()]);
console.log(JSON.stringify(r), client.VERSION);
await c.close();
`,
  );
  assert.equal(run(process.execPath, ["main.mjs", url]).trim(), `{"index":0,"value":{"hello":"world"}} ${pkg.version}`);

  const r = spawnSync(process.execPath, ["-e", `require("${pkg.name}/client")`], { cwd: app, encoding: "utf8" });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /circuit-ts is an ES module: use `import \{ dial \} from "circuit-ts"`/);
});

test("a TypeScript program type-checks against the shipped declarations, and wrong uses are errors", () => {
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        noEmit: true,
        lib: ["ES2023", "esnext.disposable"],
        types: ["node"],
        typeRoots: [join(ROOT, "node_modules/@types")],
      },
      files: ["app.ts"],
    }),
  );
  writeFileSync(
    join(app, "app.ts"),
    `import { type Chan, type ErrorCode, dial, select, WrongKind } from "${pkg.name}";
import { dial as dial2 } from "${pkg.name}/client";

interface Job { id: number }
export async function main(url: string): Promise<number> {
  await using client = await dial(url);
  const jobs: Chan<Job> = await client.walk(\`/\${client.serverId}/jobs\`).openChan<Job>(16);
  const names = await client.walk(\`/\${client.serverId}/names\`).openChan<string>(1);
  const srv = await client.walk(\`/\${client.serverId}\`).getServer();
  const ports: { port: number }[] = await srv.ports();
  const r = await select([jobs.recvCase(), names.sendCase("x")]);
  if (r.index === 0 && !r.closed) return r.value.id + ports.length;
  // @ts-expect-error a send case carries no value
  const nothing: string = r.value;
  const code: ErrorCode = new WrongKind().code;
  // @ts-expect-error not a code of this package
  const other: ErrorCode = "Whatever";
  // @ts-expect-error the channel carries Jobs
  await jobs.send("a string");
  // @ts-expect-error internals stay out of the public types
  client.connFor("");
  void dial2;
  return code.length + String(nothing).length + other.length;
}

export const n: number = "one";
`,
  );
  // One deliberate mistake (the last line), and one tsc run: it reports that mistake and nothing
  // else, so the check is real and the rest type-checks (an unused @ts-expect-error is an error too).
  const r = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], {
    cwd: app,
    encoding: "utf8",
  });
  assert.equal(r.status, 2);
  assert.match(r.stdout, /app\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
  assert.equal(r.stdout.trim().split("\n").length, 1, r.stdout);
});

/** The code block that follows `<!-- test/package.test.ts: NAME -->` in the README. */
function readmeBlock(name: string): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(`<!-- test/package.test.ts: ${name} -->`);
  assert.ok(at >= 0, `README marks a ${name} block`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `a code block follows the ${name} marker`);
  return m[1] as string;
}

test("the README's shell block and quickstart.mjs work as written", () => {
  // The install line is what this test's before() did (offline, from the tarball).
  const shell = readmeBlock("shell")
    .split("\n")
    .filter((l) => !l.startsWith("npm install"))
    .join("\n");
  assert.match(shell, /circuit start --addr 127\.0\.0\.1:0/);
  const r = spawnSync("bash", ["-e", "-c", `${shell}\necho "daemon=$!"`], {
    cwd: app,
    encoding: "utf8",
    timeout: 30_000,
    // The daemon keeps stderr open for as long as it runs: not a pipe, so that bash's exit ends the run.
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, CIRCUIT: "", CIRCUIT_KEY: "" },
  });
  const pid = Number(/daemon=(\d+)/.exec(r.stdout)?.[1]);
  try {
    assert.equal(r.status, 0, r.stdout);
    const lines = r.stdout.split("\n");
    assert.ok(lines.includes('{"id":1}'), r.stdout);
    const list = JSON.parse(lines.slice(lines.indexOf('{"id":1}') + 1, -2).join("\n")) as {
      kind: string;
      stat: { cap: number; len: number };
    }[];
    assert.deepEqual(
      list.map((e) => [e.kind, e.stat.cap, e.stat.len]),
      [["chan", 4, 0]],
    );
    writeFileSync(join(app, "quickstart.mjs"), readmeBlock("quickstart.mjs"));
    const url = readFileSync(join(app, "circuit.url"), "utf8").split("\n")[0] as string;
    const q = spawnSync(process.execPath, ["quickstart.mjs"], {
      cwd: app,
      encoding: "utf8",
      timeout: 20_000,
      env: { ...process.env, CIRCUIT: url },
    });
    assert.equal(q.status, 0, q.stderr);
    assert.equal(q.stdout, "got { id: 2, task: 'resize' }\nsent\n");
  } finally {
    if (pid > 0) process.kill(pid, "SIGKILL");
  }
});
