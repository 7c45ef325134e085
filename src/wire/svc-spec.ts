// The spec of a service (DESIGN.md §3.7) and every supervision and scaling parameter, with its
// default and its trade-off. One check that the client runs before any I/O and the daemon runs
// again on what arrives, so both refuse the same specs the same way.

import type { ProcCommand } from "./shapes.js";
import { parseName } from "./zone-file.js";

export type RestartPolicy = "always" | "on-failure" | "never";

/** Scale on the backlog of a channel: desired = ceil(len / perReplica), within min…max. */
export interface ChanAutoscale {
  /** Full path of the channel whose `len` is the backlog, e.g. "/X…/jobs". */
  chan: string;
  perReplica: number;
}

/** Scale on the replicas' average CPU: desired = ceil(running × average / cpuPercent). */
export interface CpuAutoscale {
  /** Target average CPU per replica, in percent of one core. */
  cpuPercent: number;
}

/**
 * Publish the running replicas in a nameserver (DESIGN.md §3.5): `name` gets an A (AAAA) record
 * per address of a server running a replica, `r<n>.name` one per replica, and with `port` an SRV
 * record per replica (`name TTL IN SRV 0 1 port r<n>.name.`). Kept current as replicas start,
 * stop and move; removed when the service is scrubbed.
 */
export interface ServiceDns {
  /** Full path of the nameserver element, /X…/ns. */
  nameserver: string;
  /** The service's domain name, e.g. "workers.circuit.". */
  name: string;
  port?: number;
  /**
   * TTL of the records in seconds (default 5): resolvers cache a dead replica's address this
   * long; shorter means more queries.
   */
  ttl?: number;
}

export interface ServiceSpec {
  /** What each replica runs; `cmd.limits` are enforced and are also the replica's placement request. */
  cmd: ProcCommand;
  /** Replicas to start with (default 1; with autoscale, clamped to min…max). */
  replicas?: number;
  /** Bounds of scale() and of autoscaling (defaults: 0, or 1 with autoscale; 1000). */
  min?: number;
  max?: number;
  /**
   * When an exited replica is started again: "always" (default), "on-failure" (a non-zero exit
   * or a signal) or "never". A replica lost with its server is always started elsewhere.
   */
  restart?: RestartPolicy;
  /**
   * Delay before the first restart of a crashing replica, doubling with each consecutive crash up
   * to maxBackoffMs (defaults 500 ms and 30 s). Short delays bring a replica that hit a passing
   * fault back sooner; long ones spare the circuit a crash loop of a command that will never
   * work. A replica that has run for maxBackoffMs without crashing starts again from backoffMs.
   */
  backoffMs?: number;
  maxBackoffMs?: number;
  /**
   * Restart intensity, as in OTP supervisors: more than maxRestarts restarts (of all replicas
   * together) within withinMs and the service stops all replicas and says why (defaults 5 in
   * 60 s). Higher tolerates more flakiness before giving up; lower surfaces a broken command
   * sooner. With backoff doubling, a single crashing replica reaches the limit only if its
   * delays add up to less than withinMs — keep withinMs above the sum of the first maxRestarts
   * delays, or the service retries forever at maxBackoffMs.
   */
  maxRestarts?: number;
  withinMs?: number;
  /** Scale automatically between min and max on a channel's backlog or on average CPU. */
  autoscale?: ChanAutoscale | CpuAutoscale;
  /**
   * Scale-down stabilisation (default 30 s): the service scales down only to the highest count
   * the metric asked for during the last cooldownMs, and not sooner than cooldownMs after its
   * last change; it scales up at once. Longer never flaps on a bursty metric but keeps idle
   * replicas longer; shorter frees them sooner and may flap.
   */
  cooldownMs?: number;
  /**
   * How often the autoscale metric is read (default 1 s): the reaction time to a spike is about
   * this plus start-up; each reading is one request to the channel's server (or one peek per
   * replica for CPU).
   */
  intervalMs?: number;
  /** Keep the replicas' addresses in a nameserver (see ServiceDns). */
  dns?: ServiceDns;
}

