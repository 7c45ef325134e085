// Drives one service (DESIGN.md §3.7): runs the supervision core (src/element/supervisor.ts) on a
// timer, places each replica it starts (src/cluster/placement.ts), makes and watches the replicas'
// proc elements on whatever server runs them, and reads the autoscale metric.
//
// Requests (session.ts dispatches them to the daemon):
//   {op: "place", req: {cpus?, memoryBytes?}}   → "/X…" (NoCapacity when nothing fits)
//   {op: "mksvc", path, spec}                   → {kind: "svc"}; spec per src/wire/svc-spec.ts
//   {op: "svc", path, do: "peek"}               → ServiceStat
//   {op: "svc", path, do: "scale", n}           → ServiceStat right after the decision
//   {op: "scrub", path}                         → null once every replica is gone
//
// Replicas live on other servers, so the driver works through a client of the circuit
// (`ServiceRemote`): the daemon layer may not import the client library, so whoever starts the
// daemon hands it one (src/cli/start.ts does, with `dial`).

import type { Candidate, PlaceRequest } from "../cluster/placement.js";
import { choose } from "../cluster/placement.js";
import { Supervisor } from "../element/supervisor.js";
import { CircuitError } from "../errors.js";
import { monotonicMs, wallMsAt } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import type { ProcCommand, ProcStat } from "../wire/shapes.js";
import type { FullServiceSpec, ReplicaStat, ServiceStat } from "../wire/svc-spec.js";

/** A process made through the circuit (the client's Proc fits). */
export interface RemoteProc {
  wait(): Promise<ProcStat>;
  peek(): Promise<ProcStat>;
  scrub(): Promise<void>;
}

/** What a service needs of the circuit (the client's Client fits, through a thin adapter). */
export interface ServiceRemote {
  /**
   * Makes a process at path, scrubbed by its server when server `tiedTo` ("/X…") leaves; with
   * no `tiedTo`, it outlives whoever made it (the replicas of a service under /@).
   */
  makeProc(path: string, cmd: ProcCommand, tiedTo?: string): Promise<RemoteProc>;
  /**
   * The running processes at `dir`'s children named r<n> (a server's replicas of a service under
   * /@, for a supervisor that takes the service over). None when `dir` does not exist.
   */
  replicasAt(dir: string): Promise<{ n: number; proc: RemoteProc }[]>;
  /** A channel's `len` (for backlog autoscaling). */
  chanLen(path: string): Promise<number>;
  /** Adds a record (zone-file syntax) to the nameserver at nsPath. */
  dnsSet(nsPath: string, rr: string): Promise<void>;
  /** Removes every record of a name there (none: fine). */
  dnsUnset(nsPath: string, name: string): Promise<void>;
  close(): Promise<void>;
}

export interface ServiceHostDeps {
  remote(): Promise<ServiceRemote>;
  /** Live servers with their gossiped loads and the placements still pending there. */
  candidates(): Candidate[];
  /** A placement was made: count it against the server until its load shows it. */
  placed(server: string, req: PlaceRequest): void;
  /** The host part of a server's advertised URL (for DNS records), or undefined if unknown. */
  hostOf(server: string): string | undefined;
  log: Logger;
  /** This server's id: the replicas are tied to it. */
  selfId: string;
}

/** What a supervisor keeps of a service under /@ for its successor: replicas wanted, and restarts by slot. */
export interface SvcRecord {
  desired: number;
  /** Each replica slot (its number) with its restarts so far. */
  slots: Record<string, number>;
}

/** What a service under /@ (DESIGN §12) adds: its replicas outlive this supervisor. */
export interface SharedService {
  /**
   * The replicas wanted, or the slots and their restarts, changed: keep them where a successor
   * reads them.
   */
  record(r: SvcRecord): void;
  /**
   * Confirms this daemon still supervises the service (renews its lease now), before it stops a
   * replica it did not start: two daemons may believe for a moment that they both do.
   */
  confirm(): Promise<boolean>;
  /** The daemon supervising the service now, for peek. */
  supervisor: string;
}

const TICK_MS = 100;
const SHUN_MS = 10_000;
/**
 * How often the supervisor of a service under /@ lists its replicas on every server: to adopt
 * running ones it does not know of, and stop copies of a slot another supervisor started in the
 * moment both held the lease. Shorter converges sooner; each round costs one request per server.
 */
