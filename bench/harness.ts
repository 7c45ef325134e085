// Shared plumbing for the benchmark scenarios: child processes that report over IPC, hard
// deadlines, and the figures' shapes and units. Every role runs in its own OS process so that no
// measurement shares an event loop with the thing it measures.
import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const roleEntry = fileURLToPath(new URL("./role.ts", import.meta.url));
const keeperEntry = fileURLToPath(new URL("./keeper.ts", import.meta.url));

/** One line of the results table. Absent figures mean "not measured"; `error` says why. */
export interface Row {
  /** Stable key used to pair rows across scenarios, e.g. `nats.pubsub`. */
  id: string;
  label: string;
  kind: "throughput" | "latency" | "bandwidth";
  msgsPerSec?: number;
  /** For "bandwidth" rows: payload bytes per second at the consumer. */
  bytesPerSec?: number;
  messages?: number;
  seconds?: number;
  p50Us?: number;
  p99Us?: number;
  meanUs?: number;
  minUs?: number;
  maxUs?: number;
  rounds?: number;
  /** The headline figure of every run, in run order, when the bench ran several (the row is the median run). */
  runs?: number[];
  note?: string;
  error?: string;
}

export interface ScenarioResult {
  rows: Row[];
  info?: Record<string, unknown>;
}

export interface ScenarioContext {
  /** Aborted when the scenario's deadline passes; every wait must give up then. */
  signal: AbortSignal;
  procs: Procs;
  log(line: string): void;
}

export interface RoleContext {
  /** Sends a message to the orchestrator. */
  report(type: string, data?: Record<string, unknown>): void;
  /** Resolves with the next orchestrator message of this type. */
  next(type: string): Promise<Message>;
}

export type RoleFn = (args: Record<string, unknown>, ctx: RoleContext) => Promise<void>;

export interface Scenario {
  name: string;
  description: string;
  /** Hard bound on the whole scenario, start-up included. */
  budgetMs: number;
  /** Run in the first round only: its figures are not compared with a peer's. */
  once?: boolean;
  /** One-off set-up outside the budget (installing a peer); returns facts for the JSON. */
  prepare?(log: (line: string) => void): Promise<Record<string, unknown>>;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
  roles: Record<string, RoleFn>;
}

export interface Message {
  type: string;
  [key: string]: unknown;
}

// Children are tracked globally so that even an uncaught failure in the orchestrator kills them
// on the way out; `exit` handlers may only do synchronous work, and process.kill is.
// Keepers get SIGTERM rather than SIGKILL so that they can stop their server.
const live = new Map<ChildProcess, NodeJS.Signals>();
let exitHookInstalled = false;
function track(child: ChildProcess, sig: NodeJS.Signals): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const [c, s] of live) killPid(c, s);
    });
  }
  live.set(child, sig);
  child.once("exit", () => live.delete(child));
}

function killPid(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, sig);
  } catch {
    // already gone
  }
}

/** Keeps the last few KiB of a stream so a failure can say what the child printed. */
class Tail {
  private text = "";
  constructor(private readonly max = 4096) {}
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text.trim();
  }
}

function describeExit(name: string, code: number | null, sig: NodeJS.Signals | null, tail: Tail): string {
  const how = sig ? `killed by ${sig}` : `exited with code ${code}`;
  // Stack frames and Node's version banner say nothing about what went wrong.
  const said = tail
    .toString()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("at ") && !/^Node\.js v/.test(l) && l !== "}" && l !== "^")
    .slice(-4)
    .join(" | ");
  return `${name} ${how}${said ? `: ${said}` : ""}`;
}

