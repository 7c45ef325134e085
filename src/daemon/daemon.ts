// The daemon: listens, runs one Session per client connection, takes part in the circuit's
// membership, and hosts the elements of this server's part of the anchor tree (everything below
// /XID). /XID itself is the server element.

import { randomBytes } from "node:crypto";
import type * as net from "node:net";
import * as os from "node:os";
import type { Duplex } from "node:stream";
import type { SwimConfig } from "../cluster/config.js";
import { DEFAULT_LOAD, type LoadConfig } from "../cluster/config.js";
import type { MembershipEvent } from "../cluster/membership.js";
import { ClusterNode } from "../cluster/node.js";
import { type Candidate, choose, loadOf, type PlaceRequest, type ServerLoad } from "../cluster/placement.js";
import { AnchorTree } from "../element/anchor-tree.js";
import { Channel, MAX_DURABLE_CAP } from "../element/channel.js";
import { AnchorBusy, NoCapacity, NotFound, ServerGone, toWire, Unsupported, WrongKind } from "../errors.js";
import { advertisedAddress } from "../transport/advertise.js";
import { Discovery } from "../transport/discovery.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { FrameConn as Conn } from "../transport/frame-conn.js";
import { parseGroup } from "../transport/group.js";
import { memoryPair } from "../transport/memory-pair.js";
import { createListener, KeyRing } from "../transport/secure.js";
import { monotonicMs, wallMsAt } from "../util/clock.js";
import { type LogFields, type Logger, lineLogger } from "../util/log.js";
import { VERSION } from "../version.js";
import { badName, formatPath } from "../wire/path.js";
import { checkLimits } from "../wire/proc-limits.js";
import { DEFAULT_MAX_VALUE, encode, FRAME_SLACK, T } from "../wire/protocol.js";
import { checkServiceSpec } from "../wire/svc-spec.js";
import { formatHost, formatUrl, isLoopback, parseHostPort, parseUrl } from "../wire/url.js";
import { type CgroupSupport, hostCgroups } from "./cgroups.js";
import { type DataDir, openDataDir } from "./data-dir.js";
import { dnsShortState, dnsStat, scrubDns } from "./dns-ops.js";
import { DurableChan } from "./durable-chan.js";
import { DurableStore, writeError } from "./durable-store.js";
import type { ChanElement, DnsElement, Element, Item, ProcElement, SubElement, SvcElement } from "./elements.js";
import { resolveFsRoot } from "./fs-root.js";
import { HostResources } from "./host-ops.js";
import { DEFAULT_LIMITS, type Limits } from "./limits.js";
import { LoadMeter } from "./load-meter.js";
import { createLogger } from "./logger.js";
import { type ObsElement, type ObsProcTail, type ObsSnapshot, observeElement, procTail, TAILS_MAX } from "./observe.js";
import { ProcTable, parseCommand } from "./proc.js";
import { ProcGuard, reapPredecessor } from "./proc-guard.js";
import { scrubProc } from "./proc-ops.js";
import { Session, TICK_MS } from "./session.js";
import type { Store } from "./store.js";
import type { StoreOptions } from "./store-config.js";
import type { StoreHost } from "./store-host.js";
import type { StoreServices } from "./store-svc.js";
import { ServiceHost, type ServiceHostDeps, type ServiceRemote } from "./svc-host.js";

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
  /**
   * How long the send records (de-duplication by sequence number) of a client whose last
   * connection closed are kept for it to come back and resend (a client that says goodbye has those
   * of the channels it holds dropped at once). Default 11 minutes: longer than the longest a client
   * tries to reconnect (MAX_RECONNECT_MS, 10 minutes).
   */
  forgetClientsMs?: number;
  /** Most connections served at once. Default 4096. */
  maxConnections?: number;
  /** Bounds on what peers may make this daemon hold (defaults in src/daemon/limits.ts). */
  limits?: Partial<Limits>;
  /** Membership timing (defaults in src/cluster/config.ts). */
  swim?: Partial<SwimConfig>;
  /**
   * Where events are logged (src/util/log.ts); default JSON lines (text on a terminal) on stderr at
   * level info. A function gets each event as a plain `circuit: …` line.
   */
  log?: Logger | ((line: string) => void);
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
  /**
   * How this daemon reaches the circuit as a client, for the services it supervises (their
   * replicas run on any server). The daemon layer does not import the client library: whoever
   * starts the daemon passes one (the CLI's `start` does). Without it, makeService is Unsupported.
   */
  connect?: (url: string) => Promise<ServiceRemote>;
  /** Load measuring and publishing (defaults in src/cluster/config.ts). */
  load?: Partial<LoadConfig>;
}

