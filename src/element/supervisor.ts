// The supervision and scaling core of a service (DESIGN.md §3.7) as a pure state machine: inputs
// (a replica started, exited, was lost with its server; a metric reading; scale by hand; the clock)
// go in, decisions (start replica n, stop replica n) come out of tick(). No timers, no processes,
// no placement: the daemon's driver (src/daemon/svc-host.ts) carries the decisions out and feeds
// back what happened. Time is whatever monotonic milliseconds the caller passes.
//
// Supervision follows OTP: a replica that exits is started again according to the restart policy,
// after a delay that doubles with each consecutive crash (capped); more than maxRestarts restarts
// within withinMs stop the service. Scaling follows the usual stabilised autoscaler: up at once,
// down only to the highest recommendation of the cool-down window, at most once per window.

export type RestartPolicy = "always" | "on-failure" | "never";
export type SlotPhase = "pending" | "starting" | "running" | "backoff" | "stopping" | "exited";

export interface SupervisorParams {
  replicas: number;
  min: number;
  max: number;
  restart: RestartPolicy;
  backoffMs: number;
  maxBackoffMs: number;
  maxRestarts: number;
  withinMs: number;
  cooldownMs: number;
  /** How a metric reading becomes a replica count; none: no autoscaling. */
  autoscale?: { perReplica: number } | { cpuPercent: number };
}

export interface Slot {
  /** The replica number: its anchor is r<n>. Kept across restarts. */
  readonly n: number;
  phase: SlotPhase;
  server: string | null;
  restarts: number;
  /** Consecutive crashes, for the backoff. */
  streak: number;
  startedAt: number;
  /** When a replica in backoff is due to start again. */
  due: number;
}

export type Action = { do: "start"; n: number } | { do: "stop"; n: number; server: string };

export interface SupervisorEvent {
  at: number;
  kind: "start" | "restart" | "exit" | "lost" | "scale" | "stop";
  message: string;
}

export class Supervisor {
  private readonly p: SupervisorParams;
  private readonly slots = new Map<number, Slot>();
  /** Times of restarts after exits and failed starts, for the intensity limit. */
  private restartTimes: number[] = [];
  private recs: { at: number; n: number }[] = [];
  private lastChange = Number.NEGATIVE_INFINITY;
  desired: number;
  state: "running" | "stopped" = "running";
  lastEvent: SupervisorEvent | null = null;
  /** Every event in order since the last drain (the driver logs them). */
  private events: SupervisorEvent[] = [];

  constructor(params: SupervisorParams) {
    this.p = { ...params };
    this.desired = this.clamp(params.replicas);
    // The clock starts with the service: its first event is at 0.
    this.note(0, "start", `started with ${this.desired} replica${this.desired === 1 ? "" : "s"} wanted`);
  }

  replicas(): readonly Slot[] {
    return [...this.slots.values()].sort((a, b) => a.n - b.n);
  }

  slot(n: number): Slot | undefined {
    return this.slots.get(n);
  }

  drainEvents(): SupervisorEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** Replica n runs on `server` (the start the driver was told to make succeeded). */
  started(n: number, server: string, now: number): void {
    const s = this.slots.get(n);
    // A start that was under way when the replica became surplus: the next tick stops it.
    if (!s || (s.phase !== "starting" && !(s.phase === "stopping" && s.server === null))) return;
    s.phase = "running";
    s.server = server;
    s.startedAt = now;
  }

  /**
   * Replica n was found running on `server` by a supervisor that did not start it (it took the
   * service over): the slot runs it, if slot n is free or waiting and the service wants one more.
   * False when it has no place here (the caller stops it).
   */
  adopt(n: number, server: string, now: number, restarts = 0): boolean {
    if (this.state !== "running" || !Number.isInteger(n) || n < 1) return false;
    let s = this.slots.get(n);
    if (s && s.phase !== "pending" && s.phase !== "backoff") return false;
    if (!s) {
      const active = this.replicas().filter((x) => x.phase !== "stopping").length;
      if (active >= this.desired) return false;
      s = { n, phase: "pending", server: null, restarts, streak: 0, startedAt: now, due: now };
      this.slots.set(n, s);
    }
    s.phase = "running";
    s.server = server;
    s.startedAt = now;
    return true;
  }

