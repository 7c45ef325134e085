// The daemon: listens, runs one Session per connection, and hosts the elements of this server's
// part of the anchor tree (everything below /XID). /XID itself is the server element.

import { randomBytes } from "node:crypto";
import * as net from "node:net";
import * as os from "node:os";
import { AnchorTree } from "../element/anchor-tree.js";
import { Channel } from "../element/channel.js";
import { NotFound, WrongKind } from "../errors.js";
import { FrameConn } from "../transport/frame-conn.js";
import { badName, formatPath } from "../wire/path.js";
import { DEFAULT_MAX_VALUE, FRAME_SLACK } from "../wire/protocol.js";
import { type ChanElement, type Item, Session } from "./session.js";

export const VERSION = "0.1.0";

export interface DaemonOptions {
  /** HOST:PORT to listen on; port 0 picks a free port. Default 127.0.0.1:7711. */
  addr?: string;
  /** Largest encoded value accepted, in bytes. Default 16 MiB. */
  maxValue?: number;
  /** Server ID; default a new random one. */
  id?: string;
  /** Where log lines go; default stderr. */
  log?: (line: string) => void;
}

export interface ListEntry {
  path: string;
  kind?: string;
  state?: string;
}

type Element = ChanElement;

export function newServerId(): string {
  return `X${randomBytes(8).toString("hex")}`;
}

export function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new TypeError(`bad address ${JSON.stringify(addr)}: expected HOST:PORT`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export class Daemon {
  readonly id: string;
  readonly maxValue: number;
  readonly startedAt = new Date();
  url = "";
  readonly log: (line: string) => void;
  private readonly tree = new AnchorTree<Element>();
  private readonly sessions = new Set<Session>();
  private readonly server: net.Server;
  private pipeIds = 0;
  private stopping: Promise<void> | undefined;
  private readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  private constructor(opts: DaemonOptions) {
    this.id = opts.id ?? newServerId();
    this.maxValue = opts.maxValue ?? DEFAULT_MAX_VALUE;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.stopped = new Promise((r) => {
      this.resolveStopped = r;
    });
    this.server = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
  }

  static async start(opts: DaemonOptions = {}): Promise<Daemon> {
    const d = new Daemon(opts);
    const { host, port } = parseAddr(opts.addr ?? "127.0.0.1:7711");
    await new Promise<void>((resolve, reject) => {
      d.server.once("error", reject);
      d.server.listen(port, host, () => {
        d.server.off("error", reject);
        resolve();
      });
    });
    const a = d.server.address() as net.AddressInfo;
    const h = a.family === "IPv6" ? `[${a.address}]` : a.address;
    d.url = `circuit://${h}:${a.port}/${d.id}`;
    d.log(`circuit: serving ${d.url}`);
    return d;
  }

  /** Resolves when the daemon has stopped (by `stop()` or a remote `stop`). */
  get done(): Promise<void> {
    return this.stopped;
  }

  private accept(sock: net.Socket): void {
    sock.setNoDelay(true);
    const conn = new FrameConn(sock, { maxFrame: this.maxValue + FRAME_SLACK });
    const s = new Session(conn, this);
    this.sessions.add(s);
  }

  sessionGone(s: Session): void {
    this.sessions.delete(s);
  }

  nextPipeId(): number {
    this.pipeIds = (this.pipeIds + 1) >>> 0 || 1;
    return this.pipeIds;
  }

  /** Validates names from the wire; the first must be this server. */
  checkPath(names: string[]): string[] {
    if (names.length > 64) throw new TypeError("path deeper than 64 names");
    for (const n of names) {
      const why = badName(n);
      if (why) throw new TypeError(why);
    }
    if (names.length > 0 && names[0] !== this.id) throw new NotFound(`no server ${names[0]} in this circuit`);
    return names;
  }

  element(names: string[]): Element | { kind: "server" } | null {
    if (names.length === 0) return null;
    if (names.length === 1) return { kind: "server" };
    return this.tree.get(names.slice(1)) ?? null;
  }

  makeChan(names: string[], cap: unknown): ChanElement {
    if (names.length < 2) throw new WrongKind(`${formatPath(names)} cannot hold a channel`);
    if (typeof cap !== "number") throw new RangeError("channel capacity must be a number");
    const el: ChanElement = { kind: "chan", chan: new Channel<Item>(cap), names };
    this.tree.set(names.slice(1), el, formatPath(names));
    return el;
  }

  list(names: string[], recursive: boolean, long: boolean): ListEntry[] {
    const out: ListEntry[] = [];
    const entry = (p: string[]): ListEntry => {
      const e: ListEntry = { path: formatPath(p) };
      const el = this.element(p);
      if (el) {
        e.kind = el.kind;
        if (long) e.state = this.stateOf(el);
      }
      return e;
    };
    const visit = (p: string[]) => {
      const kids = p.length === 0 ? [this.id] : this.tree.children(p.slice(1));
      for (const k of kids) {
        const child = [...p, k];
        out.push(entry(child));
        if (recursive) visit(child);
      }
    };
    if (names.length > 1 && !this.tree.has(names.slice(1))) throw new NotFound(`${formatPath(names)} does not exist`);
    visit(names);
    return out;
  }

  private stateOf(el: Element | { kind: "server" }): string {
    if (el.kind === "server") return this.url;
    const s = el.chan.stat();
    return `cap=${s.cap} len=${s.len}${s.closed ? " closed" : ""}`;
  }

  peek(names: string[]): unknown {
    const el = this.element(names);
    if (!el) throw new NotFound(`${formatPath(names)} holds no element`);
    if (el.kind === "server") return this.serverStat();
    return el.chan.stat();
  }

  serverStat(): unknown {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const up = process.uptime();
    return {
      id: this.id,
      url: this.url,
      startedAt: this.startedAt.toISOString(),
      joinedAt: this.startedAt.toISOString(),
      version: VERSION,
      host: {
        hostname: os.hostname(),
        platform: os.platform(),
        arch: os.arch(),
        cpus: os.cpus().length,
        loadavg: os.loadavg(),
        memTotal: os.totalmem(),
        memFree: os.freemem(),
        uptime: os.uptime(),
      },
      process: {
        pid: process.pid,
        rssBytes: mem.rss,
        cpuPercent: up > 0 ? Math.round(((cpu.user + cpu.system) / 1e6 / up) * 1000) / 10 : 0,
      },
      elements: this.tree.size,
    };
  }

  servers(): { id: string; url: string; path: string; joinedAt: string }[] {
    return [{ id: this.id, url: this.url, path: `/${this.id}`, joinedAt: this.startedAt.toISOString() }];
  }

  scrub(names: string[], done: () => void): void {
    const el = this.element(names);
    if (!el) throw new NotFound(`${formatPath(names)} holds no element`);
    if (el.kind === "server") throw new WrongKind(`${formatPath(names)} is a server; use stop`);
    this.scrubElement(el, done);
  }

  scrubElement(el: ChanElement, done: () => void): void {
    this.tree.remove(el.names.slice(1), el);
    el.chan.scrub(done);
  }

  requestStop(names: string[], done: () => void): void {
    const el = this.element(names);
    if (el?.kind !== "server") throw new WrongKind(`${formatPath(names)} is not a server`);
    done();
    // Let the reply leave before the connections close.
    setImmediate(() => void this.stop());
  }

  /** Stops listening, closes every connection, and resolves when done. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.log("circuit: stopping");
        const closed = new Promise<void>((r) => this.server.close(() => r()));
        for (const s of this.sessions) s.shutdown();
        await closed;
        this.resolveStopped();
      })();
    }
    return this.stopping;
  }
}
