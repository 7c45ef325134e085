// `node --import tsx bench/cli-startup.ts [--runs N]`: what one `circuit …` command costs a shell
// script, wall clock from spawn to exit, beside `node -e 0` (the floor any Node CLI pays) measured
// in the same run; `--before PATH/dist/cli/main.js` adds another build's CLI (e.g. a checkout of an
// older commit) to the same rounds, for a before/after figure; `--app DIR` (a project with circuit-ts
// installed) adds `npx circuit --version` and `node_modules/.bin/circuit --version` run there, to
// show what npx itself costs. Commands alternate round by round so that a busy stretch of the machine falls on
// all of them alike; the table shows medians. Writes bench/results/cli-startup.json.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./harness.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 15;
const cli = join(repoRoot, "dist/cli/main.js");
const beforeAt = process.argv.indexOf("--before");
const before = beforeAt > 0 ? process.argv[beforeAt + 1] : undefined;
const appAt = process.argv.indexOf("--app");
const app = appAt > 0 ? process.argv[appAt + 1] : undefined;

const daemon = spawn(process.execPath, [cli, "start", "--addr", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "ignore"],
});
try {
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    daemon.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      if (out.includes("\n")) resolve(out.split("\n")[0] as string);
    });
    daemon.once("exit", () => reject(new Error("daemon exited before printing its URL")));
  });
  const id = url.slice(url.lastIndexOf("/") + 1);
  const dial = url.slice(0, url.lastIndexOf("/"));
  spawnSync(process.execPath, [cli, "-d", dial, "mkchan", `/${id}/q`, "100000"]);

  const commands: Record<string, { args: string[]; input?: string; cmd?: string; cwd?: string }> = {
    "node -e 0 (the floor)": { args: ["-e", "0"] },
    "circuit --version": { args: [cli, "--version"] },
    "circuit send (one value)": { args: [cli, "-d", dial, "send", `/${id}/q`], input: "hello" },
    "circuit ls /": { args: [cli, "-d", dial, "ls", "/"] },
  };
  if (before) {
    commands["before: circuit --version"] = { args: [before, "--version"] };
    commands["before: circuit send"] = { args: [before, "-d", dial, "send", `/${id}/q`], input: "hello" };
    commands["before: circuit ls /"] = { args: [before, "-d", dial, "ls", "/"] };
  }
  if (app) {
    commands["npx circuit --version (app)"] = { cmd: "npx", args: ["--no-install", "circuit", "--version"], cwd: app };
    commands[".bin/circuit --version (app)"] = { cmd: join(app, "node_modules/.bin/circuit"), args: ["--version"] };
  }
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (let r = 0; r < runs; r++) {
    for (const [name, c] of Object.entries(commands)) {
      const t0 = performance.now();
      const res = spawnSync(c.cmd ?? process.execPath, c.args, { input: c.input ?? "", encoding: "utf8", cwd: c.cwd });
      const ms = performance.now() - t0;
      if (res.status !== 0) throw new Error(`${name} failed: ${res.stderr}`);
      times[name]?.push(ms);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const rows = Object.entries(times).map(([name, xs]) => ({ name, medianMs: Math.round(median(xs)) }));
  for (const r of rows) console.log(`${r.name.padEnd(32)} ${String(r.medianMs).padStart(5)} ms`);
  const dir = join(repoRoot, "bench/results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "cli-startup.json"), `${JSON.stringify({ runs, rows }, null, 2)}\n`);
} finally {
  daemon.kill("SIGTERM");
}
