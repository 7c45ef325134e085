// /metrics in the Prometheus text format (prom-client). The daemon keeps no metric objects on its
// hot path: a scrape takes one MetricsSample (src/daemon/daemon.ts), which reads counters the
// daemon keeps anyway, and the collect callbacks below copy it into prom-client's registry.

import { Counter, Gauge, Registry } from "prom-client";
import type { Daemon, MetricsSample } from "../daemon/daemon.js";

export class DaemonMetrics {
  readonly registry = new Registry();
  private sample: MetricsSample | undefined;

  constructor(private readonly d: Daemon) {
    const r = this.registry;
    r.setDefaultLabels({ server: d.id });
    // The daemon's own process, read at scrape time. Not prom-client's default metrics: those
    // observe every garbage collection, a cost paid on the hot path of a busy daemon.
    new Counter({
      name: "circuit_daemon_process_cpu_seconds_total",
      help: "CPU time of the daemon process, user and system",
      registers: [r],
      collect() {
        const u = process.cpuUsage();
        this.reset();
        this.inc((u.user + u.system) / 1e6);
      },
    });
    new Gauge({
      name: "circuit_daemon_process_resident_memory_bytes",
      help: "Resident memory of the daemon process",
      registers: [r],
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new Gauge({
      name: "circuit_daemon_heap_used_bytes",
      help: "JavaScript heap in use in the daemon",
      registers: [r],
      collect() {
        this.set(process.memoryUsage().heapUsed);
      },
    });
    new Gauge({
      name: "circuit_daemon_uptime_seconds",
      help: "Seconds since the daemon started",
      registers: [r],
      collect() {
        this.set(process.uptime());
      },
    });
    const s = (): MetricsSample => this.sample ?? d.metricsSample();
    new Gauge({
      name: "circuit_connections",
      help: "Client connections open now",
      registers: [r],
      collect() {
        this.set(s().connections);
      },
    });
    new Gauge({
      name: "circuit_members",
      help: "Live servers of the circuit in this server's view, itself included",
      registers: [r],
      collect() {
        this.set(s().members);
      },
    });
    new Gauge({
      name: "circuit_elements",
      help: "Elements hosted by this server, by kind",
      labelNames: ["kind"],
      registers: [r],
      collect() {
        this.reset();
        for (const kind of ["chan", "proc", "svc", "dns", "@join", "@leave"])
          this.set({ kind }, s().elements[kind] ?? 0);
      },
    });
    const values = (dir: "in" | "out") =>
      new Counter({
        name: `circuit_values_${dir}_total`,
        help: dir === "in" ? "Values sent into channels, by channel kind" : "Values received from channels, by kind",
        labelNames: ["kind"],
        registers: [r],
        collect() {
          this.reset();
          for (const kind of ["chan", "@join", "@leave"]) this.inc({ kind }, s().values[kind]?.[dir] ?? 0);
        },
      });
    values("in");
    values("out");
    const bytes = (dir: "in" | "out") =>
      new Counter({
        name: `circuit_bytes_${dir}_total`,
        help: dir === "in" ? "Bytes read from client connections" : "Bytes written to client connections",
        registers: [r],
        collect() {
          this.reset();
          this.inc(dir === "in" ? s().bytesIn : s().bytesOut);
        },
      });
    bytes("in");
    bytes("out");
    new Gauge({
      name: "circuit_blocked_operations",
      help: "Sends and receives blocked on channels of this server now",
      registers: [r],
      collect() {
        this.set(s().blocked);
      },
    });
    new Gauge({
      name: "circuit_processes",
      help: "Processes running on this server",
      registers: [r],
      collect() {
        this.set(s().procs.length);
      },
    });
    new Gauge({
      name: "circuit_process_cpu_percent",
      help: "CPU of each running process over the last second (100 = one core)",
      labelNames: ["path"],
      registers: [r],
      collect() {
        this.reset();
        for (const p of s().procs) this.set({ path: p.path }, p.cpuPercent);
      },
    });
    new Gauge({
      name: "circuit_process_rss_bytes",
      help: "Resident memory of each running process",
      labelNames: ["path"],
      registers: [r],
      collect() {
        this.reset();
        for (const p of s().procs) this.set({ path: p.path }, p.rssBytes);
      },
    });
    new Counter({
      name: "circuit_failure_detector_events_total",
      help: "Failure-detector decisions: suspicions, refutations, deaths, failed probes",
      labelNames: ["event"],
      registers: [r],
      collect() {
        this.reset();
        const det = s().detector;
        this.inc({ event: "suspect" }, det.suspicions);
        this.inc({ event: "refute" }, det.refutations);
        this.inc({ event: "dead" }, det.deaths);
        this.inc({ event: "probe_failed" }, det.probeFailures);
      },
    });
    // Store writes (durable channels on a daemon with --data): counts and sync time by operation;
    // rate(seconds_total) / rate(ops_total) is the mean latency, max_seconds the worst since the
    // previous scrape.
    new Counter({
      name: "circuit_store_ops_total",
      help: "Writes to the store, by operation (put, remove, create, close, drop)",
      labelNames: ["op"],
      registers: [r],
      collect() {
        this.reset();
        for (const [op, o] of Object.entries(s().storeOps)) this.inc({ op }, o.count);
      },
    });
    new Counter({
      name: "circuit_store_op_seconds_total",
      help: "Time store writes took until synced, summed, by operation",
      labelNames: ["op"],
      registers: [r],
      collect() {
        this.reset();
        for (const [op, o] of Object.entries(s().storeOps)) this.inc({ op }, o.seconds);
      },
    });
    new Gauge({
      name: "circuit_store_op_max_seconds",
      help: "The slowest store write since the previous scrape, by operation",
      labelNames: ["op"],
      registers: [r],
      collect() {
        this.reset();
        for (const [op, o] of Object.entries(s().storeOps)) this.set({ op }, o.maxSeconds);
      },
    });
  }

  /** The exposition text, from one fresh sample of the daemon. */
  async text(): Promise<string> {
    this.sample = this.d.metricsSample();
    try {
      return await this.registry.metrics();
    } finally {
      this.sample = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