/** A logged event as the dashboard's feed shows it. */
export interface FeedEntry {
  /** Increases by one per event of this daemon. */
  seq: number;
  at: string;
  level: string;
  msg: string;
  fields: LogFields;
}

const FEED_KEEP = 200;
/**
 * How long a vanished client's send records are kept by default: longer than the longest a client
 * tries to reconnect (the client's MAX_RECONNECT_MS, 10 minutes).
 */
export const FORGET_CLIENTS_MS = 11 * 60_000;

/** What /metrics reports of one daemon, sampled when scraped. */
export interface MetricsSample {
  /** Client connections open now. */
  connections: number;
  /** Live members of the circuit in this server's view, itself included. */
  members: number;
  /** Elements hosted, by kind. */
  elements: Record<string, number>;
  channels: number;
  /** Values sent into / received from channels so far, by channel kind (scrubbed ones included). */
  values: Record<string, { in: number; out: number }>;
  /** Senders and receivers blocked on channels now. */
  blocked: number;
  /** Bytes read from and written to client connections so far. */
  bytesIn: number;
  bytesOut: number;
  procs: { path: string; cpuPercent: number; rssBytes: number }[];
  detector: { suspicions: number; refutations: number; deaths: number; probeFailures: number };
  /** Store operations since the last sample (taken out by the call). */
  /** Store writes by operation (durable channels, --data): how many, their total and largest sync time. */
  storeOps: Record<string, { count: number; seconds: number; maxSeconds: number }>;
}

