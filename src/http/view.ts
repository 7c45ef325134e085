// The whole circuit as the dashboard shows it, seen from one daemon: every second it asks each
// live server (itself directly, the others through a client connection) for an observation,
// and keeps what the page needs — servers, channels with send/receive rates and a short rate
// history, processes with their recent output, and a merged feed of events.

import type { Client } from "../client/client.js";
import { dial } from "../client/client.js";
import type { ServerHandle, ServerObservation } from "../client/server-handle.js";
import type { Daemon } from "../daemon/daemon.js";
import { monotonicMs } from "../util/clock.js";

/** Samples of rate history kept per channel (one a second). */
const HISTORY = 60;
/** Most elements asked of one server per round. */
const LIMIT = 50_000;
const FEED_KEEP = 300;

export interface ViewChannel {
  path: string;
  server: string;
  kind: string;
  cap: number;
  len: number;
  closed: boolean;
  waiting: number;
  sent: number;
  recvd: number;
  /** Values per second over the last round. */
  sendRate: number;
  recvRate: number;
  /** Send and receive rates of the last rounds, oldest first. */
  sendHist: number[];
  recvHist: number[];
}

export interface ViewProc {
  path: string;
  server: string;
  pid: number;
  phase: string;
  cpuPercent: number;
  rssBytes: number;
  cmd: string;
}

export interface ViewServer {
  id: string;
  url: string;
  self: boolean;
  stat: ServerObservation["server"] | undefined;
  total: number;
  /** Why the last observation failed, if it did. */
  error?: string;
}

export interface ViewFeedEntry {
  server: string;
  seq: number;
  at: string;
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

interface ServerState {
  url: string;
  obs: ServerObservation | undefined;
  error?: string;
  after: number;
  at: number;
}

export class CircuitView {
  private client: Client | undefined;
  private readonly states = new Map<string, ServerState>();
  private readonly channels = new Map<string, ViewChannel>();
  private procs: ViewProc[] = [];
  private tails = new Map<string, { stdout: string; stderr: string }>();
  private feed: ViewFeedEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;
  /** Called after each round (the server pushes the new state to its pages). */
  onUpdate: () => void = () => {};
  /** Rounds done; a round takes the observations of every live server. */
  rounds = 0;

  constructor(
    private readonly d: Daemon,
    private readonly key: Buffer | undefined,
    private readonly periodMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.round(), this.periodMs);
    this.timer.unref();
    void this.round();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.client?.close().catch(() => {});
  }

  private async handle(id: string): Promise<ServerHandle> {
    this.client ??= await dial(this.d.url, this.key ? { key: this.key } : {});
    const el = await this.client.walk(`/${id}`).get({ signal: AbortSignal.timeout(2000) });
    if (el?.kind !== "server") throw new Error(`/${id} is not a server`);
    return el as ServerHandle;
  }

  private async observe(id: string, st: ServerState): Promise<void> {
    try {
      const obs =
        id === this.d.id
          ? (this.d.observe(st.after, LIMIT, true) as unknown as ServerObservation)
          : await (await this.handle(id)).observe({
              after: st.after,
              limit: LIMIT,
              tails: true,
              signal: AbortSignal.timeout(Math.max(1500, this.periodMs)),
            });
      const now = monotonicMs();
      this.absorb(id, obs, st.obs ? (now - st.at) / 1000 : 0);
      st.obs = obs;
      st.at = now;
      st.error = undefined;
    } catch (err) {
      st.error = (err as Error).message;
    }
  }

