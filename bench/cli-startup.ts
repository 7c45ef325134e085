// `node --import tsx bench/cli-startup.ts [--runs N]`: what one `circuit …` command (the published
// one, dist/cli/circuit.cjs) costs a shell script: the wall clock from spawn to exit and the CPU
// time (user + system) it used, beside `node -e 0` (the floor any Node CLI pays) measured in the
// same rounds. `--before PATH/dist/cli/main.js` adds another build's CLI (a checkout of an older
// commit) to the same rounds, its pair included, for a before/after figure; `--app DIR` (a project
// with circuit-ts installed) adds `npx circuit --version` and `node_modules/.bin/circuit --version`
// run there, to show what npx itself costs. Commands alternate round by round so that a busy
// stretch of the machine falls on all of them alike; the table shows medians. Writes
// bench/results/cli-startup.json.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./harness.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 15;
const cli = join(repoRoot, "dist/cli/circuit.cjs");
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
  // An unbuffered channel for the pair: the recv waits for the send, as two scripts meeting would.
  spawnSync(process.execPath, [cli, "-d", dial, "mkchan", `/${id}/pair`, "0"]);
  const node = process.execPath;

  const commands: Record<string, { args: string[]; input?: string; cmd?: string; cwd?: string }> = {
    "node -e 0 (the floor)": { args: ["-e", "0"] },
    "circuit --version": { args: [cli, "--version"] },
    "circuit send (one value)": { args: [cli, "-d", dial, "send", `/${id}/q`], input: "hello" },
    "circuit ls /": { args: [cli, "-d", dial, "ls", "/"] },
    // Issue #18's measure: a `circuit recv` and a `circuit send` started together, until both have
    // exited, beside two `node -e 0` started together (each pair under its own bash).
    "pair: node -e 0 & node -e 0": { cmd: "bash", args: ["-c", `"${node}" -e 0 & "${node}" -e 0; wait`] },
    "pair: circuit recv & circuit send": {
      cmd: "bash",
      args: [
        "-c",
        `"${node}" "${cli}" -d ${dial} recv /${id}/pair > /dev/null & echo '"hi"' | "${node}" "${cli}" -d ${dial} send /${id}/pair; wait`,
      ],
    },
  };
  if (before) {
    commands["before: circuit --version"] = { args: [before, "--version"] };
    commands["before: circuit send"] = { args: [before, "-d", dial, "send", `/${id}/q`], input: "hello" };
    commands["before: circuit ls /"] = { args: [before, "-d", dial, "ls", "/"] };
    commands["before: pair"] = {
      cmd: "bash",
      args: [
        "-c",
        `"${node}" "${before}" -d ${dial} recv /${id}/pair > /dev/null & echo '"hi"' | "${node}" "${before}" -d ${dial} send /${id}/pair; wait`,
      ],
    };
  }
  if (app) {
    commands["npx circuit --version (app)"] = { cmd: "npx", args: ["--no-install", "circuit", "--version"], cwd: app };
    commands[".bin/circuit --version (app)"] = { cmd: join(app, "node_modules/.bin/circuit"), args: ["--version"] };
  }
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  // Through bash, whose `times` reports the CPU time its children used (steadier than the wall
  // clock when other work shares the machine); the wall clock is the child's, spawn to exit.
  const script = 's=$(date +%s%N); "$@"; e=$(date +%s%N); echo "wall $(( (e - s) / 1000 ))"; times';
  for (let r = 0; r < runs; r++) {
    for (const [name, c] of Object.entries(commands)) {
      const res = spawnSync("bash", ["-c", script, "_", c.cmd ?? process.execPath, ...c.args], {
        input: c.input ?? "",
        encoding: "utf8",
        cwd: c.cwd,
      });
      if (res.status !== 0) throw new Error(`${name} failed: ${res.stderr}`);
      const wall = /^wall (\d+)$/m.exec(res.stdout);
      // `times` prints the shell's user and system time, then its children's.
      const t = [...res.stdout.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60_000 + Number(m[2]) * 1000);
      if (!wall || t.length < 4) throw new Error(`${name}: no timing in ${JSON.stringify(res.stdout)}`);
      times[name]?.push(Number(wall[1]) / 1000);
      cpu[name]?.push((t[2] as number) + (t[3] as number));
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const rows = Object.keys(times).map((name) => ({
    name,
    wallMs: Math.round(median(times[name] as number[])),
    cpuMs: Math.round(median(cpu[name] as number[])),
  }));
  console.log(`${"medians of".padEnd(32)}  wall    cpu`);
  for (const r of rows)
    console.log(`${r.name.padEnd(32)} ${String(r.wallMs).padStart(5)} ${String(r.cpuMs).padStart(6)} ms`);
  const wall = (name: string) => rows.find((r) => r.name === name)?.wallMs ?? Number.NaN;
  const floor = wall("pair: node -e 0 & node -e 0");
  console.log(
    `pair ÷ two node -e 0 (wall): ${(wall("pair: circuit recv & circuit send") / floor).toFixed(2)}× (issue #18: ≤ 1.5×)`,
  );
  if (before) console.log(`before: pair ÷ two node -e 0 (wall): ${(wall("before: pair") / floor).toFixed(2)}×`);
  const dir = join(repoRoot, "bench/results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "cli-startup.json"), `${JSON.stringify({ runs, rows }, null, 2)}\n`);
} finally {
  daemon.kill("SIGTERM");
}
