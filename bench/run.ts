// `node --import tsx bench/run.ts [names...]`: runs the named scenarios (all by default), prints
// one table with circuit's figures beside the peers' figures from the same run, and writes
// bench/results/latest.json.
import { execFileSync } from "node:child_process";
import { setMaxListeners } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import {
  errorText,
  formatBytesRate,
  formatMicros,
  formatRate,
  Procs,
  type Row,
  repoRoot,
  type ScenarioResult,
  WARM_MESSAGES,
  withDeadline,
} from "./harness.ts";
import { scenarioModules } from "./scenarios.ts";

interface Comparison {
  title: string;
  kind: Row["kind"];
  /** Row ids in display order; the baseline is the peer the targets are stated against. */
  ids: string[];
  baseline: string;
  /** What the ratio columns are headed as relative to (default "NATS"). */
  versus?: string;
  /**
   * Target for circuit's row, as a ratio to the baseline; `perRun` also judges each round's pair
   * of runs (for a target that must hold in every run).
   */
  target?: { id: string; text: string; met: (ratio: number) => boolean; perRun?: boolean };
}

const WARM_TEXT = WARM_MESSAGES.toLocaleString("en-US");
const MEASURED_TEXT = "500,000";

const comparisons: Comparison[] = [
  {
    title:
      "Throughput, 100-byte messages, one producer → one consumer, measured at the consumer over " +
      `${MEASURED_TEXT} messages sent after the first ${WARM_TEXT}`,
    kind: "throughput",
    ids: [
      "relay.framed",
      "relay.pipe",
      "nats.pubsub",
      "chan.throughput",
      "chan.throughput.consume",
      "chan.throughput.wide",
      "chan.throughput.serial",
    ],
    baseline: "nats.pubsub",
    target: { id: "chan.throughput", text: "≥ 1.0× NATS pub/sub", met: (r) => r >= 1 },
  },
  {
    title: `The same runs over their first ${WARM_TEXT} messages, while the fresh processes' code is still being compiled`,
    kind: "throughput",
    ids: [
      "nats.pubsub.cold",
      "chan.throughput.cold",
      "chan.throughput.consume.cold",
      "chan.throughput.wide.cold",
      "chan.cold.fresh",
      "chan.cold.warmed",
    ],
    baseline: "nats.pubsub.cold",
    target: { id: "chan.throughput.cold", text: "≥ 1.0× NATS pub/sub (issue #18)", met: (r) => r >= 1 },
  },
  {
    title:
      "Throughput across servers: producer dialled into server A, channel hosted on server B, consumer " +
      "dialled into B (two daemons in one circuit), vs the producer dialled into B on the same daemons in the " +
      "same round (chan-throughput's run of the round beside them)",
    kind: "throughput",
    ids: ["chan.throughput", "chan.cross.single", "chan.cross"],
    baseline: "chan.cross.single",
    versus: "single",
    target: {
      id: "chan.cross",
      text: "≥ 0.9× the single-server figure in every run",
      met: (r) => r >= 0.9,
      perRun: true,
    },
  },
  ...(["secured", "clear"] as const).flatMap((mode): Comparison[] => {
    const how =
      mode === "secured"
        ? "secured as across machines: circuit with a cluster key (TLS 1.2, pre-shared key) vs NATS with TLS"
        : "in the clear: circuit --insecure vs plain NATS";
    const where =
      "the server on another host (a network namespace joined to the clients' by a veth pair, MTU 1500, " +
      `bound to 0.0.0.0), ${how}`;
    return [
      {
        title: `Throughput with ${where}: chan-throughput's main run vs NATS pub/sub, after the first ${WARM_TEXT}`,
        kind: "throughput",
        ids: [`far.nats.${mode}`, `far.chan.${mode}`],
        baseline: `far.nats.${mode}`,
      },
      {
        title: `The same runs over their first ${WARM_TEXT} messages (${mode})`,
        kind: "throughput",
        ids: [`far.nats.${mode}.cold`, `far.chan.${mode}.cold`],
        baseline: `far.nats.${mode}.cold`,
      },
      {
        title: `Round trip with ${where}: chan-pingpong vs NATS request-reply`,
        kind: "latency",
        ids: [`far.nats.reqrep.${mode}`, `far.chan.pingpong.${mode}`],
        baseline: `far.nats.reqrep.${mode}`,
      },
    ];
  }),
  {
    title:
      "Two producers → two competing consumers (each value taken once), 100-byte messages, everything " +
      "taken over 3 s after 1.5 s",
    kind: "throughput",
    ids: ["nats.queue", "chan.2p2c"],
    baseline: "nats.queue",
    target: { id: "chan.2p2c", text: "≥ 1.2× a NATS queue group", met: (r) => r >= 1.2 },
  },
  {
    title:
      "Eight producers → one consumer (workers reporting to one collector), 100-byte messages, everything " +
      "taken over 3 s after 1.5 s",
    kind: "throughput",
    ids: ["nats.fanin", "chan.fanin"],
    baseline: "nats.fanin",
  },
  {
    title:
      "One producer → eight competing consumers (a work queue and its workers, each value taken once), " +
      "100-byte messages, everything taken over 3 s after 1.5 s",
    kind: "throughput",
    ids: ["nats.fanout", "chan.fanout"],
    baseline: "nats.fanout",
  },
  {
    title:
      "Traffic spread over many channels: 64 channels, 2 producers each sending round-robin over its 32 → 2 " +
      "consumers each taking from its 32 (every producer feeds every consumer), 100-byte messages, everything " +
      "taken over 3 s after 1.5 s; NATS over 64 subjects shared out the same way",
    kind: "throughput",
    ids: ["nats.many", "chan.many"],
    baseline: "nats.many",
  },
  {
    title:
      "Values that are objects: one producer → one consumer of small records (6 fields, made per message; the " +
      "consumer checks each), everything taken over 3 s after 1.5 s; circuit's MessagePack beside NATS's JSON codec",
    kind: "throughput",
    ids: ["nats.objects", "chan.objects"],
    baseline: "nats.objects",
  },
  ...[1, 16, 256].map(
    (k): Comparison => ({
      title:
        `${k} KiB values, one producer → one consumer, bytes per second at the consumer taken over 3 s after ` +
        "1.5 s (the consumer checks each value's length, sequence and ends)",
      kind: "bandwidth",
      ids: [`nats.size.${k}k`, `chan.size.${k}k`],
      baseline: `nats.size.${k}k`,
    }),
  ),
  {
    title:
      "16 MiB values, one producer → one consumer through a middle process, bytes per second at the consumer " +
      "(the Go Circuit moved 18 MB/s)",
    kind: "bandwidth",
    ids: ["pipe.large", "chan.large", "chan.large.stream"],
    baseline: "pipe.large",
    versus: "pipe",
    target: { id: "chan.large", text: "≥ 0.5× the raw byte pipe", met: (r) => r >= 0.5 },
  },
  {
    title: "Scale on one daemon: one client's ping-pong while many channels and clients sit idle",
    kind: "latency",
    ids: ["scale.quiet", "scale.crowd"],
    baseline: "scale.quiet",
    versus: "quiet",
    target: { id: "scale.crowd", text: "p50 ≤ 1.5× the quiet p50", met: (r) => r <= 1.5 },
  },
  {
    title:
      "Throughput while the circuit is watched: the same run on a daemon with --http (/metrics scraped every " +
      "second, a dashboard's event stream open) vs one without; default logging in both",
    kind: "throughput",
    ids: ["chan.obs.plain", "chan.obs.http"],
    baseline: "chan.obs.plain",
    versus: "plain",
    target: { id: "chan.obs.http", text: "≥ 0.95× the run without --http", met: (r) => r >= 0.95 },
  },
  {
    title: "Round trip, 100-byte messages, sequential",
    kind: "latency",
    ids: ["nats.reqrep", "chan.pingpong"],
    baseline: "nats.reqrep",
    target: { id: "chan.pingpong", text: "p50 ≤ 1.0× NATS request-reply p50", met: (r) => r <= 1 },
  },
  {
    title:
      "Round trip against the raw ceiling: the same ping-pong beside a Node relay that only pipes bytes, and a " +
      "Node hub that only matches Go's rendezvous frames (4 in, 4 out per round)",
    kind: "latency",
    ids: ["relay.pingpong", "relay.rendezvous", "chan.pingpong"],
    baseline: "relay.pingpong",
    versus: "relay",
    target: { id: "chan.pingpong", text: "p50 ≤ 1.5× the raw relay's p50", met: (r) => r <= 1.5 },
  },
  {
    title:
      "Round trip on a busy server: the same ping-pong (3,000 rounds) while the server carries a steady " +
      "100,000 values a second of 100 bytes from another producer process to another consumer process",
    kind: "latency",
    ids: ["nats.reqrep.load", "chan.pingpong.load"],
    baseline: "nats.reqrep.load",
  },
  {
    title: "select, one of N recv cases ready, vs a plain recv; round trip with a reply, sequential",
    kind: "latency",
    ids: ["select.recv", "select.2", "select.8"],
    baseline: "select.recv",
    versus: "recv",
    target: { id: "select.8", text: "select over 8 cases p50 ≤ 2.0× plain recv p50", met: (r) => r <= 2 },
  },
  {
    title:
      "Durable channel vs NATS JetStream (file storage), 100-byte messages: a window of sends (publishes) awaiting " +
      "their completion (ack) → consumer acknowledging each, measured at the consumer (bench/chan-durable.ts)",
    kind: "throughput",
    ids: ["nats.js.e2e", "chan.durable", "chan.durable.memory"],
    baseline: "nats.js.e2e",
    versus: "JetStream",
    target: { id: "chan.durable", text: "durable ≥ 5× JetStream end to end", met: (r) => r >= 5 },
  },
  {
    title: "Durable channel vs the in-memory channel of the same run, same shape",
    kind: "throughput",
    ids: ["chan.durable.memory", "chan.durable"],
    baseline: "chan.durable.memory",
    versus: "memory",
    target: { id: "chan.durable", text: "durable ≥ 0.3× in-memory", met: (r) => r >= 0.3 },
  },
  {
    title: "One durable send at a time (completes once synced) vs a JetStream publish awaiting its ack",
    kind: "latency",
    ids: ["nats.js.puback", "chan.durable.send"],
    baseline: "nats.js.puback",
    versus: "JetStream",
  },
  {
    title:
      "Replicated channel (/@, R=3) vs JetStream R=3 through the same 3-node cluster: a producer " +
      "(via another daemon than the host) → a consumer, 100-byte messages (bench/chan-replicated.ts)",
    kind: "throughput",
    ids: ["nats.jetstream.r3", "chan.replicated"],
    baseline: "nats.jetstream.r3",
    versus: "JetStream",
    target: { id: "chan.replicated", text: "≥ 1.0× JetStream R=3", met: (r) => r >= 1 },
  },
  {
    title: "One replicated send at a time (stored on a quorum) vs a JetStream R=3 publish awaiting its ack",
    kind: "latency",
    ids: ["nats.jetstream.r3.send", "chan.replicated.send"],
    baseline: "nats.jetstream.r3.send",
    versus: "JetStream",
  },
  {
    title: "Takeover of a replicated channel after kill -9 of its host, to the next completed send",
    kind: "latency",
    ids: ["chan.replicated.takeover"],
    baseline: "chan.replicated.takeover",
    versus: "itself",
  },
  {
    title: "select with a case on a /@ channel (R=3) vs the plain operation on it, one at a time",
    kind: "latency",
    ids: [
      "select.replicated.send",
      "select.replicated.select-send",
      "select.replicated.recv",
      "select.replicated.select-recv",
    ],
    baseline: "select.replicated.send",
    versus: "plain send",
  },
];

