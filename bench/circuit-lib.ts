// The slice of the circuit library the benchmarks use, loaded at run time. Declaring it here keeps
// the bench type-checkable while the library is being rewritten, and says exactly which promises
// of DESIGN.md §9 the figures depend on.

import { existsSync } from "node:fs";

export interface BenchChan {
  send(value: unknown): Promise<void>;
  recv(): Promise<unknown>;
  iterate(opts: { prefetch: number }): AsyncIterableIterator<unknown>;
  consume(fn: (value: unknown) => unknown, opts: { prefetch: number; signal?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}

interface BenchAnchor {
  makeChan(cap: number, opts?: { durable?: boolean }): Promise<BenchChan>;
  get(): Promise<unknown>;
}

export interface BenchClient {
  serverId: string;
  walk(path: string): BenchAnchor;
  close(): Promise<void>;
}

// The library as users run it: dist/, what tsc built (`npm run bench` builds first). BENCH_LIB=src
// runs the sources through tsx instead (its transform differs: names kept on every closure).
const built = new URL("../dist/index.js", import.meta.url);
const libUrl =
  process.env.BENCH_LIB !== "src" && existsSync(built) ? built.href : new URL("../src/index.ts", import.meta.url).href;

/** Dials `url`; with `key` (a key file's path, or undefined), over TLS with that cluster key. */
export async function dialCircuit(url: string, key?: unknown): Promise<BenchClient> {
  const lib = (await import(libUrl)) as { dial(url: string, opts?: { key?: string }): Promise<BenchClient> };
  return lib.dial(url, key === undefined ? undefined : { key: String(key) });
}

/** bench/NAME under `server` (default: the dial-in server). */
function anchor(client: BenchClient, name: string, server = client.serverId): BenchAnchor {
  return client.walk(`/${server}/bench/${name}`);
}

/** Makes the channel, or takes the one already there (a rerun against the same daemon). */
export async function openChan(client: BenchClient, name: string, cap: number, durable = false): Promise<BenchChan> {
  const a = anchor(client, name);
  try {
    return await a.makeChan(cap, durable ? { durable } : undefined);
  } catch (e) {
    if ((e as { code?: unknown }).code !== "AnchorBusy") throw e;
    return getChan(client, name);
  }
}

export async function getChan(client: BenchClient, name: string, server?: string): Promise<BenchChan> {
  const got = await anchor(client, name, server).get();
  if (got === null || typeof (got as Partial<BenchChan>).send !== "function") {
    throw new Error(`no channel at bench/${name}`);
  }
  return got as BenchChan;
}

/** Checks a received value is the 100-byte payload the bench sends, so a codec slip shows. */
export function checkPayload(v: unknown, bytes: number): void {
  if (!(v instanceof Uint8Array) || v.length !== bytes) {
    const what = v instanceof Uint8Array ? `${v.length} bytes` : typeof v;
    throw new Error(`expected a ${bytes}-byte Uint8Array, got ${what}`);
  }
}