/** A role process started by `Procs.role`; messages are queued so none is missed. */
export class RoleHandle {
  private readonly queue: Message[] = [];
  private readonly waiters: { type: string; resolve: (m: Message) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  readonly output = new Tail();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    signal: AbortSignal,
  ) {
    child.stdout?.on("data", (d) => this.output.push(d));
    child.stderr?.on("data", (d) => this.output.push(d));
    child.on("message", (m: Message) => {
      if (m.type === "error") {
        this.fail(new Error(`${name} failed: ${String(m.message)}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(m);
      else this.queue.push(m);
    });
    // The deadline's listener goes when the process does: a scenario starts many roles on one signal.
    const onAbort = () => this.fail(new Error(`${name}: deadline passed`));
    signal.addEventListener("abort", onAbort, { once: true });
    child.once("exit", (code, sig) => {
      signal.removeEventListener("abort", onAbort);
      this.fail(new Error(describeExit(name, code, sig, this.output)));
    });
    child.once("error", (e) => this.fail(new Error(`${name}: ${e.message}`)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  next(type: string): Promise<Message> {
    const i = this.queue.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0] as Message);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ type, resolve, reject }));
  }

  send(type: string, data: Record<string, unknown> = {}): void {
    if (this.child.connected) this.child.send({ type, ...data });
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }
}

/** A plain spawned process (a server under test) with its output kept. */
export interface Spawned {
  child: ChildProcess;
  stdout: Tail;
  stderr: Tail;
  /** Rejects when the process exits or the deadline passes. */
  exited: Promise<never>;
}

/** Owns every child of one scenario; `closeAll` stops them by PID. */
export class Procs {
  private readonly children: { child: ChildProcess; gentle: boolean }[] = [];

  constructor(private readonly signal: AbortSignal) {}

  /**
   * Forks `bench/role.ts` running `scenario`'s `role` in a fresh Node process; with `netns`, in that
   * network namespace (through `ip netns exec`, which the process becomes: its pid is the role's).
   */
  role(
    scenario: string,
    role: string,
    args: Record<string, unknown> = {},
    deadlineMs = 60_000,
    netns?: string,
  ): RoleHandle {
    this.checkDeadline(`${scenario}/${role}`);
    // BENCH_ROLE_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles every role process.
    const execArgv = [...(process.env.BENCH_ROLE_NODE_ARGS ?? "").split(" ").filter(Boolean), "--import", "tsx"];
    const argv = [scenario, role, JSON.stringify(args), String(deadlineMs)];
    const stdio: ["ignore", "pipe", "pipe", "ipc"] = ["ignore", "pipe", "pipe", "ipc"];
    const child =
      netns === undefined
        ? fork(roleEntry, argv, { cwd: repoRoot, execArgv, stdio })
        : spawn("ip", ["netns", "exec", netns, process.execPath, ...execArgv, roleEntry, ...argv], {
            cwd: repoRoot,
            stdio,
          });
    // Profiled roles are stopped with SIGTERM (they exit on it, and --cpu-prof writes its profile).
    this.add(child, Boolean(process.env.BENCH_ROLE_NODE_ARGS));
    return new RoleHandle(`${scenario}/${role}`, child, this.signal);
  }

  /**
   * Spawns a server under `bench/keeper.ts`, which stops it if this process dies however it
   * dies; stop() sends the keeper SIGTERM and it passes that on.
   */
  spawn(name: string, cmd: string, args: string[]): Spawned {
    this.checkDeadline(name);
    const child = fork(keeperEntry, [cmd, ...args], {
      cwd: repoRoot,
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    this.add(child, true);
    const stdout = new Tail();
    const stderr = new Tail();
    child.stdout?.on("data", (d) => stdout.push(d));
    child.stderr?.on("data", (d) => stderr.push(d));
    const exited = new Promise<never>((_, reject) => {
      const onAbort = () => reject(new Error(`${name}: deadline passed`));
      this.signal.addEventListener("abort", onAbort, { once: true });
      child.once("exit", (code, sig) => {
        this.signal.removeEventListener("abort", onAbort);
        reject(new Error(describeExit(name, code, sig, stderr)));
      });
      child.once("error", (e) => reject(new Error(`${name}: ${e.message}`)));
    });
    exited.catch(() => {});
    return { child, stdout, stderr, exited };
  }

  // An abort listener added after the fact never fires, so nothing may start once the deadline
  // has passed.
  private checkDeadline(what: string): void {
    if (this.signal.aborted) throw new Error(`${what}: deadline passed`);
  }

  private add(child: ChildProcess, gentle: boolean): void {
    track(child, gentle ? "SIGTERM" : "SIGKILL");
    this.children.push({ child, gentle });
  }

  /** Stops one child: SIGTERM then SIGKILL after `graceMs` for servers, SIGKILL for roles. */
  async stop(child: ChildProcess, graceMs = 4000): Promise<void> {
    const entry = this.children.find((c) => c.child === child);
    if (!entry || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    if (!entry.gentle) {
      killPid(child, "SIGKILL");
      await gone;
      return;
    }
    killPid(child, "SIGTERM");
    const timer = setTimeout(() => killPid(child, "SIGKILL"), graceMs);
    await gone;
    clearTimeout(timer);
  }

  async closeAll(): Promise<void> {
    // Roles first, so a server is not stopped under clients that would then log errors.
    const roles = this.children.filter((c) => !c.gentle).map((c) => this.stop(c.child));
    await Promise.all(roles);
    await Promise.all(this.children.filter((c) => c.gentle).map((c) => this.stop(c.child)));
  }
}

/** Resolves with the first line `child` prints on stdout that matches, or rejects on exit. */
export function firstMatch(s: Spawned, stream: "stdout" | "stderr", re: RegExp): Promise<RegExpMatchArray> {
  const src = stream === "stdout" ? s.child.stdout : s.child.stderr;
  if (!src) return Promise.reject(new Error(`${stream} is not piped`));
  return new Promise<RegExpMatchArray>((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer): void => {
      buf += d.toString();
      for (const line of buf.split("\n")) {
        const m = line.match(re);
        if (m) {
          src.off("data", onData);
          resolve(m);
          return;
        }
      }
      // Keep a partial last line for the next chunk; complete lines have been looked at.
      buf = buf.slice(buf.lastIndexOf("\n") + 1);
    };
    src.on("data", onData);
    s.exited.catch(reject);
  });
}

/** User + system CPU seconds of process `pid` so far (from /proc; clock ticks of 1/100 s). */
export function cpuSeconds(pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * Starts a circuit daemon on a free loopback port (with `extraArgs`, e.g. `--join URL`) and
 * resolves with its URL, which the daemon prints as its first stdout line; with `where`, in that
 * network namespace and on that address instead.
 */
export async function startCircuitDaemon(
  procs: Procs,
  extraArgs: string[] = [],
  where: { netns?: string; addr?: string } = {},
): Promise<{ url: string; server: Spawned }> {
  // The built daemon, as users run it (`npm run bench` builds first); tsx's loader alone would
  // add about 40 MB to its memory.
  const built = join(repoRoot, "dist", "cli", "circuit.cjs");
  const entry = existsSync(built) ? [built] : ["--import", "tsx", "src/cli/main.ts"];
  // BENCH_DAEMON_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the daemon.
  const nodeArgs = (process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const args = [...nodeArgs, ...entry, "start", "--addr", where.addr ?? "127.0.0.1:0", ...extraArgs];
  const server =
    where.netns === undefined
      ? procs.spawn("circuit daemon", process.execPath, args)
      : procs.spawn("circuit daemon", "ip", ["netns", "exec", where.netns, process.execPath, ...args]);
  const m = await firstMatch(server, "stdout", /^(circuit:\/\/\S+)/);
  return { url: m[1] as string, server };
}

/** Writes a new cluster key to `file` with the built CLI's `circuit keygen`, as a user makes one. */
export function makeClusterKey(file: string): void {
  execFileSync(process.execPath, [join(repoRoot, "dist", "cli", "circuit.cjs"), "keygen", file], {
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 20_000,
  });
}

/** Races `p` against the scenario deadline so no wait outlives it. */
export function withDeadline<T>(p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error(`${what}: deadline passed`));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error(`${what}: deadline passed`));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Nearest-rank percentiles of round-trip samples in milliseconds, reported in microseconds. */
export function latencySummary(samplesMs: ArrayLike<number>): {
  rounds: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  minUs: number;
  maxUs: number;
} {
  const sorted = Float64Array.from(samplesMs).sort();
  const n = sorted.length;
  if (n === 0) throw new Error("no latency samples");
  const rank = (p: number): number => sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    rounds: n,
    p50Us: rank(50) * 1000,
    p99Us: rank(99) * 1000,
    meanUs: (sum / n) * 1000,
    minUs: (sorted[0] as number) * 1000,
    maxUs: (sorted[n - 1] as number) * 1000,
  };
}

/** How many messages each throughput run sends before the measured ones (circuit and NATS alike). */
export const WARM_MESSAGES = 200_000;

/**
 * Counts a consumer's arrivals in two phases: the first `warm` messages, straight after the
 * processes started (their code still being compiled), then the next `count`, measured from the
 * arrival of message `warm` to the arrival of the last one. Reports "done" once: when the last
 * message arrives, when finish() is called, or `limitMs` after the first message, so a stalled
 * run still yields a (bad) figure instead of hanging.
 */
export class Phases {
  private n = 0;
  private t0 = 0;
  private t1 = 0;
  private done = false;
  constructor(
    readonly warm: number,
    readonly count: number,
    private readonly limitMs: number,
    private readonly ctx: RoleContext,
  ) {
    if (warm < 2 || count < 1) throw new RangeError("Phases needs warm ≥ 2 and count ≥ 1");
  }

  get finished(): boolean {
    return this.done;
  }

  get received(): number {
    return this.n;
  }

  /** One more message arrived; true once the run is finished. */
  arrive(): boolean {
    const n = ++this.n;
    if (n === 1) {
      this.t0 = performance.now();
      setTimeout(() => this.finish("time limit"), this.limitMs);
    } else if (n === this.warm) this.t1 = performance.now();
    if (n >= this.warm + this.count) this.finish("count reached");
    return this.done;
  }

  /** Reports the figures so far (once): `rate` for the measured phase, `coldRate` for the first. */
  finish(why: string): void {
    if (this.done) return;
    this.done = true;
    const now = performance.now();
    const cold = this.n >= this.warm ? this.warm - 1 : Math.max(0, this.n - 1);
    const coldSeconds = ((this.n >= this.warm ? this.t1 : now) - this.t0) / 1000;
    const measured = Math.max(0, this.n - this.warm);
    const seconds = measured > 0 ? (now - this.t1) / 1000 : 0;
    this.ctx.report("done", {
      received: this.n,
      measured,
      seconds,
      rate: seconds > 0 ? measured / seconds : 0,
      coldRate: coldSeconds > 0 ? cold / coldSeconds : 0,
      why,
    });
  }
}

/**
 * The two rows of a phased throughput run from its "done" report (or its error): the measured
 * phase and the first `WARM_MESSAGES`.
 */
export function phaseRows(
  main: { id: string; label: string },
  cold: { id: string; label: string },
  expected: number,
  done: Message | { error: string },
): Row[] {
  if ("error" in done) {
    return [
      { ...main, kind: "throughput", error: String(done.error) },
      { ...cold, kind: "throughput", error: String(done.error) },
    ];
  }
  const measured = Number(done.measured);
  return [
    {
      ...main,
      kind: "throughput",
      msgsPerSec: Number(done.rate),
      messages: measured,
      seconds: Number(done.seconds),
      note: measured < expected ? `${done.why} after ${measured} of ${expected}` : undefined,
    },
    { ...cold, kind: "throughput", msgsPerSec: Number(done.coldRate) },
  ];
}

/** A latency row from a latencySummary() report (or the error that stopped it). */
export function latencyRow(
  id: string,
  label: string,
  s: Record<string, unknown> | { error: string },
  note?: string,
): Row {
  if ("error" in s) return { id, label, kind: "latency", error: String(s.error) };
  return {
    id,
    label,
    kind: "latency",
    rounds: Number(s.rounds),
    p50Us: Number(s.p50Us),
    p99Us: Number(s.p99Us),
    meanUs: Number(s.meanUs),
    minUs: Number(s.minUs),
    maxUs: Number(s.maxUs),
    note,
  };
}

export function formatRate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)} M msg/s`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)} k msg/s`;
  return `${perSec.toFixed(0)} msg/s`;
}

export function formatBytesRate(perSec: number): string {
  if (perSec >= 1e9) return `${(perSec / 1e9).toFixed(2)} GB/s`;
  return `${(perSec / 1e6).toFixed(1)} MB/s`;
}

export function formatMicros(us: number): string {
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return `${us.toFixed(us < 100 ? 1 : 0)} µs`;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