function usage(): string {
  return `usage: node --import tsx bench/run.ts [--runs N] [${Object.keys(scenarioModules).join("|")} ...]`;
}

/** How many times each comparison runs by default; the table shows the median run. */
const DEFAULT_RUNS = 3;

function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  let commit: string | undefined;
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot, stdio: "pipe" }).toString().trim();
  } catch {
    commit = undefined;
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memTotalBytes: os.totalmem(),
    // An object, not an array: biome lints bench/** and would re-wrap a JSON array of numbers.
    loadavg: Object.fromEntries(["1m", "5m", "15m"].map((k, i) => [k, os.loadavg()[i]])),
    commit,
  };
}

async function runScenario(name: string): Promise<ScenarioResult & { error?: string; ms: number }> {
  const started = performance.now();
  const load = scenarioModules[name];
  if (!load) throw new Error(`unknown scenario ${name}`);
  const scenario = await load();
  const log = (line: string): void => console.error(`  ${line}`);
  console.error(`» ${name}: ${scenario.description}`);
  let prepared: Record<string, unknown> | undefined;
  try {
    prepared = await scenario.prepare?.(log);
  } catch (e) {
    return { rows: [], error: errorText(e), ms: performance.now() - started };
  }
  const signal = AbortSignal.timeout(scenario.budgetMs);
  // Every live role and server of the scenario listens for the deadline until it exits (chan-fanin
  // runs ten at once, beside the scenario's own waits): not a leak, so no warning past ten.
  setMaxListeners(0, signal);
  const procs = new Procs(signal);
  try {
    // Every wait inside a scenario gives up when `signal` fires, so it normally returns the rows it
    // has; this later net only catches a scenario that ignores its signal.
    const net = AbortSignal.timeout(scenario.budgetMs + 3000);
    const result = await withDeadline(scenario.run({ signal, procs, log }), net, name);
    return { ...result, info: { ...prepared, ...result.info }, ms: performance.now() - started };
  } catch (e) {
    return { rows: [], error: errorText(e), ms: performance.now() - started };
  } finally {
    await procs.closeAll();
  }
}

