// Producer processes and waits shared by the tests of "a completed send is in the channel": each
// producer is test/fixtures/exit-producer.mjs, a real OS process that exits right after its sends.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import type { Chan } from "../../src/index.ts";
import { exited } from "./daemon.ts";

const fixture = new URL("../fixtures/exit-producer.mjs", import.meta.url).pathname;

export interface ProducerReport {
  sent: number;
  peakRss: number;
}

/** Runs the exit-producer fixture (see its header for `args`) to its end; returns its report. */
export async function produce(url: string, path: string, args: string[]): Promise<ProducerReport> {
  const p = spawn(process.execPath, [fixture, url, path, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  p.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const timer = setTimeout(() => p.kill("SIGKILL"), 50_000);
  // 'close', not 'exit': by then all of stdout has been read.
  const [code] = (await once(p, "close")) as [number | null];
  clearTimeout(timer);
  assert.equal(code, 0, `producer failed: ${err}`);
  return JSON.parse(out.trim().split("\n").pop() as string) as ProducerReport;
}

/**
 * The channel's length once it reaches `len` (or what it is after 20 s): a completed send's bytes
 * are in the kernel on their way, and the daemon may still be reading them when the producer has
 * exited.
 */
export async function lenReaches(ch: Chan<unknown>, len: number): Promise<number> {
  const end = Date.now() + 20_000;
  for (;;) {
    const st = await ch.stat();
    if (st.len >= len || Date.now() > end) return st.len;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `count` CPU-bound processes (each ends by itself after 2 minutes); returns their stop. */
export function burners(count: number): () => Promise<void> {
  const ps = Array.from({ length: count }, () =>
    spawn(process.execPath, ["-e", "const end = Date.now() + 120000; while (Date.now() < end) {}"], {
      stdio: "ignore",
    }),
  );
  return async () => {
    for (const p of ps) p.kill("SIGKILL");
    await Promise.all(ps.map((p) => exited(p)));
  };
}

/** Receives everything buffered in `ch` (it must be closed first). */
export async function drain<T>(ch: Chan<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of ch.iterate({ prefetch: 64 })) out.push(v);
  return out;
}