const SCAN_MS = 2000;

interface Running {
  server: string;
  proc?: RemoteProc;
  /** Tells callbacks of an earlier start of the same replica from this one's. */
  gen: number;
}

export class ServiceHost {
  readonly sup: Supervisor;
  private readonly live = new Map<number, Running>();
  private gen = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly metricTimer: NodeJS.Timeout | undefined;
  private readonly t0 = monotonicMs();
  private closed = false;
  private reading = false;
  private readonly stops = new Set<Promise<void>>();
  /**
   * Servers we just lost a replica to, or failed to reach: not chosen again until membership
   * has judged them (they leave) or SHUN_MS has passed — membership may still list a server whose
   * connection has just broken.
   */
  private readonly shunned = new Map<string, number>();
  readonly path: string;
  /** DNS records published, by name (sorted), and whether an update is under way or due. */
  private published = new Map<string, string[]>();
  private dnsBusy = false;
  private dnsAgain = false;
  /** After a failed update: not before then, and said once until an update succeeds. */
  private dnsRetryAt = 0;
  private dnsFailing = false;
  private readonly scanTimer: NodeJS.Timeout | undefined;
  private scanning = false;
  private lastRecord: string;
  /** Resolves once the replicas found running at the start are adopted (at once without /@). */
  readonly adopting: Promise<void> = Promise.resolve();
  /** Stepped down (detach): the replicas are the next supervisor's. */
  private detached = false;

  constructor(
    private readonly deps: ServiceHostDeps,
    /** The service's anchor, /XA/svc/web. */
    readonly names: string[],
    readonly spec: FullServiceSpec,
    /** For a service under /@: its replicas are not tied to this daemon, and it may adopt some. */
    private readonly shared?: SharedService,
    /** What the predecessor kept (a successor's start): the count wanted, the slots and their restarts. */
    private readonly prior?: SvcRecord,
  ) {
    this.path = `/${names.join("/")}`;
    const a = spec.autoscale;
    this.sup = new Supervisor({
      ...spec,
      autoscale: a ? ("chan" in a ? { perReplica: a.perReplica } : { cpuPercent: a.cpuPercent }) : undefined,
    });
    if (prior && prior.desired !== this.sup.desired) this.sup.scale(prior.desired, 0);
    this.lastRecord = JSON.stringify(this.recordNow());
    this.timer = setInterval(() => this.step(), TICK_MS);
    this.timer.unref();
    if (a) {
      this.metricTimer = setInterval(() => void this.readMetric(), spec.intervalMs);
      this.metricTimer.unref();
    }
    if (shared) {
      // Replicas already running (a predecessor's) are adopted before any is started.
      this.closed = true;
      this.scanTimer = setInterval(() => void this.scan(), SCAN_MS);
      this.scanTimer.unref();
      this.adopting = this.scan(true).finally(() => {
        if (this.detached) return;
        this.closed = false;
        const found = this.sup.running();
        // The predecessor's replicas not found running start again, counted as lost.
        for (const [n, restarts] of Object.entries(prior?.slots ?? {}))
          this.sup.missing(Number(n), restarts, this.now());
        if (found > 0)
          this.deps.log.info(
            { event: "svc-adopted", path: this.path, running: found, desired: this.sup.desired },
            `service ${this.path}: ${found} replica${found === 1 ? "" : "s"} adopted running, ${this.sup.desired} wanted`,
          );
        this.step();
      });
    } else setImmediate(() => this.step());
  }

  private now(): number {
    return monotonicMs() - this.t0;
  }

  /**
   * The anchor of replica n on `server`: the service's path under that server, plus r<n>; for a
   * service under /@ (names start with "@"), /SERVER/@/PATH/r<n>.
   */
  replicaPath(server: string, n: number): string {
    return `${this.replicaDir(server)}/r${n}`;
  }

  private replicaDir(server: string): string {
    const at = this.names[0] === "@" ? ["@"] : [];
    return `/${[server, ...at, ...this.names.slice(1)].join("/")}`;
  }

  scale(n: number): void {
    this.sup.scale(n, this.now());
    this.step();
  }

  /** A server left the circuit: its replicas start elsewhere. */
  serverGone(server: string): void {
    this.shunned.delete(server);
    for (const [n, r] of this.live) {
      if (r.server !== server) continue;
      this.live.delete(n);
      this.sup.lost(n, this.now(), `server ${server} left the circuit`);
    }
    this.step();
  }