const LABEL = 52;

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function figures(row: Row): string[] {
  if (row.error) return [`failed: ${row.error}`];
  if (row.kind === "throughput") return [row.msgsPerSec === undefined ? "—" : formatRate(row.msgsPerSec)];
  if (row.kind === "bandwidth") return [row.bytesPerSec === undefined ? "—" : formatBytesRate(row.bytesPerSec)];
  return [
    row.p50Us === undefined ? "—" : formatMicros(row.p50Us),
    row.p99Us === undefined ? "—" : formatMicros(row.p99Us),
  ];
}

function headline(row: Row): number | undefined {
  if (row.kind === "bandwidth") return row.bytesPerSec;
  return row.kind === "throughput" ? row.msgsPerSec : row.p50Us;
}

/** The run whose headline figure is the median (the lower middle for an even count), with every run's figure. */
function median(all: Row[]): Row {
  const ok = all.filter((r) => !r.error && headline(r) !== undefined);
  if (ok.length === 0) return all[all.length - 1] as Row;
  const sorted = [...ok].sort((a, b) => (headline(a) as number) - (headline(b) as number));
  const mid = sorted[Math.floor((sorted.length - 1) / 2)] as Row;
  if (all.length === 1) return mid;
  const failedRuns = all.length - ok.length;
  const row: Row = { ...mid, runs: ok.map((r) => headline(r) as number) };
  if (failedRuns > 0) row.note = `${mid.note ? `${mid.note}; ` : ""}${failedRuns} of ${all.length} runs failed`;
  return row;
}

