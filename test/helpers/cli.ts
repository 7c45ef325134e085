// Helpers for the CLI test files: one \`circuit\` OS process per command against real daemons on
// 127.0.0.1 port 0, with assertions on exit codes and one-line errors.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChanStat } from "../../src/wire/shapes.ts";
import {
  type CliOptions,
  type CliProcess,
  type CliResult,
  type Daemon,
  type RunCliOptions,
  runCli,
  running,
  spawnCli,
  startDaemon,
} from "./daemon.ts";

/** One line on stderr, no stack trace. */
export function assertOneLine(stderr: string): void {
  assert.match(stderr, /^[^\n]+\n$/, `expected one line on stderr, got ${JSON.stringify(stderr)}`);
  assert.ok(!stderr.includes("    at "), `stack trace on stderr: ${stderr}`);
}

export function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
}

/** Exit 1 with `circuit: CODE: message` (or exit 2 with any one line when `code` is omitted). */
export function assertFails(r: CliResult, exit: 1 | 2, code?: string): void {
  assert.equal(r.code, exit, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
  assertOneLine(r.stderr);
  if (code) assert.match(r.stderr, new RegExp(`^circuit: ${code}: `));
}

/** Exit 1 because a --timeout expired. */
export function assertTimedOut(r: CliResult): void {
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  assertOneLine(r.stderr);
  assert.match(r.stderr, /time/i);
}

// Bounding a wait is the same everywhere: helpers/wait.ts.
export { within } from "./wait.ts";

/** A port on 127.0.0.1 with nothing listening (it was free a moment ago). */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** Commands against one daemon, dialled with `-d URL` before the command. */
export class Cli {
  private n = 0;
  constructor(readonly d: Daemon) {}

  get root(): string {
    return `/${this.d.id}`;
  }

  /** A fresh path under the server, so tests never share an anchor. */
  path(name: string): string {
    return `${this.root}/${name}-${++this.n}`;
  }

  run(args: string[], opts?: RunCliOptions): Promise<CliResult> {
    return runCli(["-d", this.d.url, ...args], opts);
  }

  spawn(args: string[], opts?: CliOptions): CliProcess {
    return spawnCli(["-d", this.d.url, ...args], opts);
  }

  async ok(args: string[], opts?: RunCliOptions): Promise<CliResult> {
    const r = await this.run(args, opts);
    assertOk(r);
    return r;
  }

  async mkchan(cap: number, name = "c"): Promise<string> {
    const p = this.path(name);
    await this.ok(["mkchan", p, String(cap)]);
    return p;
  }

  async send(path: string, value: string | Buffer): Promise<void> {
    await this.ok(["send", path], { input: value, timeoutMs: 5_000 });
  }

  async recv(path: string): Promise<string> {
    return (await this.ok(["recv", path], { timeoutMs: 5_000 })).stdout.toString();
  }

  async ls(path: string, ...flags: string[]): Promise<string[]> {
    const out = (await this.ok(["ls", ...flags, path])).stdout.toString();
    return out.split("\n").filter((l) => l !== "");
  }

  async stat(path: string): Promise<ChanStat> {
    return JSON.parse((await this.ok(["peek", path])).stdout.toString()) as ChanStat;
  }

  /** Polls `peek` until `pred` holds (at most 5 s). */
  async until(path: string, pred: (s: ChanStat) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const s = await this.stat(path);
      if (pred(s)) return;
      if (Date.now() > deadline)
        assert.fail(`${path}: ${what} did not happen within 5 s; last stat ${JSON.stringify(s)}`);
      await sleep(50);
    }
  }

  /**
   * Shows that `proc` is blocked: the daemon counts it as waiting, and ~500 ms later the process
   * is still running.
   */
  async assertBlocked(proc: CliProcess, path: string, side: "waitingSenders" | "waitingReceivers"): Promise<void> {
    await this.until(path, (s) => s[side] >= 1, `${side} >= 1`);
    await sleep(500);
    if (!running(proc)) {
      const r = await proc.result;
      assert.fail(`expected a blocked process, but it exited ${r.code}; stderr: ${r.stderr}`);
    }
  }
}

/** A daemon for the tests of one describe block, stopped after them whatever happened. */
export function daemonFor(): () => Cli {
  let cli: Cli | undefined;
  before(async () => {
    cli = new Cli(await startDaemon());
  });
  after(async () => {
    await cli?.d.stop();
  });
  return () => {
    assert.ok(cli, "daemon did not start");
    return cli;
  };
}
