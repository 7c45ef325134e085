// Free capacity and placement (DESIGN.md §3.7): pure functions over the loads that servers gossip
// with their membership records. No I/O: the daemon measures (src/daemon/load-meter.ts), the
// membership carries, and these functions only rank.

/**
 * What a server tells the circuit about itself, a few dozen bytes riding on its membership item.
 * Several servers on one host report the same host figures; what tells them apart is what each
 * one's own processes use and reserve.
 */
export interface ServerLoad {
  /** CPU cores of the host. */
  cores: number;
  /** Host CPU in use, in cores, averaged over the last few seconds (every process of the host). */
  busy: number;
  /** Host memory free and total, in bytes. */
  memFree: number;
  memTotal: number;
  /** Processes this server runs now. */
  procs: number;
  /** Cores those processes use (their groups, averaged like `busy`). */
  ownCpu: number;
  /** Resident memory of those processes, in bytes. */
  ownMem: number;
  /** Cores and bytes those processes reserve through their limits. */
  resCpu: number;
  resMem: number;
  /** Counts the server's publications: a receiver can tell a fresh figure from an old one. */
  seq: number;
}

/** What a new process asks for; a process without limits asks for nothing in particular. */
export interface PlaceRequest {
  cpus?: number;
  memoryBytes?: number;
}

/** A live server as placement sees it: its load is missing until its first publication arrives. */
export interface Candidate {
  id: string;
  load?: ServerLoad;
  /** Processes placed there lately that its gossiped load may not count yet. */
  pending?: PlaceRequest[];
  /** Replicas of the service being placed that already run there (spread before doubling up). */
  replicas?: number;
}

/**
 * The weight of one running process in cores when ranking, whatever it uses: a tie-breaker that
 * makes idle processes spread instead of piling onto one server until the CPU figures move.
 */
export const PROC_WEIGHT_CORES = 0.05;
/** The cores one process without a CPU limit is taken to need when ranking (not when fitting). */
export const DEFAULT_REQUEST_CORES = 0.1;

const FIELDS = ["cores", "busy", "memFree", "memTotal", "procs", "ownCpu", "ownMem", "resCpu", "resMem", "seq"];

/** The load in a member's metadata, or undefined when it carries none or a malformed one. */
export function loadOf(meta: Record<string, unknown> | undefined): ServerLoad | undefined {
  const l = meta?.load;
  if (typeof l !== "object" || l === null || Array.isArray(l)) return undefined;
  const o = l as Record<string, unknown>;
  for (const k of FIELDS) {
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) return undefined;
  }
  return o as unknown as ServerLoad;
}

/**
 * Free cores and bytes of a server for ranking. The host's idle cores, less what this server's own
 * processes use or reserve (whichever is more): their use is counted twice on purpose — once in
 * the host figure, once as this server's — so that two servers on one host differ by their own
 * processes, and a server whose processes already burn CPU is not chosen over an idle neighbour.
 * Pending placements count as reservations until the server's own figures include them.
 */
export function freeCapacity(c: Candidate): { cpus: number; memoryBytes: number; fitsCpus: number } {
  const l = c.load;
  let pendCpu = 0;
  let pendMem = 0;
  for (const p of c.pending ?? []) {
    pendCpu += p.cpus ?? DEFAULT_REQUEST_CORES;
    pendMem += p.memoryBytes ?? 0;
  }
  if (!l) return { cpus: -pendCpu, memoryBytes: Number.MAX_SAFE_INTEGER, fitsCpus: Number.MAX_SAFE_INTEGER };
  const own = Math.max(l.ownCpu, l.resCpu);
  const cpus = l.cores - l.busy - own - l.procs * PROC_WEIGHT_CORES - pendCpu;
  const memoryBytes = Math.max(0, Math.min(l.memFree, l.memTotal - l.resMem) - pendMem);
  // Fitting is by reservations, which do not come and go with the moment's use.
  const fitsCpus = l.cores - l.resCpu - pendCpu;
  return { cpus, memoryBytes, fitsCpus };
}

/** Whether the request can go there at all: its CPU within unreserved cores, its memory free. */
export function fits(c: Candidate, req: PlaceRequest): boolean {
  const f = freeCapacity(c);
  return (req.cpus ?? 0) <= f.fitsCpus + 1e-9 && (req.memoryBytes ?? 0) <= f.memoryBytes;
}

/**
 * The server a new process should go to: among those it fits, first the ones without a replica of
 * the same service (so every server gets one before any gets two), then the most free
 * cores, then the most free memory, then the id (so every daemon decides alike). Undefined when it
 * fits nowhere.
 */
export function choose(cands: readonly Candidate[], req: PlaceRequest = {}): string | undefined {
  let best: { id: string; replicas: number; cpus: number; mem: number } | undefined;
  for (const c of cands) {
    if (!fits(c, req)) continue;
    const f = freeCapacity(c);
    const x = { id: c.id, replicas: c.replicas ?? 0, cpus: f.cpus, mem: f.memoryBytes };
    if (!best || better(x, best)) best = x;
  }
  return best?.id;
}

function better(
  a: { id: string; replicas: number; cpus: number; mem: number },
  b: { id: string; replicas: number; cpus: number; mem: number },
): boolean {
  // Only the first replica per server is by count; beyond that the load decides.
  if (Math.min(a.replicas, 1) !== Math.min(b.replicas, 1)) return a.replicas < b.replicas;
  // CPU figures within 0.01 core are a tie: noise must not decide over memory.
  if (Math.abs(a.cpus - b.cpus) > 0.01) return a.cpus > b.cpus;
  if (a.mem !== b.mem) return a.mem > b.mem;
  return a.id < b.id;
}