  stat(): ServiceStat {
    const replicas: ReplicaStat[] = this.sup.replicas().map((s) => ({
      path: s.server ? this.replicaPath(s.server, s.n) : "",
      server: s.server ? `/${s.server}` : null,
      phase: s.phase,
      restarts: s.restarts,
    }));
    const e = this.sup.lastEvent;
    return {
      spec: this.spec,
      replicas,
      desired: this.sup.desired,
      state: this.sup.state,
      lastEvent: e ? { at: new Date(wallMsAt(this.t0 + e.at)).toISOString(), kind: e.kind, message: e.message } : null,
      ...(this.shared ? { supervisor: this.shared.supervisor } : {}),
    };
  }

  /** For `ls -l`. */
  shortState(): string {
    return `${this.sup.state} ${this.sup.running()}/${this.sup.desired}`;
  }

  private recordNow(): SvcRecord {
    const slots: Record<string, number> = {};
    for (const s of this.sup.replicas()) if (s.phase !== "stopping") slots[s.n] = s.restarts;
    return { desired: this.sup.desired, slots };
  }

  /**
   * Stops supervising without stopping any replica (a service under /@ whose lease went to
   * another daemon, or whose daemon stops): whoever supervises it next adopts them.
   */
  detach(): void {
    this.detached = true;
    this.closed = true;
    // Callbacks of replicas under way see they are no longer ours, and touch nothing.
    this.live.clear();
    clearInterval(this.timer);
    if (this.metricTimer) clearInterval(this.metricTimer);
    if (this.scanTimer) clearInterval(this.scanTimer);
  }

  /** Stops every replica and the supervision; resolves once they are gone. */
  async close(): Promise<void> {
    if (this.detached) return;
    await this.adopting;
    if (this.closed) return;
    this.sup.stop(this.now(), "scrubbed");
    this.step();
    this.closed = true;
    clearInterval(this.timer);
    if (this.metricTimer) clearInterval(this.metricTimer);
    if (this.scanTimer) clearInterval(this.scanTimer);
    // Starts under way end in a stop of their own (see start): wait for those too.
    for (let i = 0; i < 50 && (this.stops.size > 0 || this.live.size > 0); i++) {
      await Promise.all([...this.stops]);
      if (this.stops.size === 0 && this.live.size > 0) await new Promise((r) => setTimeout(r, 100));
    }
    if (this.spec.dns) {
      for (let i = 0; i < 50 && this.dnsBusy; i++) await new Promise((r) => setTimeout(r, 20));
      await this.publish(true);
    }
  }

  private step(): void {
    if (this.closed) return;
    const now = this.now();
    for (const a of this.sup.tick(now)) {
      if (a.do === "start") this.start(a.n);
      else this.stop(a.n);
    }
    // Each supervisor decision once: starts, restarts, exits, lost replicas, scaling, stop.
    if (this.shared) {
      const r = this.recordNow();
      const text = JSON.stringify(r);
      if (text !== this.lastRecord) {
        this.lastRecord = text;
        this.shared.record(r);
      }
    }
    for (const e of this.sup.drainEvents()) {
      const level = e.kind === "exit" || e.kind === "lost" || e.kind === "stop" ? "warn" : "info";
      this.deps.log[level](
        { event: `svc-${e.kind}`, path: this.path, desired: this.sup.desired },
        `service ${this.path}: ${e.message}`,
      );
    }
    if (this.spec.dns) void this.publish();
  }

  /** The records the running replicas call for, by name. */
  private records(): Map<string, string[]> {
    const dns = this.spec.dns;
    const out = new Map<string, string[]>();
    if (!dns) return out;
    const add = (name: string, rr: string) => {
      const list = out.get(name) ?? [];
      if (!list.includes(rr)) list.push(rr);
      out.set(name, list);
    };
    const ttl = dns.ttl ?? 5;
    for (const s of this.sup.replicas()) {
      if (s.phase !== "running" || !s.server) continue;
      const host = this.deps.hostOf(s.server);
      if (!host) continue;
      const type = host.includes(":") ? "AAAA" : "A";
      const target = `r${s.n}.${dns.name}`;
      add(dns.name, `${dns.name} ${ttl} IN ${type} ${host}`);
      add(target, `${target} ${ttl} IN ${type} ${host}`);
      if (dns.port !== undefined) add(dns.name, `${dns.name} ${ttl} IN SRV 0 1 ${dns.port} ${target}`);
    }
    for (const list of out.values()) list.sort();
    return out;
  }