/** A spec with every default filled in (what `peek` shows). */
export type FullServiceSpec = Required<Omit<ServiceSpec, "autoscale" | "dns">> & Pick<ServiceSpec, "autoscale" | "dns">;

export const SERVICE_DEFAULTS = Object.freeze({
  replicas: 1,
  max: 1000,
  restart: "always" as RestartPolicy,
  backoffMs: 500,
  maxBackoffMs: 30_000,
  maxRestarts: 5,
  withinMs: 60_000,
  cooldownMs: 30_000,
  intervalMs: 1000,
});

/** Most replicas of one service. */
export const MAX_REPLICAS = 1000;
const MAX_MS = 24 * 3600_000;

const KEYS = new Set([
  "cmd",
  "replicas",
  "min",
  "max",
  "restart",
  "backoffMs",
  "maxBackoffMs",
  "maxRestarts",
  "withinMs",
  "autoscale",
  "cooldownMs",
  "intervalMs",
  "dns",
]);

function whole(o: Record<string, unknown>, k: string, lo: number, hi: number, dflt: number): number {
  const v = o[k];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v)) throw new TypeError(`service ${k} must be a whole number`);
  if (v < lo || v > hi) throw new RangeError(`service ${k} must be between ${lo} and ${hi}, got ${v}`);
  return v;
}

/**
 * Checks a spec from a caller or from the wire and fills in the defaults. `checkCmd` checks the
 * command (the client's and the daemon's checks of a command differ in wording only).
 * TypeError/RangeError says what is wrong.
 */
