// Resource limits of a process (DESIGN.md §3.2 Limits): one check that the client runs before any
// I/O and the daemon runs again on what arrives, so both refuse the same values the same way.

/** What a process and all its descendants may use together. Every field is optional. */
export interface ProcLimits {
  /** Memory (resident plus kernel memory charged to the group), in bytes; over it the kernel kills. */
  memoryBytes?: number;
  /** CPU time as a number of cores: 0.5 is half of one core, 2 is two whole cores. */
  cpus?: number;
  /** Processes and threads alive at once; a fork beyond it fails with EAGAIN. */
  pids?: number;
}

/** Below this a process cannot even start its loader; the kernel would kill it at once. */
export const MIN_MEMORY_BYTES = 1024 * 1024;
/** The CFS quota's floor is 1 ms per 100 ms period. */
export const MIN_CPUS = 0.01;
export const MAX_CPUS = 4096;
export const MAX_PIDS = 4_194_304;

/**
 * Checks limits from a caller or from the wire: undefined/null → undefined (no limits); an object
 * with at least one limit → the normalised limits. TypeError/RangeError says what is wrong.
 */
export function checkLimits(raw: unknown): ProcLimits | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== "object" || Array.isArray(raw))
    throw new TypeError("limits must be an object { memoryBytes?, cpus?, pids? }");
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== "memoryBytes" && k !== "cpus" && k !== "pids") throw new TypeError(`unknown limit ${JSON.stringify(k)}`);
  }
  const out: ProcLimits = {};
  if (o.memoryBytes !== undefined && o.memoryBytes !== null) {
    const m = o.memoryBytes;
    if (typeof m !== "number" || !Number.isSafeInteger(m))
      throw new TypeError("limits.memoryBytes must be a whole number of bytes");
    if (m < MIN_MEMORY_BYTES)
      throw new RangeError(`limits.memoryBytes must be at least ${MIN_MEMORY_BYTES} (1 MiB), got ${m}`);
    out.memoryBytes = m;
  }
  if (o.cpus !== undefined && o.cpus !== null) {
    const c = o.cpus;
    if (typeof c !== "number" || !Number.isFinite(c)) throw new TypeError("limits.cpus must be a number of cores");
    if (c < MIN_CPUS || c > MAX_CPUS)
      throw new RangeError(`limits.cpus must be between ${MIN_CPUS} and ${MAX_CPUS}, got ${c}`);
    out.cpus = c;
  }
  if (o.pids !== undefined && o.pids !== null) {
    const p = o.pids;
    if (typeof p !== "number" || !Number.isInteger(p)) throw new TypeError("limits.pids must be a whole number");
    if (p < 1 || p > MAX_PIDS) throw new RangeError(`limits.pids must be between 1 and ${MAX_PIDS}, got ${p}`);
    out.pids = p;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

const UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * A size as people write it: "536870912", "512M", "1.5G", "64KiB", "2g" (binary units). RangeError
 * for anything else, or for a size that is not a whole number of bytes.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new RangeError(`not a size: ${JSON.stringify(text)} (bytes, or a number with K, M, G or T)`);
  const n = Number(m[1]) * (UNITS[(m[2] ?? "").toUpperCase()] ?? 1);
  if (!Number.isSafeInteger(Math.floor(n)) || (m[2] === "" && !Number.isInteger(n))) {
    throw new RangeError(`not a whole number of bytes: ${JSON.stringify(text)}`);
  }
  return Math.floor(n);
}