  /**
   * Brings the nameserver in line with the running replicas: each name whose records changed is
   * unset and set again. One update at a time; changes meanwhile are picked up by another round.
   */
  private async publish(final = false): Promise<void> {
    const dns = this.spec.dns;
    if (!dns) return;
    if (this.dnsBusy) {
      this.dnsAgain = true;
      return;
    }
    if (!final && monotonicMs() < this.dnsRetryAt) return;
    this.dnsBusy = true;
    try {
      do {
        this.dnsAgain = false;
        const want = final ? new Map<string, string[]>() : this.records();
        const names = new Set([...want.keys(), ...this.published.keys()]);
        const remote = await this.deps.remote();
        for (const name of names) {
          const next = want.get(name) ?? [];
          const prev = this.published.get(name) ?? [];
          if (next.join("\n") === prev.join("\n")) continue;
          await remote.dnsUnset(dns.nameserver, name);
          for (const rr of next) await remote.dnsSet(dns.nameserver, rr);
          if (next.length > 0) this.published.set(name, next);
          else this.published.delete(name);
        }
      } while (this.dnsAgain && !final);
      this.dnsFailing = false;
    } catch (err) {
      // The nameserver is gone or unreachable: said once, tried again every 2 s, every name anew.
      if (!this.dnsFailing)
        this.deps.log.warn(
          { event: "svc-dns", path: this.path, nameserver: dns.nameserver, reason: (err as Error).message },
          `service ${this.path}: cannot update ${dns.nameserver}: ${(err as Error).message}`,
        );
      this.dnsFailing = true;
      this.dnsRetryAt = monotonicMs() + 2000;
      this.published = new Map([...this.published.keys()].map((k) => [k, ["?"]]));
    } finally {
      this.dnsBusy = false;
    }
  }

  private start(n: number): void {
    const req: PlaceRequest = { cpus: this.spec.cmd.limits?.cpus, memoryBytes: this.spec.cmd.limits?.memoryBytes };
    const counts = new Map<string, number>();
    for (const r of this.live.values()) counts.set(r.server, (counts.get(r.server) ?? 0) + 1);
    const now = this.now();
    for (const [id, until] of this.shunned) if (until <= now) this.shunned.delete(id);
    const all = this.deps.candidates().map((c) => ({ ...c, replicas: counts.get(c.id) ?? 0 }));
    const ok = all.filter((c) => !this.shunned.has(c.id));
    const cands = ok.length > 0 ? ok : all;
    const server = choose(cands, req);
    if (!server) {
      this.sup.startFailed(n, this.now(), "no live server has room for it");
      return;
    }
    this.deps.placed(server, req);
    const gen = ++this.gen;
    const run: Running = { server, gen };
    this.live.set(n, run);
    const cmd: ProcCommand = { ...this.spec.cmd, scrub: true };
    const mine = () => this.live.get(n)?.gen === gen;
    void (async () => {
      let proc: RemoteProc;
      try {
        const tie = this.shared ? undefined : `/${this.deps.selfId}`;
        proc = await (await this.deps.remote()).makeProc(this.replicaPath(server, n), cmd, tie);
      } catch (err) {
        if (!mine() || this.detached) return;
        this.live.delete(n);
        const why = err instanceof CircuitError ? `${err.code}: ${err.message}` : String(err);
        if (err instanceof CircuitError && err.code === "ServerGone") {
          this.shunned.set(server, this.now() + SHUN_MS);
          this.sup.lost(n, this.now(), why);
        } else this.sup.startFailed(n, this.now(), why);
        this.step();
        return;
      }
      // Started as this supervisor stepped down: the next one adopts it (or stops it, if surplus).
      if (this.detached) return;
      if (!mine() || this.closed) {
        // Lost or scrubbed while starting: this process has no place any more.
        if (mine()) this.live.delete(n);
        this.track(proc.scrub().catch(() => {}));
        return;
      }
      run.proc = proc;
      this.sup.started(n, server, this.now());
      this.watch(n, gen, server, proc);
      this.step();
    })();
  }