export function checkServiceSpec(raw: unknown, checkCmd: (cmd: unknown) => ProcCommand): FullServiceSpec {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError("a service spec is an object { cmd, replicas?, min?, max?, restart?, … }");
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.has(k)) throw new TypeError(`unknown service field ${JSON.stringify(k)}`);
  if (o.cmd === undefined) throw new TypeError("a service spec needs cmd: { path, args?, … }");
  const cmd = checkCmd(o.cmd);
  let autoscale: ChanAutoscale | CpuAutoscale | undefined;
  if (o.autoscale !== undefined && o.autoscale !== null) {
    const a = o.autoscale as Record<string, unknown>;
    if (typeof a !== "object" || Array.isArray(a))
      throw new TypeError("autoscale is { chan, perReplica } or { cpuPercent }");
    if (a.chan !== undefined) {
      if (typeof a.chan !== "string" || !a.chan.startsWith("/X") || a.chan.split("/").length < 3)
        throw new TypeError("autoscale.chan must be the full path of a channel, /XID/…");
      const k = a.perReplica;
      if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > 1e9)
        throw new RangeError("autoscale.perReplica must be a whole number from 1");
      if (Object.keys(a).some((x) => x !== "chan" && x !== "perReplica"))
        throw new TypeError("autoscale on a channel takes { chan, perReplica }");
      autoscale = { chan: a.chan, perReplica: k };
    } else if (a.cpuPercent !== undefined) {
      const p = a.cpuPercent;
      if (typeof p !== "number" || !Number.isFinite(p) || p <= 0 || p > 100_000)
        throw new RangeError("autoscale.cpuPercent must be a number above 0");
      if (Object.keys(a).some((x) => x !== "cpuPercent")) throw new TypeError("autoscale on CPU takes { cpuPercent }");
      autoscale = { cpuPercent: p };
    } else throw new TypeError("autoscale is { chan, perReplica } or { cpuPercent }");
  }
  let dns: ServiceDns | undefined;
  if (o.dns !== undefined && o.dns !== null) {
    const d = o.dns as Record<string, unknown>;
    if (typeof d !== "object" || Array.isArray(d)) throw new TypeError("dns is { nameserver, name, port?, ttl? }");
    for (const k of Object.keys(d)) {
      if (!["nameserver", "name", "port", "ttl"].includes(k))
        throw new TypeError(`unknown dns field ${JSON.stringify(k)}`);
    }
    if (typeof d.nameserver !== "string" || !d.nameserver.startsWith("/X") || d.nameserver.split("/").length < 3)
      throw new TypeError("dns.nameserver must be the full path of a nameserver, /XID/…");
    if (typeof d.name !== "string") throw new TypeError("dns.name must be a domain name");
    const name = parseName(d.name);
    dns = { nameserver: d.nameserver, name: name.endsWith(".") ? name : `${name}.` };
    if (d.port !== undefined) dns.port = whole(d, "port", 1, 65535, 0);
    dns.ttl = whole(d, "ttl", 0, 86_400, 5);
  }
  const min = whole(o, "min", 0, MAX_REPLICAS, autoscale ? 1 : 0);
  const max = whole(o, "max", 0, MAX_REPLICAS, SERVICE_DEFAULTS.max);
  if (max < min) throw new RangeError(`service max (${max}) is below min (${min})`);
  let replicas = whole(o, "replicas", 0, MAX_REPLICAS, Math.max(SERVICE_DEFAULTS.replicas, min));
  if (autoscale) replicas = Math.min(max, Math.max(min, replicas));
  else if (replicas < min || replicas > max)
    throw new RangeError(`service replicas (${replicas}) must be within min…max (${min}…${max})`);
  const restart = o.restart ?? SERVICE_DEFAULTS.restart;
  if (restart !== "always" && restart !== "on-failure" && restart !== "never")
    throw new TypeError('service restart is "always", "on-failure" or "never"');
  const backoffMs = whole(o, "backoffMs", 1, MAX_MS, SERVICE_DEFAULTS.backoffMs);
  const maxBackoffMs = whole(o, "maxBackoffMs", 1, MAX_MS, Math.max(backoffMs, SERVICE_DEFAULTS.maxBackoffMs));
  if (maxBackoffMs < backoffMs) throw new RangeError("service maxBackoffMs is below backoffMs");
  return {
    cmd,
    replicas,
    min,
    max,
    restart,
    backoffMs,
    maxBackoffMs,
    maxRestarts: whole(o, "maxRestarts", 0, 1_000_000, SERVICE_DEFAULTS.maxRestarts),
    withinMs: whole(o, "withinMs", 1, MAX_MS, SERVICE_DEFAULTS.withinMs),
    ...(autoscale ? { autoscale } : {}),
    cooldownMs: whole(o, "cooldownMs", 0, MAX_MS, SERVICE_DEFAULTS.cooldownMs),
    intervalMs: whole(o, "intervalMs", 50, MAX_MS, SERVICE_DEFAULTS.intervalMs),
    ...(dns ? { dns } : {}),
  };
}

/** One replica as `peek` shows it. */
export interface ReplicaStat {
  /** Full path of its proc element, `/XB/svc/web/r3`; "" while it waits for a server. */
  path: string;
  /** The server running it, `/XB`, or null while it waits. */
  server: string | null;
  phase: "pending" | "starting" | "running" | "backoff" | "stopping" | "exited";
  /** How often it was started again (after an exit, a failed start, or its server's death). */
  restarts: number;
}

/** A service's state as of the moment its server answered. */
export interface ServiceStat {
  spec: FullServiceSpec;
  replicas: ReplicaStat[];
  /** How many replicas the service wants now (by hand or by autoscaling). */
  desired: number;
  /** "stopped": the restart intensity was exceeded; `lastEvent` says why. */
  state: "running" | "stopped";
  /** The last decision of the supervisor and its reason. */
  lastEvent: { at: string; kind: string; message: string } | null;
  /**
   * A service under /@ only: the server ID of the daemon supervising it now (the holder of its
   * lease). Another daemon takes over when that one dies, adopting the running replicas.
   */
  supervisor?: string;
}