export interface ListEntry {
  path: string;
  kind?: string;
  /** `ls -l`: a short state for people ("cap=3 len=1"). */
  state?: string;
  /** `ls -l`: the same state as an object, for programs (`ls -l --json`). */
  stat?: Record<string, unknown>;
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
  /**
   * Where this daemon logs events (src/util/log.ts): `d.log.info({ event: "takeover", path }, "…")`.
   * Still callable with a plain line (`d.log("circuit: …")`, logged at info without fields) for code
   * written before structured logs.
   */
  readonly log: Logger & ((line: string) => void);
  /** The last FEED_KEEP logged events (info and above), oldest first, for the dashboard. */
  readonly recent: FeedEntry[] = [];
  private feedSeq = 0;
  private readonly stopHooks: (() => Promise<void>)[] = [];
  /** Where --http serves the dashboard and /metrics (src/http/), once it does. */
  httpUrl: string | undefined;
  /** Bytes of client connections that have closed, and values of channels that were scrubbed. */
  private readonly goneBytes = { in: 0, out: 0 };
  private readonly goneValues = new Map<string, { in: number; out: number }>();
  /** Per store operation: count and total seconds so far, and the largest since the last sample. */
  private readonly storeOps: Record<string, { count: number; seconds: number; maxSeconds: number }> = {};
  readonly handshakeMs: number;
  readonly limits: Readonly<Limits>;
  private readonly key: Buffer | undefined;
  private readonly tree = new AnchorTree<Element>();
  private readonly sessions = new Set<Session>();
  /** Open client sessions by the client id they gave in HELLO (a reconnecting client ends its old one). */
  readonly clientSessions = new Map<string, Session>();
  /**
   * Clients whose last connection closed, with when: their send records (ChanElement.stored, and a
   * durable channel's) go once they have been away forgetClientsMs.
   */
  private readonly vanished = new Map<string, number>();
  private readonly forgetClientsMs: number;
  private readonly watchers = new Set<Session>();
  private readonly subs = new Set<SubElement>();
  private readonly nameservers = new Set<DnsElement>();
  private readonly services = new Set<SvcElement>();
  /** Processes to scrub when a given server leaves (a service's replicas, by supervisor). */
  private readonly tied = new Map<string, Set<ProcElement>>();
  private meter: LoadMeter | undefined;
  private readonly loadCfg: LoadConfig;
  /** Placements this server made, counted against their server until its load shows them. */
  private readonly pending = new Map<string, { req: PlaceRequest; seq: number; at: number }[]>();
  private remote: Promise<ServiceRemote> | undefined;
  private readonly connect: ((url: string) => Promise<ServiceRemote>) | undefined;
  /** Whether elements may listen beyond loopback: with a cluster key, or when told --insecure. */
  readonly mayListenBeyondLoopback: boolean;
  private readonly server: net.Server;
  private cluster: ClusterNode | undefined;
  /** @internal Circuit-wide anchors (/@), when started with --store (DESIGN §12). */
  shared: StoreHost | undefined;
  /** @internal Services under /@, supervised here while this daemon holds their leases. */
  sharedSvcs: StoreServices | undefined;
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
    /** Where durable channels live (with --data only). */
    private readonly store?: DurableStore,
  ) {
    this.id = id;
    this.maxValue = opts.maxValue ?? DEFAULT_MAX_VALUE;
    if (store) store.onOp = (op, seconds) => this.noteStoreOp(op, seconds);
    const base = typeof opts.log === "function" ? lineLogger(opts.log) : (opts.log ?? createLogger());
    // Every event at info or above also goes to the feed that the dashboard shows.
    const tee =
      (level: "info" | "warn" | "error") =>
      (f: LogFields, msg: string): void => {
        base[level](f, msg);
        this.remember(level, f, msg);
      };
    this.log = Object.assign((line: string) => base.info({}, line.replace(/^circuit: /, "")), {
      debug: (f: LogFields, m: string) => base.debug(f, m),
      info: tee("info"),
      warn: tee("warn"),
      error: tee("error"),
    });
    this.stopped = new Promise((r) => {
      this.resolveStopped = r;
    });
    this.handshakeMs = opts.handshakeMs ?? 10_000;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.loadCfg = { ...DEFAULT_LOAD, ...opts.load };
    this.connect = opts.connect;
    this.key = opts.key;
    this.mayListenBeyondLoopback = opts.key !== undefined || opts.insecure === true;
    const ring = opts.key ? new KeyRing(opts.key, opts.acceptKeys) : undefined;
    this.server = createListener(
      ring,
      this.handshakeMs,
      (sock) => this.accept(sock),
      (peer, reason) =>
        this.log.warn({ event: "handshake-refused", peer, reason }, `refused a connection from ${peer}: ${reason}`),
    );
    this.maxConnections = opts.maxConnections ?? 4096;
    const idleMs = opts.idleMs ?? 60_000;
    this.forgetClientsMs = opts.forgetClientsMs ?? FORGET_CLIENTS_MS;
    this.reaper = setInterval(
      () => {
        const now = monotonicMs();
        for (const s of this.sessions) s.tick(now, idleMs);
        this.forgetVanished(now);
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
    let store: DurableStore | undefined;
    try {
      store = opts.data ? await DurableStore.open(opts.data) : undefined;
    } catch (err) {
      dataDir?.release();
      throw err;
    }
    const id = opts.id ?? dataDir?.id ?? newServerId();
    const cgroups: CgroupSupport =
      opts.cgroups === false ? { reason: "cgroups are off on this server (--no-cgroups)" } : hostCgroups();
    // Whatever a predecessor on this data directory left running dies before this one serves.
    const reaped = opts.data ? reapPredecessor(opts.data, id, cgroups.backend) : 0;
    const d = new Daemon(opts, id, dataDir, cgroups, store);
    // Durable channels are back at their anchors, with their backlogs, before anyone can connect.
    d.restoreChannels();
    if (reaped > 0) {
      d.log.warn(
        { event: "reaped", count: reaped, data: opts.data },
        `killed ${reaped} process(es) left by the previous daemon on ${opts.data}`,
      );
    }
    try {
      await new Promise<void>((resolve, reject) => {
        d.server.once("error", reject);
        d.server.listen(port, host, () => {
          d.server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      await store?.close();
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
    const cluster = d.cluster;
    d.meter = new LoadMeter(
      {
        procs: () => d.procs.load(),
        publish: (load) => cluster.updateMeta({ startedAt: d.startedAt.toISOString(), load }),
      },
      d.loadCfg,
    );
    if (opts.store) {
      try {
        // Loaded only by daemons with a store: the NATS client alone is some 60 modules and MBs of RSS.
        const [{ Store }, { StoreHost }, { StoreServices: Services }] = await Promise.all([
          import("./store.js"),
          import("./store-host.js"),
          import("./store-svc.js"),
        ]);
        const store = await Store.connect(opts.store);
        d.shared = new StoreHost({
          store,
          me: { id: d.id, url: d.url },
          // A holder membership never heard of may be alive elsewhere: only its lease's expiry says otherwise.
          alive: (id) => {
            const m = cluster.get(id);
            return m === undefined || m.state === "alive" || m.state === "suspect";
          },
          log: d.log,
        });
        d.sharedSvcs = d.storeServices(Services, store, cluster);
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
    d.log.info(
      { event: "serving", url: d.url, server: d.id, ...(joins.length > 0 ? { join: joins } : {}) },
      `serving ${d.url}${where}${joins.length > 0 ? `, joining ${joins.join(", ")}` : ""}`,
    );
    return d;
  }

  /** Services under /@ (DESIGN §3.7, §12): supervised by whichever daemon holds their lease. */
  private storeServices(Services: typeof StoreServices, store: Store, cluster: ClusterNode): StoreServices {
    const connect = this.connect;
    return new Services({
      store,
      me: { id: this.id, url: this.url },
      alive: (id) => {
        const m = cluster.get(id);
        return m === undefined || m.state === "alive" || m.state === "suspect";
      },
      members: () => this.servers().map((s) => s.id),
      log: this.log,
      checkSpec: connect
        ? (raw) => {
            const spec = checkServiceSpec(raw, parseCommand);
            if (spec.autoscale && "chan" in spec.autoscale)
              this.checkPath(spec.autoscale.chan.split("/").slice(1), true);
            return spec;
          }
        : undefined,
      newHost: (names, spec, shared, prior) => new ServiceHost(this.serviceDeps(), names, spec, shared, prior),
    });
  }

  private remember(level: string, fields: LogFields, msg: string): void {
    if (typeof fields.event !== "string") return;
    this.feedSeq++;
    this.recent.push({ seq: this.feedSeq, at: new Date().toISOString(), level, msg, fields });
    if (this.recent.length > FEED_KEEP) this.recent.splice(0, this.recent.length - FEED_KEEP);
  }

  /** Runs `f` first thing when the daemon stops (the HTTP endpoint closes before the connections). */
  onStop(f: () => Promise<void>): void {
    this.stopHooks.push(f);
  }

  /** Resolves when the daemon has stopped (by `stop()` or a remote `stop`). */
  get done(): Promise<void> {
    return this.stopped;
  }

  /**
   * @internal A connection to this daemon from within its own process, over an in-memory pair
   * (src/transport/memory-pair.ts): returns the client's end. For fast client–session tests.
   */
  connectInMemory(): Duplex {
    const [client, server] = memoryPair();
    this.accept(server);
    return client;
  }

  private accept(sock: net.Socket | Duplex): void {
    if (this.stopping) {
      sock.destroy();
      return;
    }
    if ("setNoDelay" in sock) sock.setNoDelay(true);
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
    const sock = s.conn.stream as { bytesRead?: number; bytesWritten?: number };
    this.goneBytes.in += sock.bytesRead ?? 0;
    this.goneBytes.out += sock.bytesWritten ?? 0;
    this.sessions.delete(s);
    this.watchers.delete(s);
    this.shared?.ownerGone(s);
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
    this.log.info({ event: e.kind, server: e.member.id, url: e.member.addr }, `${e.kind} ${path} ${e.member.addr}`);
    if (e.kind === "leave") {
      this.pending.delete(e.member.id);
      const tied = this.tied.get(e.member.id);
      this.tied.delete(e.member.id);
      for (const el of tied ?? []) {
        if (this.element(el.names) !== el) continue;
        this.log.info(
          { event: "proc-orphaned", path: formatPath(el.names), supervisor: e.member.id },
          `${formatPath(el.names)}: stopped, its supervisor /${e.member.id} left the circuit`,
        );
        scrubProc(this, el, false, () => {});
      }
      for (const s of this.services) s.svc.serverGone(e.member.id);
      this.sharedSvcs?.memberLeft(e.member.id);
    }
    const ev = { ev: e.kind, id: e.member.id, url: e.member.addr, joinedAt: this.joinedAt(e.member.joinedAt) };
    for (const w of this.watchers) w.push(ev);
    const value = encode(path);
    for (const sub of this.subs) {
      if (sub.kind === (e.kind === "join" ? "@join" : "@leave")) sub.lost += sub.chan.offer(value);
    }
  }

  private joinedAt(perfMs: number): string {
    return new Date(wallMsAt(perfMs)).toISOString();
  }

  nextPipeId(): number {
    this.pipeIds = (this.pipeIds + 1) >>> 0 || 1;
    return this.pipeIds;
  }

  /** Validates names from the wire; the first must be this server (unless anyServer). */
  checkPath(names: string[], anyServer = false): string[] {
    if (names.length > this.limits.depth) throw new TypeError(`path deeper than ${this.limits.depth} names`);
    for (const [i, n] of names.entries()) {
      const why = badName(n);
      if (why) throw new TypeError(why);
      // The first name is a server ID, whose length is fixed.
      if (i > 0 && n.length > this.limits.nameLength) {
        throw new TypeError(`anchor name longer than ${this.limits.nameLength}`);
      }
    }
    if (names.length > 0 && names[0] !== this.id && !anyServer) {
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

  /**
   * A durable channel (DESIGN §3.6): answered once its record is synced. Unsupported without a
   * data directory, before anything is created.
   */
  async makeDurableChan(names: string[], cap: unknown): Promise<ChanElement> {
    if (!this.store) throw new Unsupported("durable channels need a server started with --data DIR");
    if (names.length < 2) throw new WrongKind(`${formatPath(names)} cannot hold a channel`);
    if (typeof cap !== "number" || !Number.isInteger(cap) || cap < 0 || cap > MAX_DURABLE_CAP) {
      throw new RangeError(`a durable channel's capacity must be an integer from 0 to ${MAX_DURABLE_CAP}, got ${cap}`);
    }
    if (this.tree.get(names.slice(1))) throw new AnchorBusy(`${formatPath(names)} already holds an element`);
    const rec = { names: names.slice(1), cap, closed: false };
    const { id, done } = this.store.create(rec);
    const el = this.durableElement(id, rec, names);
    // Placed at once (a second mkchan meanwhile gets AnchorBusy); answered once synced.
    this.tree.set(names.slice(1), el, formatPath(names));
    try {
      await done;
    } catch (err) {
      this.tree.remove(names.slice(1), el);
      throw await writeError(this.store.file, err);
    }
    return el;
  }

  private durableElement(id: number, rec: { names: string[]; cap: number; closed: boolean }, names: string[]) {
    const store = this.store as DurableStore;
    const buffer = new DurableChan(store, id, rec);
    // Every value goes through the store: none is handed from a sender straight to a receiver
    // (with the slots all reserved by credits, the plain engine would). Capacity 0 has no buffer
    // to store: values are handed over, and a send completes when its receiver acknowledges it.
    const chan = new Channel<Item>(rec.cap, { buffer, maxCap: MAX_DURABLE_CAP, handoff: rec.cap === 0 });
    buffer.channel = chan;
    const el: ChanElement = { kind: "chan", chan, names, durable: buffer };
    return el;
  }

  /** A client said HELLO with its id: its send records stay while it is connected. */
  clientBack(cid: string): void {
    this.vanished.delete(cid);
  }

  /** A client's last connection closed: its send records go if it stays away. */
  clientVanished(cid: string): void {
    this.vanished.set(cid, monotonicMs());
  }

  /**
   * Drops the send records of clients away for forgetClientsMs: a client that vanished without
   * its goodbye (a new id per connection, say) would otherwise leave one record per channel it
   * sent on, for as long as the channel lives.
   */
  private forgetVanished(now: number): void {
    if (this.vanished.size === 0) return;
    const gone: string[] = [];
    for (const [cid, at] of this.vanished) if (now - at >= this.forgetClientsMs) gone.push(cid);
    if (gone.length === 0) return;
    for (const cid of gone) this.vanished.delete(cid);
    for (const [, el] of this.tree.walk([])) {
      if (el.kind !== "chan" || !el.stored) continue;
      for (const cid of gone) if (el.stored.delete(cid)) el.durable?.dropDedupe(cid);
    }
  }

  /** Puts every durable channel of the store back at its anchor (start-up). */
  private restoreChannels(): void {
    if (!this.store) return;
    for (const { id, rec } of this.store.channels()) {
      const names = [this.id, ...rec.names];
      const el = this.durableElement(id, rec, names);
      el.durable?.restore();
      if (rec.closed) el.chan.restoreClosed();
      const stored = this.store.dedupeOf(id);
      if (stored.size > 0) el.stored = stored;
      // Their clients have not come back yet: as if they had just vanished.
      for (const cid of stored.keys()) this.vanished.set(cid, monotonicMs());
      this.tree.set(rec.names, el, formatPath(names));
    }
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
    if (el.kind === "proc") {
      this.meter?.nudge();
      void el.proc.exited.then(() => this.meter?.nudge());
    }
  }

  /** Whether `id` is this server or a live member. */
  isLive(id: string): boolean {
    if (id === this.id) return true;
    const m = this.cluster?.get(id);
    return m !== undefined && (m.state === "alive" || m.state === "suspect");
  }

  /** Scrubs el when server `id` leaves the circuit (DESIGN.md §3.7: replicas go with their supervisor). */
  tie(el: ProcElement, id: string): void {
    if (id === this.id) return; // it goes with this server anyway
    const set = this.tied.get(id) ?? new Set();
    set.add(el);
    this.tied.set(id, set);
    void el.proc.exited.then(() => {
      set.delete(el);
      if (set.size === 0 && this.tied.get(id) === set) this.tied.delete(id);
    });
  }

  /** Live servers with their gossiped loads and the placements this server made there lately. */
  candidates(): Candidate[] {
    const all = this.cluster?.members() ?? [];
    // A suspect server may be dead: only when no server is beyond doubt is one chosen.
    const alive = all.filter((m) => m.state === "alive");
    const members = alive.length > 0 ? alive : all;
    const now = monotonicMs();
    return members.map((m) => {
      const load = m.id === this.id && this.meter ? this.meter.current() : loadOf(m.meta);
      const seen = load?.seq ?? 0;
      const mine = (this.pending.get(m.id) ?? []).filter(
        (p) => now - p.at < this.loadCfg.pendingMaxMs && seen < p.seq + this.loadCfg.pendingPublications,
      );
      if (mine.length > 0) this.pending.set(m.id, mine);
      else this.pending.delete(m.id);
      return { id: m.id, load, pending: mine.map((p) => p.req) };
    });
  }

  /** Notes a placement on `server`, to count it until that server's load includes it. */
  placed(server: string, req: PlaceRequest): void {
    // Placements start asynchronously (through a client, even here): the count against a server
    // holds until that server has published twice since, our own figures included.
    const load = server === this.id ? this.meter?.current() : loadOf(this.cluster?.get(server)?.meta);
    const list = this.pending.get(server) ?? [];
    list.push({ req, seq: load?.seq ?? 0, at: monotonicMs() });
    this.pending.set(server, list);
  }

  /**
   * The server a process asking for `req` should go to (DESIGN.md §3.7): the live one with the
   * most free capacity that fits it. NotFound when none fits.
   */
  placeRequest(raw: unknown): string {
    const o = (raw ?? {}) as Record<string, unknown>;
    if (typeof o !== "object" || Array.isArray(o)) throw new TypeError("place takes { cpus?, memoryBytes? }");
    const limits = checkLimits({ cpus: o.cpus ?? undefined, memoryBytes: o.memoryBytes ?? undefined }) ?? {};
    const req: PlaceRequest = { cpus: limits.cpus, memoryBytes: limits.memoryBytes };
    const id = choose(this.candidates(), req);
    if (!id) throw new NoCapacity(`no live server has room for ${JSON.stringify(req)}`);
    this.placed(id, req);
    return `/${id}`;
  }

  /** Starts supervising a service at names (DESIGN.md §3.7). */
  makeService(names: string[], rawSpec: unknown): SvcElement {
    if (names.length < 2) throw new WrongKind(`${formatPath(names)} cannot hold a service`);
    const spec = checkServiceSpec(rawSpec, parseCommand);
    if (spec.autoscale && "chan" in spec.autoscale) this.checkPath(spec.autoscale.chan.split("/").slice(1), true);
    if (!this.connect) throw new Unsupported("this daemon was started without a client connection for services");
    if (this.element(names)) throw new AnchorBusy(`${formatPath(names)} already holds an element`);
    const svc = new ServiceHost(this.serviceDeps(), names, spec);
    const el: SvcElement = { kind: "svc", svc, names };
    this.tree.set(names.slice(1), el, formatPath(names));
    this.services.add(el);
    return el;
  }

  /** What a service's driver needs of this daemon (the caller has checked that `connect` is set). */
  private serviceDeps(): ServiceHostDeps {
    const connect = this.connect as (url: string) => Promise<ServiceRemote>;
    return {
      remote: () => {
        this.remote ??= connect(this.url).catch((err) => {
          this.remote = undefined;
          throw err;
        });
        return this.remote;
      },
      candidates: () => this.candidates(),
      placed: (server, req) => this.placed(server, req),
      hostOf: (server) => {
        const addr = server === this.id ? this.url : this.cluster?.get(server)?.addr;
        if (!addr) return undefined;
        try {
          return parseUrl(addr).host;
        } catch {
          return undefined;
        }
      },
      log: this.log,
      selfId: this.id,
    };
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
        if (long) {
          e.state = this.shortState(el, p);
          e.stat = this.listStat(el, p);
        }
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
    if (names.length === 0 && this.shared) out.push({ path: "/@", ...(long ? { state: "store" } : {}) });
    return out;
  }

  private shortState(el: Element | { kind: "server" }, p: string[]): string {
    if (el.kind === "server") return this.cluster?.get(p[0] as string)?.addr ?? this.url;
    if (el.kind === "proc") return el.proc.shortState();
    if (el.kind === "dns") return dnsShortState(el);
    if (el.kind === "svc") return el.svc.shortState();
    const s = el.chan.stat();
    if (el.kind !== "chan") return `pending=${s.len} lost=${el.lost}`;
    return `cap=${s.cap} len=${s.len}${s.closed ? " closed" : ""}${el.durable ? " durable" : ""}`;
  }

  /** The state `ls -l` shows, as an object (smaller than a peek: no host figures, no records). */
  private listStat(el: Element | { kind: "server" }, p: string[]): Record<string, unknown> {
    if (el.kind === "server") return { url: this.cluster?.get(p[0] as string)?.addr ?? this.url };
    if (el.kind === "proc") {
      const { pid, phase, exitCode, signal } = el.proc.stat();
      return { pid, phase, exitCode, signal };
    }
    if (el.kind === "dns") return { address: el.ns.address, records: el.ns.zone.size };
    if (el.kind === "svc") {
      const { state, desired, replicas } = el.svc.stat();
      return { state, desired, replicas: replicas.length };
    }
    const s = el.chan.stat();
    if (el.kind !== "chan") return { source: el.kind, pending: s.len, lost: el.lost };
    return { ...s };
  }

  /** The peek answer of a channel-like element. */
  stateOf(el: Element): unknown {
    if (el.kind === "proc") return el.proc.stat();
    if (el.kind === "dns") return dnsStat(el);
    if (el.kind === "svc") return el.svc.stat();
    if (el.kind === "chan") {
      return el.durable ? { ...el.chan.stat(), durable: true, bytes: el.durable.bytes } : el.chan.stat();
    }
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
      ...(this.httpUrl ? { http: this.httpUrl } : {}),
    };
  }

  /**
   * This server for an observer (src/daemon/observe.ts): its stat, its first `limit` elements in
   * path order, the recent output of its processes (with `tails`), and its events after `after`.
   */
  observe(after: number, limit: number, tails: boolean): ObsSnapshot {
    const elements: ObsElement[] = [];
    const outs: ObsProcTail[] = [];
    for (const [names, el] of this.tree.walk([])) {
      const path = formatPath([this.id, ...names]);
      if (elements.length < limit) elements.push(observeElement(path, el));
      if (tails && outs.length < TAILS_MAX) {
        const t = procTail(path, el);
        if (t) outs.push(t);
      }
      if (elements.length >= limit && (!tails || outs.length >= TAILS_MAX)) break;
    }
    return {
      server: this.serverStat() as Record<string, unknown>,
      at: new Date().toISOString(),
      elements,
      total: this.tree.size,
      tails: outs,
      feed: this.recent.filter((e) => e.seq > after),
    };
  }

  /** A store operation took `seconds` (the hook a store reports its latencies through, for /metrics). */
  noteStoreOp(op: string, seconds: number): void {
    const s = this.storeOps[op] ?? { count: 0, seconds: 0, maxSeconds: 0 };
    s.count++;
    s.seconds += seconds;
    if (seconds > s.maxSeconds) s.maxSeconds = seconds;
    this.storeOps[op] = s;
  }

  /** Numbers for /metrics, computed now (src/http/metrics.ts names them). */
  metricsSample(): MetricsSample {
    const elements: Record<string, number> = {};
    const values: Record<string, { in: number; out: number }> = {};
    for (const [k, v] of this.goneValues) values[k] = { ...v };
    let blocked = 0;
    let channels = 0;
    const procs: MetricsSample["procs"] = [];
    for (const [names, el] of this.tree.walk([])) {
      elements[el.kind] = (elements[el.kind] ?? 0) + 1;
      if (el.kind === "proc") {
        const s = el.proc.stat();
        if (s.phase === "running" || s.phase === "stopped") {
          procs.push({ path: formatPath([this.id, ...names]), cpuPercent: s.cpuPercent, rssBytes: s.rssBytes });
        }
      } else if (el.kind !== "dns" && el.kind !== "svc") {
        channels++;
        const s = el.chan.stat();
        const v = values[el.kind] ?? { in: 0, out: 0 };
        v.in += s.numSend;
        v.out += s.numRecv;
        values[el.kind] = v;
        blocked += s.waitingSenders + s.waitingReceivers;
      }
    }
    let bytesIn = this.goneBytes.in;
    let bytesOut = this.goneBytes.out;
    for (const s of this.sessions) {
      const sock = s.conn.stream as { bytesRead?: number; bytesWritten?: number };
      bytesIn += sock.bytesRead ?? 0;
      bytesOut += sock.bytesWritten ?? 0;
    }
    return {
      connections: this.sessions.size,
      members: this.cluster?.members().length ?? 1,
      elements,
      channels,
      values,
      blocked,
      bytesIn,
      bytesOut,
      procs,
      detector: {
        ...(this.cluster?.membership.detector ?? { suspicions: 0, refutations: 0, deaths: 0, probeFailures: 0 }),
      },
      storeOps: Object.fromEntries(
        Object.entries(this.storeOps).map(([op, s]) => {
          const out = { ...s };
          s.maxSeconds = 0;
          return [op, out];
        }),
      ),
    };
  }

  /** The live servers as this server sees them. */
  servers(): { id: string; url: string; path: string; joinedAt: string; load?: ServerLoad }[] {
    const members = this.cluster?.members() ?? [];
    const out = members.map((m) => {
      const load = m.id === this.id ? this.meter?.current() : loadOf(m.meta);
      return {
        id: m.id,
        url: m.addr,
        path: `/${m.id}`,
        joinedAt: m.id === this.id ? this.startedAt.toISOString() : this.joinedAt(m.joinedAt),
        ...(load ? { load } : {}),
      };
    });
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
    if (el.kind === "svc") {
      this.tree.remove(el.names.slice(1), el);
      this.services.delete(el);
      void el.svc.close().then(done);
      return;
    }
    this.tree.remove(el.names.slice(1), el);
    if (el.kind !== "chan") this.subs.delete(el);
    const st = el.chan.stat();
    const gone = this.goneValues.get(el.kind) ?? { in: 0, out: 0 };
    gone.in += st.numSend;
    gone.out += st.numRecv;
    this.goneValues.set(el.kind, gone);
    const durable = el.kind === "chan" ? el.durable : undefined;
    // A durable channel's data goes with it; the scrub is answered once that is synced.
    const dropped = durable ? this.store?.drop(durable.id) : undefined;
    el.chan.scrub(() => {
      // Once no credit is out, every connection lets go of its handle (DESIGN §3.1).
      for (const s of this.sessions) s.releaseHandle(el);
      if (dropped) {
        dropped.then(done, async (err) => {
          // Gone from the tree, but its data may come back after a restart: said in the log.
          const e = await writeError(this.store?.file ?? "", err);
          this.log.error(
            { event: "store-error", path: formatPath(el.names), reason: e.message },
            `scrub of ${formatPath(el.names)} did not reach the store: ${e.message}`,
          );
          done();
        });
      } else done();
    });
  }

  /** A client asked this server to stop; `by` says who (its address, and its client id if it gave one). */
  requestStop(names: string[], by: { peer: string; client?: string }, done: () => void): void {
    const el = this.element(names);
    if (el?.kind !== "server") throw new WrongKind(`${formatPath(names)} is not a server`);
    this.log.warn({ event: "remote-stop", ...by }, `stop requested by ${by.peer}`);
    done();
    // Let the reply leave before the connections close.
    setImmediate(() => void this.stop());
  }

  /** Leaves the circuit, stops listening, closes every connection, and resolves when done. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.log.info({ event: "stopping" }, "stopping");
        await Promise.all(this.stopHooks.map((f) => f().catch(() => {})));
        clearInterval(this.reaper);
        this.meter?.close();
        // Services under /@ go on without this daemon: another one takes them over.
        await this.sharedSvcs?.close();
        // Services stop their replicas (on any server) while the circuit can still be reached.
        await Promise.all([...this.services].map((el) => el.svc.close()));
        this.services.clear();
        await this.remote?.then((r) => r.close()).catch(() => {});
        // Hosted processes go with their server (TERM, KILL after 2 s); waiters hear the exit first.
        await this.procs.shutdown(2000);
        await Promise.all([...this.nameservers].map((el) => el.ns.close()));
        this.discovery?.close();
        await this.shared?.close();
        const others = (this.cluster?.members().length ?? 1) > 1;
        if (others) await this.cluster?.leave();
        else this.cluster?.close();
        const closed = new Promise<void>((r) => this.server.close(() => r()));
        for (const s of this.sessions) s.shutdown();
        await closed;
        await this.store
          ?.close()
          .catch((err) => this.log.error({ event: "store-error", reason: String(err) }, `closing the store: ${err}`));
        this.dataDir?.release();
        this.resolveStopped();
      })();
    }
    return this.stopping;
  }
}
