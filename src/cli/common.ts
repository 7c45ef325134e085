// What every command shares: global options, dialling, output, and turning failures into one line
// on stderr with the documented exit code.

import { existsSync, readFileSync } from "node:fs";
import type { Client } from "../client/client.js";
import type { SelectCase } from "../client/select.js";
import { CircuitError, Timeout } from "../errors.js";
import { parsePath } from "../wire/path.js";
import { DEFAULT_URL } from "../wire/url.js";

export interface GlobalOptions {
  dial?: string;
  discover?: string;
  key?: string;
  json?: boolean;
}

/** A wrong use of the command line: exit code 2. */
export class UsageError extends Error {}

/** The dial URL: -d, else $CIRCUIT (a URL or a file holding one), else the default. */
export function dialUrl(g: GlobalOptions): string {
  if (g.dial) return g.dial;
  const env = process.env.CIRCUIT?.trim();
  if (env) {
    if (env.startsWith("circuit://")) return env;
    if (existsSync(env)) return readFileSync(env, "utf8").trim().split(/\s+/).join(",");
    throw new UsageError(`CIRCUIT=${env} is neither a circuit:// URL nor a file holding one`);
  }
  return DEFAULT_URL;
}

/** Dials, runs `fn`, and closes the client whatever happens. */
export async function withClient<T>(g: GlobalOptions, fn: (c: Client) => Promise<T>): Promise<T> {
  // The client library is loaded only by commands that dial (not by --help, keygen, completion…).
  // A command handles a value or two: msgpackr's native string decoder, which pays off over
  // millions of values, would cost more to load (tens of ms) than it saves. (`circuit start` runs
  // serve.cjs, which is built without it: scripts/bundle-cli.mjs.)
  process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= "true";
  const [{ dial }, { parseGroup }] = await Promise.all([import("../client/client.js"), import("../client/keys.js")]);
  let target: string | { discover: string };
  const discover = g.discover ?? process.env.CIRCUIT_DISCOVER?.trim();
  try {
    if (discover) parseGroup(discover);
    if (g.dial && g.discover) throw new UsageError("give either -d URL or --discover GROUP:PORT, not both");
    target = discover && !g.dial ? { discover } : dialUrl(g);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
  const key = await keyOption(g);
  let client: Client;
  try {
    client = await dial(target, { key });
  } catch (err) {
    if (err instanceof TypeError) throw new UsageError(err.message);
    throw err;
  }
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The cluster key from --key FILE or $CIRCUIT_KEY (a file path, or the key itself). */
export async function keyOption(g: GlobalOptions): Promise<Buffer | undefined> {
  const spec = g.key ?? process.env.CIRCUIT_KEY?.trim();
  if (!spec) return undefined;
  const { loadKey } = await import("../client/keys.js");
  try {
    return loadKey(spec);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * `--timeout MS`: checked at once, but the clock starts only when the returned function is called,
 * right before the blocking operation (not while dialling or reading stdin).
 */
export function timeoutSignal(ms: string | undefined): () => AbortSignal | undefined {
  if (ms === undefined) return () => undefined;
  if (!/^\d{1,10}$/.test(ms))
    throw new UsageError(`--timeout takes a whole number of milliseconds, got ${JSON.stringify(ms)}`);
  const n = Number(ms);
  return () => AbortSignal.timeout(n);
}

/**
 * Runs one channel operation under `--timeout`: 0 means "only if it can happen at once" (a select
 * with a default, so the answer does not race a timer); otherwise the clock starts now.
 */
export async function withTimeout<T>(
  ms: string | undefined,
  c: SelectCase,
  op: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  const deadline = timeoutSignal(ms);
  if (ms !== undefined && Number(ms) === 0) {
    const { select } = await import("../client/select.js");
    const r = await select([c], { default: true });
    if (r.index < 0) throw new Timeout("nothing could happen at once (--timeout 0)");
    return r.value as T;
  }
  return op(deadline());
}

/** Validates a path argument before any I/O, so that a typo is a usage error, not a failed operation. */
export function pathArg(p: string): string {
  try {
    parsePath(p);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return p;
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, jsonReplacer, 2)}\n`);
}

/** JSON for values JSON cannot hold as they are: bigints as strings, bytes as base64 objects. */
export function jsonReplacer(_k: string, v: unknown): unknown {
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") };
  if (
    v &&
    typeof v === "object" &&
    (v as { type?: string }).type === "Buffer" &&
    Array.isArray((v as { data?: unknown }).data)
  ) {
    return { $bytes: Buffer.from((v as { data: number[] }).data).toString("base64") };
  }
  return v;
}

/** Reads all of stdin; `onChunk` hears of each piece as it comes (for progress). */
export async function readStdin(onChunk?: (n: number) => void): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) {
    parts.push(c as Buffer);
    onChunk?.((c as Buffer).length);
  }
  return Buffer.concat(parts);
}

/** Maps a failure to its exit code after printing one line. */
export function report(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`circuit: ${err.message}\n`);
    return 2;
  }
  if (err instanceof Error && (err.name === "TimeoutError" || err instanceof Timeout)) {
    process.stderr.write(`circuit: Timeout: ${err instanceof Timeout ? err.message : "timed out"}\n`);
    return 1;
  }
  if (err instanceof CircuitError) {
    process.stderr.write(`circuit: ${err.code}: ${err.message}${refusedHint(err)}\n`);
    return 1;
  }
  if (err instanceof TypeError || err instanceof RangeError) {
    process.stderr.write(`circuit: ${err.message}\n`);
    return 2;
  }
  process.stderr.write(`circuit: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

/** For a dial that nothing answered (connection refused): what to do about it, on the same line. */
function refusedHint(err: CircuitError): string {
  if ((err.cause as NodeJS.ErrnoException | undefined)?.code !== "ECONNREFUSED") return "";
  return " (is a daemon running there? start one with `circuit start`, or name another with -d URL or CIRCUIT)";
}