  /**
   * Replica n ran under the previous supervisor (after `restarts` restarts) and was not found
   * running by this one: it is started again at once, as a replica lost with its server is.
   * Nothing when the slot is taken or the service wants no more.
   */
  missing(n: number, restarts: number, now: number): void {
    if (this.state !== "running" || this.slots.has(n) || !Number.isInteger(n) || n < 1) return;
    if (this.replicas().filter((x) => x.phase !== "stopping").length >= this.desired) return;
    this.slots.set(n, {
      n,
      phase: "pending",
      server: null,
      restarts: restarts + 1,
      streak: 0,
      startedAt: now,
      due: now,
    });
    this.note(now, "lost", `r${n} lost: not running when this supervisor took over`);
  }

  /** Replica n could not be started (no server fits, spawn failed): a crash for the policy. */
  startFailed(n: number, now: number, why: string): void {
    const s = this.slots.get(n);
    if (s?.phase === "stopping" && s.server === null) {
      this.slots.delete(n);
      return;
    }
    if (s?.phase !== "starting") return;
    s.startedAt = now;
    this.crashed(s, now, true, `r${n} did not start: ${why}`);
  }

  /** Replica n's process ended. */
  exited(n: number, now: number, exitCode: number | null, signal: string | null): void {
    const s = this.slots.get(n);
    if (!s) return;
    if (s.phase === "stopping") return this.stopped(n);
    if (s.phase !== "running") return;
    const failed = exitCode !== 0 || signal !== null;
    const how = signal ? `killed by ${signal}` : `exited with ${exitCode}`;
    const again = this.p.restart === "always" || (this.p.restart === "on-failure" && failed);
    if (!again) {
      s.phase = "exited";
      this.note(now, "exit", `r${n} ${how}; restart ${this.p.restart}: not started again`);
      return;
    }
    this.crashed(s, now, failed, `r${n} ${how}`);
  }

  /** Replica n's server died (or cannot be reached): start it elsewhere at once. */
  lost(n: number, now: number, why: string): void {
    const s = this.slots.get(n);
    if (!s) return;
    if (s.phase === "stopping") return this.stopped(n);
    if (s.phase !== "running" && s.phase !== "starting") return;
    s.phase = "pending";
    s.server = null;
    s.restarts++;
    this.note(now, "lost", `r${n} lost: ${why}`);
  }

  /** A stop the driver was told to make is done: the slot goes. */
  stopped(n: number): void {
    const s = this.slots.get(n);
    if (s?.phase !== "stopping") return;
    if (this.state === "stopped") {
      s.phase = "exited";
      s.server = null;
    } else this.slots.delete(n);
  }

  /** Scale by hand; clamped to min…max. */
  scale(n: number, now: number): void {
    if (this.state !== "running") return;
    const to = this.clamp(n);
    this.lastChange = now;
    if (to !== this.desired) this.note(now, "scale", `scaled by hand from ${this.desired} to ${to}`);
    this.desired = to;
  }

  /**
   * An autoscale reading: a channel's backlog, or the running replicas' average CPU in percent.
   * `running` is how many replicas that average was taken over.
   */
  metric(value: number, now: number, running = this.running()): void {
    const a = this.p.autoscale;
    if (!a || this.state !== "running" || !Number.isFinite(value) || value < 0) return;
    let rec: number;
    let why: string;
    if ("perReplica" in a) {
      rec = Math.ceil(value / a.perReplica);
      why = `backlog ${value} / ${a.perReplica} per replica`;
    } else {
      if (running === 0) return;
      rec = Math.ceil((running * value) / a.cpuPercent);
      why = `average CPU ${Math.round(value)}% over ${running} replicas, target ${a.cpuPercent}%`;
    }
    rec = this.clamp(rec);
    this.recs.push({ at: now, n: rec });
    const from = now - this.p.cooldownMs;
    while (this.recs.length > 0 && (this.recs[0] as { at: number }).at < from) this.recs.shift();
    if (rec > this.desired) {
      this.note(now, "scale", `scaled up from ${this.desired} to ${rec}: ${why}`);
      this.desired = rec;
      this.lastChange = now;
      return;
    }
    // Down only to what the whole window asked for, and once per window.
    const target = Math.max(...this.recs.map((r) => r.n));
    if (target < this.desired && now - this.lastChange >= this.p.cooldownMs) {
      this.note(now, "scale", `scaled down from ${this.desired} to ${target}: ${why} for ${this.p.cooldownMs} ms`);
      this.desired = target;
      this.lastChange = now;
    }
  }

