// Measures this server's load and publishes it through membership (DESIGN.md §3.7): host CPU over
// the last few seconds, free memory, and what this server's own processes use and reserve.

import * as os from "node:os";
import { DEFAULT_LOAD, type LoadConfig } from "../cluster/config.js";
import type { ServerLoad } from "../cluster/placement.js";
import { monotonicMs } from "../util/clock.js";

export interface LoadSource {
  /** What this server's running processes use (last samples) and reserve. */
  procs(): { procs: number; cpuPercent: number; rssBytes: number; resCpu: number; resMem: number };
  /** Gossips the new figures. */
  publish(load: ServerLoad): void;
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    const all = t.user + t.nice + t.sys + t.idle + t.irq;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total };
}

export class LoadMeter {
  private readonly cfg: LoadConfig;
  private readonly timer: NodeJS.Timeout;
  private last = cpuTimes();
  private readonly busy: number[] = [];
  private readonly own: number[] = [];
  private published: ServerLoad | undefined;
  private publishedAt = 0;
  private seq = 0;
  private soon: NodeJS.Timeout | undefined;
  readonly cores = Math.max(1, os.cpus().length);

  constructor(
    private readonly src: LoadSource,
    cfg: Partial<LoadConfig> = {},
  ) {
    this.cfg = { ...DEFAULT_LOAD, ...cfg };
    this.timer = setInterval(() => this.sample(), this.cfg.sampleMs);
    this.timer.unref();
    this.sample();
  }

  /** The figures now (host CPU from the last samples, processes as of now). */
  current(): ServerLoad {
    const p = this.src.procs();
    const avg = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
    const r = (x: number) => Math.round(x * 100) / 100;
    // The last sample of our processes counts at once: a burner started a second ago is ours now.
    const ownCpu = Math.max(avg(this.own), p.cpuPercent / 100);
    return {
      cores: this.cores,
      busy: r(Math.max(avg(this.busy), ownCpu)),
      memFree: os.freemem(),
      memTotal: os.totalmem(),
      procs: p.procs,
      ownCpu: r(ownCpu),
      ownMem: p.rssBytes,
      resCpu: r(p.resCpu),
      resMem: p.resMem,
      seq: this.seq,
    };
  }

  /** A process started or ended: publish soon (rate-limited), so placements see it. */
  nudge(): void {
    if (this.soon) return;
    const wait = Math.max(0, this.publishedAt + this.cfg.minPublishMs - monotonicMs());
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.maybePublish(true);
    }, wait);
    this.soon.unref();
  }

  close(): void {
    clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
  }

  private sample(): void {
    const now = cpuTimes();
    const dt = now.total - this.last.total;
    if (dt > 0) push(this.busy, ((now.busy - this.last.busy) / dt) * this.cores, this.cfg.window);
    this.last = now;
    push(this.own, this.src.procs().cpuPercent / 100, this.cfg.window);
    this.maybePublish(false);
  }

  private maybePublish(force: boolean): void {
    const l = this.current();
    const p = this.published;
    const now = monotonicMs();
    if (p && now - this.publishedAt < this.cfg.minPublishMs) return;
    const moved =
      !p ||
      force ||
      l.procs !== p.procs ||
      l.resCpu !== p.resCpu ||
      l.resMem !== p.resMem ||
      Math.abs(l.busy - p.busy) >= this.cfg.cpuDelta ||
      Math.abs(l.ownCpu - p.ownCpu) >= this.cfg.cpuDelta ||
      Math.abs(l.memFree - p.memFree) > p.memTotal / 10;
    if (!moved && now - this.publishedAt < this.cfg.maxPublishMs) return;
    this.seq++;
    const out = { ...l, seq: this.seq };
    this.published = out;
    this.publishedAt = now;
    this.src.publish(out);
  }
}

function push(xs: number[], v: number, n: number): void {
  xs.push(v);
  while (xs.length > n) xs.shift();
}
