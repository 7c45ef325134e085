// Daemons on a data directory that a test kills and restarts (durable channels, DESIGN §3.6): the
// restarted daemon listens on the same port with the same --data, so it has the same URL and ID.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import fc from "fast-check";
import { type Daemon, killAll, startDaemon } from "./daemon.ts";

/** A fresh temporary data directory; `rm()` removes it. */
export function dataDir(tag: string): { dir: string; rm(): void } {
  const dir = mkdtempSync(join(tmpdir(), `circuit-${tag}-`));
  return { dir, rm: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A maker of data directories for one test file: after its tests, every daemon is killed and every
 * directory it made is removed.
 */
export function dataDirs(): (tag: string) => string {
  const dirs: { rm(): void }[] = [];
  after(async () => {
    await killAll();
    for (const d of dirs) d.rm();
  });
  return (tag) => {
    const t = dataDir(tag);
    dirs.push(t);
    return t.dir;
  };
}

export function portOf(d: Daemon): number {
  return Number(/:(\d+)\//.exec(d.url)?.[1]);
}

/** Starts a daemon on `dir` (on `port`, or a free one), with extra arguments. */
export function startOn(dir: string, port = 0, extra: string[] = []): Promise<Daemon> {
  return startDaemon(["--addr", `127.0.0.1:${port}`, "--data", dir, ...extra]);
}

/** kill -9, then a new daemon on the same directory and port; returns it. */
export async function crashAndRestart(
  d: Daemon,
  dir: string,
  extra: string[] = [],
  afterKill?: () => Promise<unknown>,
): Promise<Daemon> {
  d.kill("SIGKILL");
  await d.exited;
  await afterKill?.();
  const port = portOf(d);
  // The port is free again at once (the listener died with the process); retry briefly anyway.
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOn(dir, port, extra);
    } catch (err) {
      if (attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * `n` random delays (ms) from `min` to `max` for a crash test's kills, from a seed that
 * DURABLE_SEED sets (the test reports it, so a failure can be run again the same way).
 */
export function killDelays(n: number, min: number, max: number): { seed: number; delays: number[] } {
  const seed = Number(process.env.DURABLE_SEED ?? Date.now() % 1_000_000);
  const delays = fc.sample(fc.array(fc.integer({ min, max }), { minLength: n, maxLength: n }), {
    seed,
    numRuns: 1,
  })[0] as number[];
  return { seed, delays };
}
