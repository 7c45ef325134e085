// Real daemons and CLI processes for tests: everything runs the built `dist/cli/circuit.cjs` (the
// published command, package.json "bin") in its own OS process, the way a user would. Every process
// spawned here is tracked, and whatever is still running when a test file ends is killed, so a
// failing test never leaves a daemon behind.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = fileURLToPath(new URL("../../dist/cli/circuit.cjs", import.meta.url));

/** Variables that would make a CLI under test dial something other than what the test says. */
const AMBIENT = ["CIRCUIT", "CIRCUIT_KEY", "CIRCUIT_DISCOVER"];

const live = new Set<ChildProcess>();

function track(proc: ChildProcess): ChildProcess {
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  // A spawn failure must surface through the exit promises, not as an unhandled 'error' event.
  proc.once("error", () => live.delete(proc));
  return proc;
}

// Last resort for a test runner that exits without running `after` hooks.
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/** SIGKILLs every process spawned here that is still running and waits until they are gone. */
export async function killAll(): Promise<void> {
  await killEach(live);
}

/** SIGKILLs each of `procs` that is still running and waits until they are gone. */
export async function killEach(procs: Iterable<ChildProcess>): Promise<void> {
  const alive = [...procs].filter(running);
  for (const p of alive) p.kill("SIGKILL");
  await Promise.all(alive.map(exited));
}

/** Resolves when `proc` has exited (at once if it already has). */
export function exited(proc: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => {
    proc.once("exit", (code, signal) => resolve({ code, signal }));
    proc.once("error", () => resolve({ code: proc.exitCode, signal: proc.signalCode }));
  });
}

/**
 * Calls `f` with each line `proc` writes to its stdout (piped), as it comes; a last line cut off by
 * the process's death is dropped.
 */
export function onLines(proc: ChildProcess, f: (line: string) => void): void {
  let partial = "";
  proc.stdout?.setEncoding("utf8").on("data", (s: string) => {
    const lines = (partial + s).split("\n");
    partial = lines.pop() as string;
    for (const l of lines) f(l);
  });
}

/** True while `proc` has not exited. */
export function running(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

function env(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const k of AMBIENT) delete e[k];
  return { ...e, ...extra };
}

export interface Daemon {
  /** `circuit://127.0.0.1:PORT/XID` as the daemon printed it. */
  url: string;
  /** The server ID, `X` + 16 hex digits. */
  id: string;
  pid: number;
  proc: ChildProcess;
  /** Resolves with the daemon's exit status. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the daemon has written to stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `circuit start --addr 127.0.0.1:0 …extraArgs` and resolves once it has printed its URL,
 * failing after `urlMs` (10 s unless told; a daemon with --store may wait up to its store's
 * startMs, 15 s, for JetStream to elect leaders before it listens).
 */
export async function startDaemon(extraArgs: string[] = [], urlMs = 10_000): Promise<Daemon> {
  const proc = track(
    spawn(process.execPath, [CLI, "start", "--addr", "127.0.0.1:0", ...extraArgs], {
      cwd: ROOT,
      env: env(undefined),
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const done = exited(proc);
  let stderr = "";
  proc.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));

  const firstLine = new Promise<string>((resolve, reject) => {
    let out = "";
    const onData = (s: string) => {
      out += s;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        proc.stdout!.off("data", onData);
        proc.stdout!.resume(); // keep draining so later output can never block the daemon
        resolve(out.slice(0, nl));
      }
    };
    proc.stdout!.setEncoding("utf8").on("data", onData);
    proc.once("error", reject);
    // 'close', not 'exit': by then all of stderr has been read and can go into the message.
    proc.once("close", (code, signal) =>
      reject(new Error(`daemon exited (code ${code}, signal ${signal}) before printing its URL; stderr: ${stderr}`)),
    );
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`daemon printed no URL within ${urlMs / 1000} s; stderr: ${stderr}`)),
      urlMs,
    );
  });

  let line: string;
  try {
    line = await Promise.race([firstLine, timeout]);
  } catch (err) {
    proc.kill("SIGKILL");
    await done;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const m = /^circuit:\/\/127\.0\.0\.1:\d+\/(X[0-9a-f]{16})$/.exec(line);
  if (!m) {
    proc.kill("SIGKILL");
    await done;
    throw new Error(`daemon's first stdout line is not a circuit URL: ${JSON.stringify(line)}; stderr: ${stderr}`);
  }

  return {
    url: line,
    id: m[1]!,
    pid: proc.pid!,
    proc,
    exited: done,
    stderr: () => stderr,
    kill: (signal = "SIGKILL") => void proc.kill(signal),
    async stop() {
      if (!running(proc)) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
      await done;
      clearTimeout(t);
    },
  };
}

export interface CliResult {
  /** Exit code, or null when the process was killed by a signal (e.g. after `timeoutMs`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliOptions {
  /** Written to stdin, which is then ended; without it stdin is ended at once. */
  input?: Buffer | string;
  /** Leave stdin open for the test to write to and end (spawnCli only; `input` is ignored). */
  openStdin?: boolean;
  /** Laid over the test's environment (from which CIRCUIT* variables are removed). */
  env?: Record<string, string>;
}

export interface RunCliOptions extends CliOptions {
  /** SIGKILL the process after this long (default 15 s); `code` is then null. */
  timeoutMs?: number;
}

/** A running CLI process whose output is being collected; `result` resolves when it exits. */
export type CliProcess = ChildProcess & { result: Promise<CliResult> };

/** Spawns `circuit …args` and returns while it runs; the caller (or `killAll`) must end it. */
export function spawnCli(args: string[], opts: CliOptions = {}): CliProcess {
  const proc = track(
    spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: env(opts.env), stdio: ["pipe", "pipe", "pipe"] }),
  );
  const out: Buffer[] = [];
  let stderr = "";
  proc.stdout!.on("data", (b: Buffer) => out.push(b));
  proc.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  // The CLI may exit (e.g. on a usage error) before reading its input: that is not a test failure.
  proc.stdin!.on("error", () => {});
  if (!opts.openStdin) proc.stdin!.end(opts.input);
  const result = (async (): Promise<CliResult> => {
    // 'close' (not 'exit') so that all of stdout and stderr has been read.
    const [code, signal] = (await once(proc, "close")) as [number | null, NodeJS.Signals | null];
    return { code, signal, stdout: Buffer.concat(out), stderr };
  })();
  return Object.assign(proc, { result });
}

/** Runs `circuit …args` to completion (or until `timeoutMs`, then SIGKILL). */
export async function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const proc = spawnCli(args, opts);
  const t = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
  try {
    return await proc.result;
  } finally {
    clearTimeout(t);
  }
}