  private async round(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      const live = this.d.servers();
      const ids = new Set(live.map((s) => s.id));
      for (const id of [...this.states.keys()]) {
        if (!ids.has(id)) this.forget(id);
      }
      for (const s of live) {
        if (!this.states.has(s.id)) this.states.set(s.id, { url: s.url, obs: undefined, after: 0, at: 0 });
      }
      await Promise.all(live.map((s) => this.observe(s.id, this.states.get(s.id) as ServerState)));
      this.rebuildProcs();
      this.rounds++;
      this.onUpdate();
    } finally {
      this.running = false;
    }
  }

  private forget(id: string): void {
    this.states.delete(id);
    for (const [p, c] of this.channels) if (c.server === id) this.channels.delete(p);
    for (const p of [...this.tails.keys()]) if (p.startsWith(`/${id}/`)) this.tails.delete(p);
  }

  private absorb(id: string, obs: ServerObservation, dt: number): void {
    const st = this.states.get(id) as ServerState;
    const seen = new Set<string>();
    for (const e of obs.elements) {
      if (e.kind === "proc" || e.kind === "dns" || e.kind === "svc") continue;
      seen.add(e.path);
      const old = this.channels.get(e.path);
      const sent = e.sent ?? 0;
      const recvd = e.recvd ?? 0;
      const sendRate = old && dt > 0 ? Math.max(0, (sent - old.sent) / dt) : 0;
      const recvRate = old && dt > 0 ? Math.max(0, (recvd - old.recvd) / dt) : 0;
      const sendHist = old ? old.sendHist : [];
      const recvHist = old ? old.recvHist : [];
      sendHist.push(Math.round(sendRate * 10) / 10);
      recvHist.push(Math.round(recvRate * 10) / 10);
      if (sendHist.length > HISTORY) sendHist.shift();
      if (recvHist.length > HISTORY) recvHist.shift();
      this.channels.set(e.path, {
        path: e.path,
        server: id,
        kind: e.kind,
        cap: e.cap ?? 0,
        len: e.len ?? 0,
        closed: e.closed === true,
        waiting: e.waiting ?? 0,
        sent,
        recvd,
        sendRate,
        recvRate,
        sendHist,
        recvHist,
      });
    }
    for (const [p, c] of this.channels) if (c.server === id && !seen.has(p)) this.channels.delete(p);
    for (const p of [...this.tails.keys()]) if (p.startsWith(`/${id}/`)) this.tails.delete(p);
    for (const t of obs.tails) this.tails.set(t.path, { stdout: t.stdout, stderr: t.stderr });
    for (const f of obs.feed) {
      this.feed.push({ server: id, ...f });
      st.after = Math.max(st.after, f.seq);
    }
    if (this.feed.length > FEED_KEEP) this.feed.splice(0, this.feed.length - FEED_KEEP);
  }

  private rebuildProcs(): void {
    const out: ViewProc[] = [];
    for (const [id, st] of this.states) {
      for (const e of st.obs?.elements ?? []) {
        if (e.kind !== "proc") continue;
        out.push({
          path: e.path,
          server: id,
          pid: e.pid ?? 0,
          phase: e.phase ?? "",
          cpuPercent: e.cpuPercent ?? 0,
          rssBytes: e.rssBytes ?? 0,
          cmd: e.cmd ?? "",
        });
      }
    }
    this.procs = out;
  }

  servers(): ViewServer[] {
    return [...this.states]
      .map(([id, st]) => ({
        id,
        url: st.url,
        self: id === this.d.id,
        stat: st.obs?.server,
        total: st.obs?.total ?? 0,
        ...(st.error ? { error: st.error } : {}),
      }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The live summary the page gets every round: bounded in size whatever the circuit holds. */
  summary(top = 200): Record<string, unknown> {
    const chans = [...this.channels.values()];
    const busiest = chans
      .sort((a, b) => b.sendRate + b.recvRate - (a.sendRate + a.recvRate) || (a.path < b.path ? -1 : 1))
      .slice(0, top);
    const procs = [...this.procs].sort((a, b) => b.cpuPercent - a.cpuPercent || (a.path < b.path ? -1 : 1));
    const tails: Record<string, { stdout: string; stderr: string }> = {};
    for (const p of procs.slice(0, top)) {
      const t = this.tails.get(p.path);
      if (t) tails[p.path] = t;
    }
    let elements = 0;
    const services: Record<string, unknown>[] = [];
    for (const [id, st] of this.states) {
      elements += st.obs?.total ?? 0;
      for (const e of st.obs?.elements ?? []) {
        if (e.kind === "svc" && services.length < top) {
          services.push({
            path: e.path,
            server: id,
            desired: e.desired,
            running: e.running,
            restarts: e.restarts,
            state: e.phase,
          });
        }
      }
    }
    return {
      at: new Date().toISOString(),
      self: this.d.id,
      round: this.rounds,
      servers: this.servers(),
      totals: { servers: this.states.size, elements, channels: chans.length, procs: procs.length },
      channels: busiest,
      procs: procs.slice(0, top),
      services,
      tails,
      feed: this.feed.slice(-100),
    };
  }

  /** One page of the elements under `prefix` (the tree view), in path order. */
  list(prefix: string, offset: number, limit: number, q: string): { total: number; items: unknown[] } {
    const all: { path: string; kind: string; state: string; more?: boolean }[] = [];
    const under = prefix === "/" || prefix === "" ? "/" : `${prefix.replace(/\/+$/, "")}/`;
    if (under === "/") {
      for (const s of this.servers()) all.push({ path: `/${s.id}`, kind: "server", state: s.url, more: s.total > 0 });
    } else {
      // An anchor can hold an element and have children too: it keeps its kind and gets `more`.
      const kids = new Map<string, { path: string; kind: string; state: string; more?: boolean }>();
      for (const st of this.states.values()) {
        for (const e of st.obs?.elements ?? []) {
          if (!e.path.startsWith(under)) continue;
          const rest = e.path.slice(under.length);
          const slash = rest.indexOf("/");
          if (slash >= 0) {
            const dir = under + rest.slice(0, slash);
            const k = kids.get(dir);
            if (k) k.more = true;
            else kids.set(dir, { path: dir, kind: "", state: "", more: true });
            continue;
          }
          kids.set(e.path, { path: e.path, kind: e.kind, state: shortState(e), more: kids.get(e.path)?.more });
        }
      }
      all.push(...[...kids.values()].sort((a, b) => (a.path < b.path ? -1 : 1)));
    }
    const filtered = q ? all.filter((e) => e.path.includes(q)) : all;
    return { total: filtered.length, items: filtered.slice(offset, offset + limit) };
  }
}

function shortState(e: ServerObservation["elements"][number]): string {
  if (e.kind === "proc") return `pid=${e.pid} ${e.phase} cpu=${e.cpuPercent}% rss=${e.rssBytes}`;
  if (e.kind === "dns") return "";
  return `len=${e.len}/${e.cap}${e.closed ? " closed" : ""} sent=${e.sent} recvd=${e.recvd}`;
}