function renderTable(rows: Map<string, Row>): { text: string; verdicts: Record<string, unknown>[] } {
  const lines: string[] = [];
  const verdicts: Record<string, unknown>[] = [];
  for (const c of comparisons) {
    const present = c.ids.map((id) => rows.get(id)).filter((r): r is Row => r !== undefined);
    if (present.length === 0) continue;
    const base = rows.get(c.baseline);
    const baseValue = base && !base.error ? headline(base) : undefined;
    lines.push("", c.title);
    const vs = c.versus ?? "NATS";
    const head =
      c.kind !== "latency"
        ? `  ${pad("", LABEL)}${pad(c.kind === "bandwidth" ? "bytes/s" : "msgs/s", 16, true)}${pad(`vs ${vs}`, 10, true)}`
        : `  ${pad("", LABEL)}${pad("p50", 11, true)}${pad("p99", 11, true)}${pad(`p50 vs ${vs}`, 13, true)}${pad(`p99 vs ${vs}`, 13, true)}`;
    lines.push(head);
    for (const row of present) {
      const f = figures(row);
      let line = `  ${pad(row.label, LABEL)}`;
      if (row.error) {
        line += f[0];
      } else if (c.kind !== "latency") {
        const v = headline(row);
        const ratio = v !== undefined && baseValue ? `${(v / baseValue).toFixed(2)}×` : "—";
        line += `${pad(f[0] ?? "", 16, true)}${pad(ratio, 10, true)}`;
      } else {
        const p99Base = base && !base.error ? base.p99Us : undefined;
        const r50 = row.p50Us !== undefined && baseValue ? `${(row.p50Us / baseValue).toFixed(2)}×` : "—";
        const r99 = row.p99Us !== undefined && p99Base ? `${(row.p99Us / p99Base).toFixed(2)}×` : "—";
        line += `${pad(f[0] ?? "", 11, true)}${pad(f[1] ?? "", 11, true)}${pad(r50, 13, true)}${pad(r99, 13, true)}`;
      }
      if (row.runs && row.runs.length > 1) {
        const fmt = c.kind === "throughput" ? formatRate : c.kind === "bandwidth" ? formatBytesRate : formatMicros;
        line += `  [runs: ${row.runs.map((v) => fmt(v)).join(", ")}]`;
      }
      if (row.note) line += `  (${row.note})`;
      lines.push(line);
    }
    const target = c.target ? rows.get(c.target.id) : undefined;
    const tv = target && !target.error ? headline(target) : undefined;
    if (c.target && target) {
      let verdict: string;
      let ratio: number | undefined;
      if (tv === undefined) verdict = "not measured";
      else if (baseValue === undefined) verdict = `no ${c.baseline} figure in this run to compare with`;
      else {
        ratio = tv / baseValue;
        verdict = `${ratio.toFixed(2)}× — ${c.target.met(ratio) ? "met" : "NOT met"}`;
        // Rounds run every scenario in turn, so run i of one row and of the baseline ran side by side.
        const runs = target.runs;
        if (c.target.perRun && runs && base?.runs && runs.length === base.runs.length && runs.length > 1) {
          const per = runs.map((v, i) => v / (base.runs?.[i] as number));
          const met = per.filter((r) => c.target?.met(r)).length;
          verdict += `; run by run ${per.map((r) => `${r.toFixed(2)}×`).join(", ")} (met in ${met} of ${per.length})`;
        }
      }
      lines.push(`  target: circuit ${c.target.text}: ${verdict}`);
      verdicts.push({
        target: `${c.target.id} ${c.target.text}`,
        ratio,
        met: ratio === undefined ? null : c.target.met(ratio),
      });
    }
  }
  return { text: lines.join("\n"), verdicts };
}

