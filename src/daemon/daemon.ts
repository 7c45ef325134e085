// The daemon: listens, runs one Session per client connection, takes part in the circuit's
// membership, and hosts the elements of this server's part of the anchor tree (everything below
// /XID). /XID itself is the server element.

import { randomBytes } from "node:crypto";
import type * as net from "node:net";
import * as os from "node:os";
import type { SwimConfig } from "../cluster/config.js";
import type { MembershipEvent } from "../cluster/membership.js";
import { ClusterNode } from "../cluster/node.js";
import { AnchorTree } from "../element/anchor-tree.js";
import { Channel } from "../element/channel.js";
import { NotFound, ServerGone, toWire, WrongKind } from "../errors.js";
import { advertisedAddress } from "../transport/advertise.js";
import { Discovery, parseGroup } from "../transport/discovery.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { FrameConn as Conn } from "../transport/frame-conn.js";
import { createListener, KeyRing } from "../transport/secure.js";
import { badName, formatPath } from "../wire/path.js";
import { DEFAULT_MAX_VALUE, encode, FRAME_SLACK, T } from "../wire/protocol.js";
import { formatHost, formatUrl, isLoopback, parseHostPort, parseUrl } from "../wire/url.js";
import { type CgroupSupport, hostCgroups } from "./cgroups.js";
import { type DataDir, openDataDir } from "./data-dir.js";
import { dnsShortState, dnsStat, scrubDns } from "./dns-ops.js";
import type { ChanElement, DnsElement, Element, Item, SubElement } from "./elements.js";
import { resolveFsRoot } from "./fs-root.js";
import { HostResources } from "./host-ops.js";
import { DEFAULT_LIMITS, type Limits } from "./limits.js";
import { ProcTable } from "./proc.js";
import { ProcGuard, reapPredecessor } from "./proc-guard.js";
import { scrubProc } from "./proc-ops.js";
import { Session, TICK_MS } from "./session.js";
import { Store, type StoreOptions } from "./store.js";
import { StoreHost } from "./store-host.js";

export const VERSION = "0.1.0";

export interface DaemonOptions {
  /** HOST:PORT to listen on; port 0 picks a free port. Default 127.0.0.1:7711. */
  addr?: string;
  /** Largest encoded value accepted, in bytes. Default 16 MiB. */
  maxValue?: number;
  /** Server ID; default the one kept in `data`, else a new random one. */
  id?: string;
  /** A directory that keeps the server's ID across restarts; locked while the daemon runs. */
  data?: string;
  /**
   * URL of a server of the circuit to join, or several: any one that answers suffices. Retried
   * with capped backoff until one does; each change in how it fares is logged once.
   */
  join?: string | readonly string[];
  /**
   * HOST[:PORT] other machines reach this server at (the port defaults to the bound one). Without
   * it: the bound address, or for a wildcard bind (0.0.0.0, ::) the address of the interface that
   * routes to the first join peer, else the first non-loopback interface's.
   */
  advertise?: string;
  /** GROUP:PORT to announce this server on and find others by UDP multicast (off by default). */
  discover?: string;
  /** Cluster key: every connection must be TLS-PSK with it (or with one of `acceptKeys`). */
  key?: Buffer;
  /** Older keys still accepted from peers during a key rollover. */
  acceptKeys?: Buffer[];
  /** How long a connection may take to authenticate and say HELLO. Default 10 s. */
  handshakeMs?: number;
  /** A client connection that sends nothing for this long is closed. Default 60 s. */
  idleMs?: number;
  /** Most connections served at once. Default 4096. */
  maxConnections?: number;
  /** Bounds on what peers may make this daemon hold (defaults in src/daemon/limits.ts). */
  limits?: Partial<Limits>;
  /** Membership timing (defaults in src/cluster/config.ts). */
  swim?: Partial<SwimConfig>;
  /** Where log lines go; default stderr. */
  log?: (line: string) => void;
  /** The directory whose files clients may read and write (off when absent). */
  fsRoot?: string;
  /** Lets elements (nameservers) listen on non-loopback addresses without a cluster key. */
  insecure?: boolean;
  /**
   * Put every process in a cgroup of its own where the host allows it (default true). With false,
   * processes are tracked by process group only and requests with limits fail with Unsupported.
   */
  cgroups?: boolean;
  /**
   * The circuit's shared store (DESIGN §12): a NATS JetStream cluster holding everything under /@.
   * Without it, /@ does not exist and requests under it fail with Unsupported.
   */
  store?: StoreOptions;
}

