// circuit top [PATH]: the circuit in the terminal — servers with CPU, memory, load and uptime,
// then the processes and channels under PATH, sorted by CPU (c), memory (m) or rate (r).
// On a terminal it takes the alternate screen, redraws in place, and puts everything back on
// `q` (or Ctrl-C); `--once` prints one snapshot (rates over one interval) for scripts.

import type { Command } from "commander";
import type { Client } from "../client/client.js";
import type { ServerHandle, ServerObservation } from "../client/server-handle.js";
import { monotonicMs } from "../util/clock.js";
import { type GlobalOptions, pathArg, printJson, UsageError, withClient } from "./common.js";

interface TopOptions {
  once?: boolean;
  interval: string;
  sort: string;
}

type SortKey = "cpu" | "mem" | "rate";

interface Row {
  path: string;
  kind: string;
  cpu: number;
  mem: number;
  rate: number;
  state: string;
}

interface Sample {
  at: number;
  servers: { id: string; url: string; obs?: ServerObservation; error?: string }[];
}

const SORTS: Record<string, SortKey> = { c: "cpu", m: "mem", r: "rate", cpu: "cpu", mem: "mem", rate: "rate" };

async function sample(c: Client, under: string): Promise<Sample> {
  const list = await c.servers();
  const servers = await Promise.all(
    list
      .filter((s) => under === "/" || under.startsWith(`/${s.id}`))
      .map(async (s) => {
        try {
          const h = (await c.walk(`/${s.id}`).get({ signal: AbortSignal.timeout(3000) })) as ServerHandle | null;
          if (h?.kind !== "server") return { id: s.id, url: s.url, error: "not a server" };
          return { id: s.id, url: s.url, obs: await h.observe({ limit: 20_000, signal: AbortSignal.timeout(3000) }) };
        } catch (err) {
          return { id: s.id, url: s.url, error: (err as Error).message };
        }
      }),
  );
  return { at: monotonicMs(), servers };
}

function rows(now: Sample, before: Sample | undefined, under: string): Row[] {
  const prev = new Map<string, number>();
  for (const s of before?.servers ?? [])
    for (const e of s.obs?.elements ?? []) prev.set(e.path, (e.sent ?? 0) + (e.recvd ?? 0));
  const dt = before ? (now.at - before.at) / 1000 : 0;
  const out: Row[] = [];
  const prefix = under === "/" ? "/" : `${under.replace(/\/+$/, "")}`;
  for (const s of now.servers) {
    for (const e of s.obs?.elements ?? []) {
      if (prefix !== "/" && e.path !== prefix && !e.path.startsWith(`${prefix}/`)) continue;
      if (e.kind === "proc") {
        out.push({
          path: e.path,
          kind: "proc",
          cpu: e.cpuPercent ?? 0,
          mem: e.rssBytes ?? 0,
          rate: 0,
          state: `pid ${e.pid} ${e.phase}`,
        });
      } else if (e.kind === "svc") {
        out.push({
          path: e.path,
          kind: "svc",
          cpu: 0,
          mem: 0,
          rate: 0,
          state: `${e.running}/${e.desired} replicas, ${e.restarts} restarts, ${e.phase}`,
        });
      } else if (e.kind !== "dns") {
        const moved = (e.sent ?? 0) + (e.recvd ?? 0);
        const was = prev.get(e.path);
        out.push({
          path: e.path,
          kind: e.kind,
          cpu: 0,
          mem: 0,
          rate: was !== undefined && dt > 0 ? Math.max(0, (moved - was) / dt) : 0,
          state: `len ${e.len}/${e.cap}${e.closed ? " closed" : ""}${e.waiting ? ` blocked ${e.waiting}` : ""}`,
        });
      }
    }
  }
  return out;
}