  /** Follows a running replica's process: its exit, or the loss of its server. */
  private watch(n: number, gen: number, server: string, proc: RemoteProc): void {
    const mine = () => this.live.get(n)?.gen === gen;
    proc.wait().then(
      (st) => {
        if (!mine()) return;
        this.live.delete(n);
        this.sup.exited(n, this.now(), st.exitCode, st.signal);
        this.step();
      },
      (err) => {
        if (!mine()) return;
        this.live.delete(n);
        this.shunned.set(server, this.now() + SHUN_MS);
        // If only the connection broke and the server lives on, this process must not run on
        // beside its successor: stop it (by its element id, so never the successor) if we can.
        // Not tracked: a silently dead server could hold close() up for a connect timeout.
        void proc.scrub().catch(() => {});
        this.sup.lost(n, this.now(), err instanceof Error ? err.message : String(err));
        this.step();
      },
    );
  }

  /**
   * Lists the replicas running on every live server (a service under /@): adopts those of free
   * slots (a predecessor's), stops the others once the lease is confirmed (a copy of a slot that
   * another daemon, briefly believing it held the lease too, started).
   */
  private async scan(first = false): Promise<void> {
    if (this.scanning || (this.closed && !first) || this.detached) return;
    this.scanning = true;
    try {
      const remote = await this.deps.remote();
      const extra: { path: string; proc: RemoteProc }[] = [];
      for (const c of this.deps.candidates()) {
        let found: { n: number; proc: RemoteProc }[];
        try {
          found = await remote.replicasAt(this.replicaDir(c.id));
        } catch {
          continue; // that server is unreachable now: it is judged by membership
        }
        for (const { n, proc } of found) {
          if (this.detached || (this.closed && !first)) return;
          if (this.live.get(n)?.server === c.id) continue; // ours: running, or being started there
          if (this.sup.adopt(n, c.id, this.now(), first ? (this.prior?.slots[n] ?? 0) : 0)) {
            const gen = ++this.gen;
            this.live.set(n, { server: c.id, proc, gen });
            this.watch(n, gen, c.id, proc);
            this.deps.log.info(
              { event: "svc-adopt", path: this.path, replica: this.replicaPath(c.id, n) },
              `service ${this.path}: adopted ${this.replicaPath(c.id, n)}, running`,
            );
          } else extra.push({ path: this.replicaPath(c.id, n), proc });
        }
      }
      if (extra.length > 0 && this.shared && (await this.shared.confirm()) && !this.detached) {
        for (const x of extra) {
          this.deps.log.warn(
            { event: "svc-surplus", path: this.path, replica: x.path },
            `service ${this.path}: stopping ${x.path}, a replica of a slot taken or not wanted`,
          );
          this.track(x.proc.scrub().catch(() => {}));
        }
      }
    } catch {
      // No client connection yet: the next round tries again.
    } finally {
      this.scanning = false;
    }
  }

  private stop(n: number): void {
    const r = this.live.get(n);
    this.live.delete(n);
    const done = () => {
      this.sup.stopped(n);
    };
    if (!r?.proc) return done();
    this.track(r.proc.scrub().then(done, done));
  }

  private track(p: Promise<void>): void {
    this.stops.add(p);
    void p.finally(() => this.stops.delete(p));
  }

  private async readMetric(): Promise<void> {
    const a = this.spec.autoscale;
    if (!a || this.reading || this.closed) return;
    this.reading = true;
    try {
      if ("chan" in a) {
        const len = await (await this.deps.remote()).chanLen(a.chan);
        this.sup.metric(len, this.now());
      } else {
        const procs = [...this.live.values()].flatMap((r) => (r.proc ? [r.proc] : []));
        const stats = await Promise.allSettled(procs.map((p) => p.peek()));
        const cpu = stats.flatMap((s) =>
          s.status === "fulfilled" && s.value.phase === "running" ? [s.value.cpuPercent] : [],
        );
        if (cpu.length > 0) this.sup.metric(cpu.reduce((x, y) => x + y, 0) / cpu.length, this.now(), cpu.length);
      }
    } catch {
      // The channel's server is unreachable or the channel is gone: no reading this time.
    } finally {
      this.reading = false;
    }
    this.step();
  }
}