export interface ListEntry {
  path: string;
  kind?: string;
  state?: string;
}

export function newServerId(): string {
  return `X${randomBytes(8).toString("hex")}`;
}

export function parseAddr(addr: string): { host: string; port: number } {
  return parseHostPort(addr);
}

export class Daemon {
  readonly id: string;
  readonly maxValue: number;
  readonly startedAt = new Date();
  url = "";
  readonly log: (line: string) => void;
  readonly handshakeMs: number;
  readonly limits: Readonly<Limits>;
  private readonly key: Buffer | undefined;
  private readonly tree = new AnchorTree<Element>();
  private readonly sessions = new Set<Session>();
  /** Open client sessions by the client id they gave in HELLO (a reconnecting client ends its old one). */
  readonly clientSessions = new Map<string, Session>();
  private readonly watchers = new Set<Session>();
  private readonly subs = new Set<SubElement>();
  private readonly nameservers = new Set<DnsElement>();
  /** Whether elements may listen beyond loopback: with a cluster key, or when told --insecure. */
  readonly mayListenBeyondLoopback: boolean;
  private readonly server: net.Server;
  private cluster: ClusterNode | undefined;
  /** Circuit-wide anchors (/@), when started with a store. */
  store: StoreHost | undefined;
  private discovery: Discovery | undefined;
  private pipeIds = 0;
  /** Processes this server started (src/daemon/proc.ts). */
  readonly procs: ProcTable;
  /** Ports and files of this host (src/daemon/host-ops.ts). */
  readonly host: HostResources;
  private readonly reaper: NodeJS.Timeout;
  private readonly maxConnections: number;
  private stopping: Promise<void> | undefined;
  private readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  private constructor(
    opts: DaemonOptions,
    id: string,
    private readonly dataDir: DataDir | undefined,
    cgroups: CgroupSupport = { reason: "not configured" },
  ) {
    this.id = id;
    this.maxValue = opts.maxValue ?? DEFAULT_MAX_VALUE;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.stopped = new Promise((r) => {
      this.resolveStopped = r;
    });
    this.handshakeMs = opts.handshakeMs ?? 10_000;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.key = opts.key;
    this.mayListenBeyondLoopback = opts.key !== undefined || opts.insecure === true;
    const ring = opts.key ? new KeyRing(opts.key, opts.acceptKeys) : undefined;
    this.server = createListener(ring, this.handshakeMs, (sock) => this.accept(sock));
    this.maxConnections = opts.maxConnections ?? 4096;
    const idleMs = opts.idleMs ?? 60_000;
    this.reaper = setInterval(
      () => {
        const now = performance.now();
        for (const s of this.sessions) s.tick(now, idleMs);
      },
      Math.min(TICK_MS, idleMs),
    );
    this.reaper.unref();
    const listenHost = parseAddr(opts.addr ?? "127.0.0.1:7711").host;
    const loopback = isLoopback(listenHost);
    this.host = new HostResources(opts.fsRoot, loopback ? "127.0.0.1" : "0.0.0.0");
    const guard = new ProcGuard({ owner: id, dataDir: opts.data, cgroups: !!cgroups.backend, log: this.log });
    this.procs = new ProcTable({ owner: id, cgroups, guard, log: this.log });
  }