const size = (n: number): string => {
  const u = ["B", "K", "M", "G", "T"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)}${u[i]}`;
};

const uptime = (s: number): string => {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : `${m}m${Math.floor(s % 60)}s`;
};

const pad = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n));
const lpad = (s: string, n: number): string => s.padStart(n);

/** The screen as lines, at most `height` of them and `width` wide. */
function render(now: Sample, before: Sample | undefined, under: string, sort: SortKey, width: number, height: number) {
  const lines: string[] = [];
  const all = rows(now, before, under);
  const elements = now.servers.reduce((n, s) => n + (s.obs?.total ?? 0), 0);
  lines.push(
    `circuit top ${under}  ${now.servers.length} servers  ${elements} elements  ${new Date().toLocaleTimeString()}` +
      `  sort: ${sort}  (c cpu, m mem, r rate, q quit)`,
  );
  lines.push("");
  lines.push(
    `${pad("SERVER", 18)} ${pad("URL", 30)} ${lpad("CPU%", 6)} ${lpad("RSS", 7)} ${pad(" LOAD", 16)} ${lpad("MEM", 13)} ${lpad("UP", 8)} ${lpad("ELEMS", 7)}`,
  );
  for (const s of now.servers) {
    const x = s.obs?.server;
    if (!x) {
      lines.push(`${pad(s.id, 18)} ${pad(s.url, 30)} ${s.error ?? "no answer"}`);
      continue;
    }
    const h = x.host;
    const up = (Date.now() - Date.parse(x.startedAt)) / 1000;
    lines.push(
      `${pad(s.id, 18)} ${pad(s.url.replace(/^circuit:\/\//, "").replace(/\/X.*$/, ""), 30)} ${lpad(x.process.cpuPercent.toFixed(1), 6)} ${lpad(size(x.process.rssBytes), 7)} ${pad(` ${h.loadavg.map((l) => l.toFixed(2)).join(" ")}`, 16)} ${lpad(`${size(h.memTotal - h.memFree)}/${size(h.memTotal)}`, 13)} ${lpad(uptime(up), 8)} ${lpad(String(s.obs?.total ?? 0), 7)}`,
    );
  }
  lines.push("");
  const by =
    sort === "cpu"
      ? (a: Row, b: Row) => b.cpu - a.cpu || b.rate - a.rate
      : sort === "mem"
        ? (a: Row, b: Row) => b.mem - a.mem || b.cpu - a.cpu
        : (a: Row, b: Row) => b.rate - a.rate || b.cpu - a.cpu;
  all.sort((a, b) => by(a, b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  lines.push(`${pad("PATH", 44)} ${pad("KIND", 6)} ${lpad("CPU%", 6)} ${lpad("RSS", 7)} ${lpad("RATE/s", 9)}  STATE`);
  const room = Math.max(1, height - lines.length - 1);
  for (const r of all.slice(0, room)) {
    lines.push(
      `${pad(r.path, 44)} ${pad(r.kind, 6)} ${lpad(r.kind === "proc" ? r.cpu.toFixed(1) : "", 6)} ${lpad(r.kind === "proc" ? size(r.mem) : "", 7)} ${lpad(r.kind === "proc" || r.kind === "svc" ? "" : r.rate.toFixed(1), 9)}  ${r.state}`,
    );
  }
  if (all.length > room) lines.push(`… ${all.length - room} more`);
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l));
}

export function register(program: Command): void {
  program
    .command("top")
    .description("live view of servers, processes and channels; keys: c cpu, m mem, r rate, q quit")
    .argument("[path]", "only elements under this path", "/")
    .option("--once", "print one snapshot (rates over one interval) and exit")
    .option("--interval <ms>", "time between refreshes", "1000")
    .option("--sort <key>", "cpu, mem or rate", "cpu")
    .action(async (path: string, o: TopOptions, cmd: Command) => {
      if (path !== "/") pathArg(path);
      const interval = Number(o.interval);
      if (!/^\d+$/.test(o.interval) || interval < 100) throw new UsageError("--interval takes whole ms, at least 100");
      let sort = SORTS[o.sort];
      if (!sort) throw new UsageError("--sort is cpu, mem or rate");
      const g = cmd.optsWithGlobals() as GlobalOptions;
      await withClient(g, async (c) => {
        const tty = process.stdout.isTTY === true && process.stdin.isTTY === true && !o.once;
        if (!tty) {
          let before = await sample(c, path);
          // One interval apart, so that rates mean something.
          await new Promise((r) => setTimeout(r, Math.min(interval, 1000)));
          for (;;) {
            const now = await sample(c, path);
            if (g.json) printJson({ servers: now.servers, rows: rows(now, before, path) });
            else process.stdout.write(`${render(now, before, path, sort as SortKey, 200, 10_000).join("\n")}\n`);
            if (o.once) return;
            before = now;
            await new Promise((r) => setTimeout(r, interval));
            process.stdout.write("\n");
          }
        }
        const out = process.stdout;
        const stdin = process.stdin;
        let done!: () => void;
        const finished = new Promise<void>((r) => {
          done = r;
        });
        let before: Sample | undefined;
        let now: Sample | undefined;
        const draw = () => {
          if (!now) return;
          const lines = render(now, before, path, sort as SortKey, out.columns || 80, out.rows || 24);
          out.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join("\r\n")}\x1b[J`);
        };
        const restore = () => {
          stdin.setRawMode(false);
          stdin.pause();
          out.write("\x1b[?25h\x1b[?1049l");
        };
        out.write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[J");
        stdin.setRawMode(true);
        stdin.resume();
        stdin.on("data", (b: Buffer) => {
          const k = b.toString();
          if (k === "q" || k === "\x03" || k === "Q") done();
          else if (SORTS[k]) {
            sort = SORTS[k];
            draw();
          }
        });
        out.on("resize", draw);
        const onSignal = () => done();
        process.once("SIGTERM", onSignal);
        try {
          let stop = false;
          void finished.then(() => {
            stop = true;
          });
          while (!stop) {
            const s = await sample(c, path);
            before = now;
            now = s;
            draw();
            await Promise.race([finished, new Promise((r) => setTimeout(r, interval))]);
          }
        } finally {
          process.off("SIGTERM", onSignal);
          restore();
        }
      });
    });
}