// Sub-microsecond digits of a rate or a latency are noise; three decimals keep the JSON readable.
function roundFigures(_key: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("-h") || args.includes("--help")) {
    console.log(usage());
    return 0;
  }
  let runs = DEFAULT_RUNS;
  const at = args.indexOf("--runs");
  if (at >= 0) {
    runs = Number(args[at + 1]);
    if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
      console.error(`--runs takes a whole number from 1 to 20\n${usage()}`);
      return 2;
    }
    args.splice(at, 2);
  }
  const unknown = args.filter((a) => !Object.hasOwn(scenarioModules, a));
  if (unknown.length > 0) {
    console.error(`unknown scenario: ${unknown.join(", ")}\n${usage()}`);
    return 2;
  }
  const names =
    args.length > 0 ? Object.keys(scenarioModules).filter((n) => args.includes(n)) : Object.keys(scenarioModules);
  const machine = machineInfo();
  const scenarios: Record<string, unknown[]> = {};
  const byId = new Map<string, Row[]>();
  let failed = false;
  // Rounds run every scenario in turn, so a noisy stretch of the machine falls on circuit and on
  // its peers alike; each figure is then the median of its runs.
  for (let round = 1; round <= runs; round++) {
    if (runs > 1) console.error(`\n=== run ${round} of ${runs}`);
    for (const name of names) {
      if (round > 1 && (await scenarioModules[name]?.())?.once) continue;
      const r = await runScenario(name);
      (scenarios[name] ??= []).push(r);
      for (const row of r.rows) byId.set(row.id, [...(byId.get(row.id) ?? []), row]);
      if (r.error || r.rows.some((row) => row.error)) failed = true;
      if (r.error) console.error(`  ${name} failed: ${r.error}`);
    }
  }
  const rows = new Map<string, Row>();
  for (const [id, all] of byId) rows.set(id, median(all));
  const { text, verdicts } = renderTable(rows);
  console.log(
    `\ncircuit bench — ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}, ${machine.date}` +
      `${machine.commit ? `, commit ${machine.commit}` : ""}` +
      `${runs > 1 ? `; each figure is the median of ${runs} runs` : ""}${text}`,
  );
  for (const name of names) {
    for (const r of scenarios[name] ?? []) {
      const err = (r as { error?: string }).error;
      if (err) console.log(`\n${name}: failed: ${err}`);
    }
  }
  const dir = join(repoRoot, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "latest.json");
  writeFileSync(file, `${JSON.stringify({ machine, scenarios, targets: verdicts }, roundFigures, 2)}\n`);
  console.log(`\nwrote ${file}`);
  return failed ? 1 : 0;
}

const stopOnSignal = (sig: NodeJS.Signals): void => {
  // Harness's exit hook kills every child by PID.
  console.error(`\n${sig}: stopping`);
  process.exit(130);
};
process.once("SIGINT", stopOnSignal);
process.once("SIGTERM", stopOnSignal);

process.exitCode = await main();