  /** Stops the service: every replica is stopped and nothing starts again. */
  stop(now: number, why: string): void {
    if (this.state === "stopped") return;
    this.state = "stopped";
    this.note(now, "stop", why);
  }

  /** The decisions due now: starts of missing or due replicas, stops of surplus ones. */
  tick(now: number): Action[] {
    const out: Action[] = [];
    if (this.state === "stopped") {
      // A stopped service keeps its replicas' records (exited) for peek.
      for (const s of this.replicas()) {
        if (s.phase === "pending" || s.phase === "backoff") s.phase = "exited";
        else this.stopSlot(s, out);
      }
      return out;
    }
    const active = this.replicas().filter((s) => s.phase !== "stopping");
    if (active.length < this.desired) {
      for (let n = 1, k = active.length; k < this.desired; n++) {
        if (this.slots.has(n)) continue;
        this.slots.set(n, { n, phase: "pending", server: null, restarts: 0, streak: 0, startedAt: now, due: now });
        k++;
      }
    } else if (active.length > this.desired) {
      // Surplus: the ones doing least first (waiting, then exited, then the newest running).
      const rank = (s: Slot) => (s.phase === "pending" || s.phase === "backoff" ? 0 : s.phase === "exited" ? 1 : 2);
      const surplus = [...active].sort((a, b) => rank(a) - rank(b) || b.n - a.n).slice(0, active.length - this.desired);
      for (const s of surplus) this.stopSlot(s, out);
    }
    for (const s of this.replicas()) {
      if (s.phase === "pending" || (s.phase === "backoff" && s.due <= now)) {
        if (s.phase === "backoff" || s.restarts > 0)
          this.note(now, "restart", `r${s.n} started again (restart ${s.restarts})`);
        s.phase = "starting";
        out.push({ do: "start", n: s.n });
      }
    }
    return out;
  }

  /** The earliest time a backoff ends, for the driver's timer (Infinity: none). */
  nextDue(): number {
    let t = Number.POSITIVE_INFINITY;
    for (const s of this.slots.values()) if (s.phase === "backoff") t = Math.min(t, s.due);
    return t;
  }

  /** Replicas whose process runs now. */
  running(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.phase === "running") n++;
    return n;
  }

  // ---- internals ----------------------------------------------------------------------------

  private stopSlot(s: Slot, out: Action[]): void {
    if (s.phase === "stopping" || (this.state === "stopped" && s.phase === "exited")) return;
    if ((s.phase === "running" || s.phase === "starting") && s.server !== null) {
      s.phase = "stopping";
      out.push({ do: "stop", n: s.n, server: s.server });
    } else if (s.phase === "starting") {
      // Its start is under way: it is stopped when the driver reports it started (or failed).
      s.phase = "stopping";
    } else this.slots.delete(s.n);
  }

  private crashed(s: Slot, now: number, failed: boolean, what: string): void {
    // A replica that ran a whole maxBackoffMs is healthy again: its next crash starts over.
    if (now - s.startedAt >= this.p.maxBackoffMs || !failed) s.streak = 0;
    this.restartTimes.push(now);
    const from = now - this.p.withinMs;
    this.restartTimes = this.restartTimes.filter((t) => t > from);
    if (this.restartTimes.length > this.p.maxRestarts) {
      s.phase = "exited";
      s.server = null;
      this.stop(
        now,
        `${what}: ${this.restartTimes.length} restarts within ${this.p.withinMs} ms exceed maxRestarts ${this.p.maxRestarts}; service stopped`,
      );
      return;
    }
    const delay = Math.min(this.p.backoffMs * 2 ** s.streak, this.p.maxBackoffMs);
    s.streak++;
    s.restarts++;
    s.phase = "backoff";
    s.server = null;
    s.due = now + delay;
    this.note(now, "exit", `${what}; next start in ${delay} ms`);
  }

  private clamp(n: number): number {
    return Math.min(this.p.max, Math.max(this.p.min, Math.floor(n)));
  }

  private note(at: number, kind: SupervisorEvent["kind"], message: string): void {
    const e = { at, kind, message };
    this.lastEvent = e;
    this.events.push(e);
  }
}