  static async start(opts: DaemonOptions = {}): Promise<Daemon> {
    const { host, port } = parseAddr(opts.addr ?? "127.0.0.1:7711");
    const joins = typeof opts.join === "string" ? [opts.join] : [...(opts.join ?? [])];
    for (const j of joins) parseUrl(j);
    if (opts.fsRoot !== undefined) resolveFsRoot(opts.fsRoot);
    const dataDir = opts.data ? openDataDir(opts.data, newServerId) : undefined;
    const id = opts.id ?? dataDir?.id ?? newServerId();
    const cgroups: CgroupSupport =
      opts.cgroups === false ? { reason: "cgroups are off on this server (--no-cgroups)" } : hostCgroups();
    // Whatever a predecessor on this data directory left running dies before this one serves.
    const reaped = opts.data ? reapPredecessor(opts.data, id, cgroups.backend) : 0;
    const d = new Daemon(opts, id, dataDir, cgroups);
    if (reaped > 0) d.log(`circuit: killed ${reaped} process(es) left by the previous daemon on ${opts.data}`);
    try {
      await new Promise<void>((resolve, reject) => {
        d.server.once("error", reject);
        d.server.listen(port, host, () => {
          d.server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      dataDir?.release();
      throw err;
    }
    const a = d.server.address() as net.AddressInfo;
    let adv: Awaited<ReturnType<typeof advertisedAddress>>;
    try {
      adv = await advertisedAddress({ bound: a, advertise: opts.advertise, joins });
    } catch (err) {
      await new Promise((r) => d.server.close(r));
      dataDir?.release();
      throw err;
    }
    d.url = formatUrl(adv.host, adv.port, d.id);
    d.cluster = new ClusterNode({
      id: d.id,
      url: d.url,
      meta: { startedAt: d.startedAt.toISOString() },
      maxFrame: d.maxValue + FRAME_SLACK,
      key: opts.key,
      config: opts.swim,
      // A join's reasons are said within the handshake time, "no answer" included.
      joinReplyMs: Math.min(3000, d.handshakeMs),
      log: d.log,
      onEvent: (e) => d.membershipEvent(e),
    });
    if (opts.store) {
      try {
        const store = await Store.connect(opts.store);
        const cluster = d.cluster;
        d.store = new StoreHost({
          store,
          me: { id: d.id, url: d.url },
          // A holder membership never heard of may be alive elsewhere: only its lease's expiry says otherwise.
          alive: (id) => {
            const m = cluster.get(id);
            return m === undefined || m.state === "alive" || m.state === "suspect";
          },
          log: d.log,
        });
      } catch (err) {
        await d.stop();
        throw err;
      }
    }
    for (const j of joins) d.cluster.join(j);
    if (opts.discover) {
      const cluster = d.cluster;
      d.discovery = new Discovery(parseGroup(opts.discover), { id: d.id, url: d.url }, opts.key, (peer) => {
        const m = cluster.get(peer.id);
        if (!m || m.state === "dead" || m.state === "left") cluster.join(peer.url);
      });
      try {
        await d.discovery.start();
      } catch (err) {
        await d.stop();
        throw err;
      }
    }
    const where =
      adv.how === "bound address" ? "" : ` (listening on ${formatHost(a.address)}:${a.port}; address from ${adv.how})`;
    d.log(`circuit: serving ${d.url}${where}${joins.length > 0 ? `, joining ${joins.join(", ")}` : ""}`);
    return d;
  }

  /** Resolves when the daemon has stopped (by `stop()` or a remote `stop`). */
  get done(): Promise<void> {
    return this.stopped;
  }

  private accept(sock: net.Socket): void {
    if (this.stopping) {
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    // A peer that does not read may not make us buffer more than a few maximal values for it.
    const conn = new Conn(sock, {
      maxFrame: this.maxValue + FRAME_SLACK,
      maxUnsent: Math.max(this.limits.unsent, 2 * (this.maxValue + FRAME_SLACK)),
    });
    if (this.sessions.size >= this.maxConnections) {
      // Say why before closing, so that the client reports it rather than guessing.
      const err = new ServerGone(`server is at its limit of ${this.maxConnections} connections`);
      conn.send(T.ERR, [0], encode(toWire(err)));
      conn.destroy(err);
      return;
    }
    this.sessions.add(new Session(conn, this));
  }

  sessionGone(s: Session): void {
    this.sessions.delete(s);
    this.watchers.delete(s);
    this.store?.ownerGone(s);
  }

  /** A connection whose HELLO said it is another server: it carries membership messages. */
  adoptPeer(conn: FrameConn, peerId: string, s: Session): void {
    this.sessions.delete(s);
    this.cluster?.links.adopt(conn, peerId);
  }

  /**
   * Merges this server into the circuit of the server at `url` (`circuit join`): resolves once
   * that server answered, with the size of our merged view.
   */
  async joinCircuit(url: unknown): Promise<{ url: string; members: number }> {
    if (typeof url !== "string") throw new TypeError("join takes a circuit URL");
    parseUrl(url);
    if (!this.cluster || this.stopping) throw new ServerGone("this server is stopping");
    return this.cluster.joinNow(url, this.handshakeMs);
  }

  /** A client wants membership changes pushed. */
  watch(s: Session): void {
    this.watchers.add(s);
  }

  private membershipEvent(e: MembershipEvent): void {
    const path = `/${e.member.id}`;
    this.log(`circuit: ${e.kind} ${path} ${e.member.addr}`);
    const ev = { ev: e.kind, id: e.member.id, url: e.member.addr, joinedAt: this.joinedAt(e.member.joinedAt) };
    for (const w of this.watchers) w.push(ev);
    const value = encode(path);
    for (const sub of this.subs) {
      if (sub.kind === (e.kind === "join" ? "@join" : "@leave")) sub.lost += sub.chan.offer(value);
    }
  }

  private joinedAt(perfMs: number): string {
    return new Date(performance.timeOrigin + perfMs).toISOString();
  }

  nextPipeId(): number {
    this.pipeIds = (this.pipeIds + 1) >>> 0 || 1;
    return this.pipeIds;
  }

  /** Validates names from the wire; the first must be this server. */
  checkPath(names: string[]): string[] {
    if (names.length > this.limits.depth) throw new TypeError(`path deeper than ${this.limits.depth} names`);
    for (const [i, n] of names.entries()) {
      const why = badName(n);
      if (why) throw new TypeError(why);
      // The first name is a server ID, whose length is fixed.
      if (i > 0 && n.length > this.limits.nameLength) {
        throw new TypeError(`anchor name longer than ${this.limits.nameLength}`);
      }
    }
    if (names.length > 0 && names[0] !== this.id) {
      const m = this.cluster?.get(names[0] as string);
      const live = m && (m.state === "alive" || m.state === "suspect");
      throw new NotFound(
        live
          ? `${formatPath(names)} is hosted by ${names[0]}, not by this server`
          : `no server ${names[0]} in this circuit`,
      );
    }
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

  makeSub(names: string[], kind: unknown): SubElement {
    if (kind !== "@join" && kind !== "@leave") throw new RangeError("a subscription is @join or @leave");
    if (names.length < 2) throw new WrongKind(`${formatPath(names)} cannot hold a subscription`);
    const el: SubElement = { kind, chan: new Channel<Item>(this.limits.subBuffer), names, lost: 0 };
    this.tree.set(names.slice(1), el, formatPath(names));
    this.subs.add(el);
    // A new @join starts with every live server.
    if (kind === "@join") for (const s of this.servers()) el.lost += el.chan.offer(encode(s.path));
    return el;
  }

  /** Puts an element made elsewhere (a process) at names; AnchorBusy if the anchor holds one. */
  place(names: string[], el: Element): void {
    this.tree.set(names.slice(1), el, formatPath(names));
  }

  /** A nameserver to close when the daemon stops. */
  trackNameserver(el: DnsElement): void {
    this.nameservers.add(el);
  }

  /** Takes el from its anchor if it is still there. */
  unplace(el: Element): void {
    this.tree.remove(el.names.slice(1), el);
  }

  list(names: string[], recursive: boolean, long: boolean): ListEntry[] {
    const out: ListEntry[] = [];
    const entry = (p: string[]): ListEntry => {
      const e: ListEntry = { path: formatPath(p) };
      const el = p.length === 1 && p[0] !== this.id ? { kind: "server" as const } : this.element(p);
      if (el) {
        e.kind = el.kind;
        if (long) e.state = this.shortState(el, p);
      }
      return e;
    };
    const visit = (p: string[]) => {
      const kids = p.length === 0 ? this.servers().map((s) => s.id) : this.tree.children(p.slice(1));
      for (const k of kids) {
        const child = [...p, k];
        out.push(entry(child));
        // Other servers' trees are listed by asking them (the client does).
        if (recursive && (p.length > 0 || k === this.id)) visit(child);
      }
    };
    if (names.length > 1 && !this.tree.has(names.slice(1))) throw new NotFound(`${formatPath(names)} does not exist`);
    visit(names);
    if (names.length === 0 && this.store) out.push({ path: "/@", ...(long ? { state: "store" } : {}) });
    return out;
  }

  private shortState(el: Element | { kind: "server" }, p: string[]): string {
    if (el.kind === "server") return this.cluster?.get(p[0] as string)?.addr ?? this.url;
    if (el.kind === "proc") return el.proc.shortState();
    if (el.kind === "dns") return dnsShortState(el);
    const s = el.chan.stat();
    if (el.kind !== "chan") return `pending=${s.len} lost=${el.lost}`;
    return `cap=${s.cap} len=${s.len}${s.closed ? " closed" : ""}`;
  }

  /** The peek answer of a channel-like element. */
  stateOf(el: Element): unknown {
    if (el.kind === "proc") return el.proc.stat();
    if (el.kind === "dns") return dnsStat(el);
    if (el.kind === "chan") return el.chan.stat();
    return { source: el.kind, pending: el.chan.stat().len, lost: el.lost };
  }

  peek(names: string[]): unknown {
    const el = this.element(names);
    if (!el) throw new NotFound(`${formatPath(names)} holds no element`);
    if (el.kind === "server") return this.serverStat();
    return this.stateOf(el);
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

  /** The live servers as this server sees them. */
  servers(): { id: string; url: string; path: string; joinedAt: string }[] {
    const members = this.cluster?.members() ?? [];
    const out = members.map((m) => ({
      id: m.id,
      url: m.addr,
      path: `/${m.id}`,
      joinedAt: m.id === this.id ? this.startedAt.toISOString() : this.joinedAt(m.joinedAt),
    }));
    if (!out.some((s) => s.id === this.id)) {
      out.push({ id: this.id, url: this.url, path: `/${this.id}`, joinedAt: this.startedAt.toISOString() });
    }
    return out.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  }

  scrub(names: string[], done: () => void): void {
    const el = this.element(names);
    if (!el) throw new NotFound(`${formatPath(names)} holds no element`);
    if (el.kind === "server") throw new WrongKind(`${formatPath(names)} is a server; use stop`);
    this.scrubElement(el, done);
  }

  scrubElement(el: Element, done: () => void): void {
    if (el.kind === "proc") return scrubProc(this, el, false, done);
    if (el.kind === "dns") {
      this.nameservers.delete(el);
      return scrubDns(this, el, done);
    }
    this.tree.remove(el.names.slice(1), el);
    if (el.kind !== "chan") this.subs.delete(el);
    el.chan.scrub(() => {
      // Once no credit is out, every connection lets go of its handle (DESIGN §3.1).
      for (const s of this.sessions) s.releaseHandle(el);
      done();
    });
  }

  requestStop(names: string[], done: () => void): void {
    const el = this.element(names);
    if (el?.kind !== "server") throw new WrongKind(`${formatPath(names)} is not a server`);
    done();
    // Let the reply leave before the connections close.
    setImmediate(() => void this.stop());
  }

  /** Leaves the circuit, stops listening, closes every connection, and resolves when done. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.log("circuit: stopping");
        clearInterval(this.reaper);
        // Hosted processes go with their server (TERM, KILL after 2 s); waiters hear the exit first.
        await this.procs.shutdown(2000);
        await Promise.all([...this.nameservers].map((el) => el.ns.close()));
        this.discovery?.close();
        await this.store?.close();
        const others = (this.cluster?.members().length ?? 1) > 1;
        if (others) await this.cluster?.leave();
        else this.cluster?.close();
        const closed = new Promise<void>((r) => this.server.close(() => r()));
        for (const s of this.sessions) s.shutdown();
        await closed;
        this.dataDir?.release();
        this.resolveStopped();
      })();
    }
    return this.stopping;
  }
}
