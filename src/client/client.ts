// dial and Client: a program's entry into the circuit through one dial-in server.

import { EventEmitter, on } from "node:events";
import { AuthFailed, type CircuitError, NotFound, ServerGone } from "../errors.js";
import { parseGroup } from "../transport/group.js";
import { loadKey, parseKey } from "../transport/secure.js";
import { monotonicMs } from "../util/clock.js";
import { parsePath } from "../wire/path.js";
import { checkLimits } from "../wire/proc-limits.js";
import { DEFAULT_URL, parseUrl } from "../wire/url.js";
import { Anchor } from "./anchor.js";
import type { OpOptions } from "./chan.js";
import { Connection, type ConnectOptions, MAX_RECONNECT_MS } from "./connection.js";

export { DEFAULT_URL, parseUrl } from "../wire/url.js";

/** How long a client whose dial-in server died keeps trying the other members. */
const FAILOVER_MS = 10_000;

export interface DialOptions {
  /**
   * Cluster key (64 hex digits, the bytes, or a file holding it): every connection is then TLS with
   * this pre-shared key. A server with another key (or none) fails dial with AuthFailed.
   */
  key?: string | Uint8Array;
  signal?: AbortSignal;
  /** Connect and handshake deadline in ms (default 10,000); past it dial fails with Timeout. */
  timeoutMs?: number;
  /**
   * Most bytes of values each connection holds before the operating system has accepted them
   * (default 4 MiB); past it, sends wait, as a Go send into a full buffer would.
   */
  maxUnsentBytes?: number;
  /**
   * Ride through a restart of a server: a broken connection keeps trying to reach the same server
   * (the same server ID, as a daemon restarted on its `--data` and address has) for this many ms,
   * refused connections included, before its operations fail with ServerGone. Unacknowledged sends
   * are sent again and stored once; receivers resume. Default: about 5 s, and a refused connection
   * gives up at once. At most MAX_RECONNECT_MS (10 minutes).
   */
  reconnectMs?: number;
}

export interface ServerInfo {
  id: string;
  url: string;
  path: string;
  joinedAt: string;
  /**
   * The server's load as it last gossiped it (the dial-in server's own: as of now): host cores,
   * busy cores, free memory, and what its own processes use and reserve. Absent until the
   * server's first publication has arrived.
   */
  load?: {
    cores: number;
    busy: number;
    memFree: number;
    memTotal: number;
    procs: number;
    ownCpu: number;
    ownMem: number;
    resCpu: number;
    resMem: number;
    seq: number;
  };
}

/** A list of circuit URLs: an array, or one string with URLs separated by commas. */
export function parseUrlList(target: string | readonly string[]): string[] {
  const list = (typeof target === "string" ? target.split(",") : [...target]).map((u) => u.trim()).filter(Boolean);
  if (list.length === 0) throw new TypeError("no circuit URL given");
  for (const u of list) parseUrl(u);
  return list;
}

/** Opens a connection to the server at `url`, checking the server ID when the URL names one. */
async function connectUrl(url: string, o: Omit<ConnectOptions, "host" | "port">): Promise<Connection> {
  const u = parseUrl(url);
  const conn = await Connection.open({ ...o, host: u.host, port: u.port });
  if (u.id && conn.serverId !== u.id) {
    await conn.close();
    throw new NotFound(`${url} names server ${u.id}, but ${u.host}:${u.port} serves ${conn.serverId}`);
  }
  return conn;
}

/**
 * Finds a server by multicast discovery. Loaded only here: the discovery code brings node:dgram,
 * which a client dialling a URL (every command of the CLI) has no use for.
 */
async function discover(group: string, key: Buffer | undefined, timeoutMs: number): Promise<string> {
  const g = parseGroup(group);
  const { discoverServer } = await import("../transport/discovery.js");
  return discoverServer(g, key, timeoutMs);
}

/**
 * Connects to a circuit: by URL, by a list of URLs (an array, or one string with commas; the
 * first that answers is the dial-in server), or `{ discover: "GROUP:PORT" }` to take the first
 * server that announces itself there. Fails with ServerGone if nobody answers, Timeout past the
 * deadline, AuthFailed if the keys differ. The client then follows the circuit's membership and,
 * should its dial-in server die, moves to another live member (Client "failover" event).
 */
export async function dial(
  target: string | readonly string[] | { discover: string } = DEFAULT_URL,
  opts: DialOptions = {},
): Promise<Client> {
  const mu = opts.maxUnsentBytes;
  if (mu !== undefined && (!Number.isSafeInteger(mu) || mu < 1)) {
    throw new RangeError(`maxUnsentBytes must be a positive integer, not ${mu}`);
  }
  const rm = opts.reconnectMs;
  if (rm !== undefined && (!Number.isSafeInteger(rm) || rm < 0 || rm > MAX_RECONNECT_MS)) {
    throw new RangeError(`reconnectMs must be an integer from 0 to ${MAX_RECONNECT_MS}, not ${rm}`);
  }
  const key =
    opts.key === undefined ? undefined : typeof opts.key === "string" ? loadKey(opts.key) : parseKey(opts.key);
  const urls =
    typeof target === "string" || Array.isArray(target)
      ? parseUrlList(target as string | string[])
      : [await discover((target as { discover: string }).discover, key, opts.timeoutMs ?? 5000)];
  const o = {
    key,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
    maxUnsentBytes: opts.maxUnsentBytes,
    reconnectMs: opts.reconnectMs,
  };
  let last: unknown;
  for (const url of urls) {
    let conn: Connection;
    try {
      conn = await connectUrl(url, o);
    } catch (err) {
      // A refused key or an abort is an answer, not an absence: the next URL would say the same.
      if (err instanceof AuthFailed || opts.signal?.aborted) throw err;
      last = err;
      continue;
    }
    const client = new Client(conn, opts, key);
    try {
      await client.init();
    } catch (err) {
      await conn.close();
      last = err;
      continue;
    }
    return client;
  }
  throw last;
}

/** The dial-in server changed: the one dialled died and the client moved to another member. */
export interface FailoverEvent {
  /** The server ID of the dial-in server that was lost. */
  from: string;
  /** The server ID the client moved to. */
  to: string;
  /** Why the old one was given up (its ServerGone). */
  reason: CircuitError | undefined;
}

/**
 * A program's handle on a circuit. It emits "failover" (a FailoverEvent) when its dial-in server
 * dies and it moves to another live member; `failovers()` iterates the same events.
 */
export class Client extends EventEmitter implements AsyncDisposable {
  /** Live servers by ID, as the dial-in server reports them. */
  private readonly view = new Map<string, ServerInfo>();
  /** Connections to other servers, opened on first use. */
  private readonly conns = new Map<string, Promise<Connection>>();
  /** Settles when the client has no server left (ServerGone) or was closed (undefined). */
  readonly closed: Promise<ServerGone | CircuitError | undefined>;
  private resolveClosed!: (e: ServerGone | CircuitError | undefined) => void;
  /** Set while the client moves to another dial-in server. */
  private moving: Promise<void> | undefined;
  private readonly timeoutMs: number | undefined;
  private readonly maxUnsentBytes: number | undefined;
  private readonly reconnectMs: number | undefined;
  private closing = false;

  /** @internal `key` is the one dial read from `opts.key` (a file is read once per dial). */
  constructor(
    private home: Connection,
    opts: DialOptions,
    private readonly key: Buffer | undefined,
  ) {
    super();
    this.closed = new Promise((r) => {
      this.resolveClosed = r;
    });
    this.timeoutMs = opts.timeoutMs;
    this.maxUnsentBytes = opts.maxUnsentBytes;
    this.reconnectMs = opts.reconnectMs;
  }

  /** @internal Starts the membership watch; the view then follows the pushes. */
  async init(): Promise<void> {
    await this.adopt(this.home);
  }

  /** Makes `c` the dial-in connection: its membership view replaces ours, and its loss moves us on. */
  private async adopt(c: Connection): Promise<void> {
    // Pushes can be read in the same chunk as the answer, before this function resumes: they are
    // newer than the list, so they are kept and applied after it (else the list would undo them).
    let early: Record<string, unknown>[] | undefined = [];
    c.onPush = (m) => {
      if (this.home !== c) return;
      if (early) early.push(m);
      else this.onPush(m);
    };
    let list: ServerInfo[];
    try {
      list = (await c.request({ op: "watch" })) as ServerInfo[];
    } catch (err) {
      early = undefined;
      throw err;
    }
    const kept = early;
    early = undefined;
    const before = new Map(this.view);
    this.view.clear();
    for (const s of list) this.view.set(s.id, s);
    // A server we talk to that the new dial-in server does not list may not have reached it yet
    // (membership spreads by gossip; a failover can come right after a join): its connection
    // stays, with what we knew of it, and its own keepalive says if it is gone. One we never knew
    // is gone.
    for (const id of this.conns.keys()) {
      if (this.view.has(id)) continue;
      const known = before.get(id);
      if (known) this.view.set(id, known);
      else this.failConn(id, new ServerGone(`server ${id} left the circuit`));
    }
    // Pushes newer than the list (a leave among them fails that server's connection).
    for (const m of kept) this.onPush(m);
    void c.closed.then((err) => {
      if (this.home !== c) return;
      this.moving = this.failover(c, err).finally(() => {
        this.moving = undefined;
      });
    });
  }

  /**
   * The dial-in server is gone: move to another live member (those we already talk to first),
   * within the failure-detection bound. Operations on elements of the dead server fail with
   * ServerGone (their connection was that one); everything on other servers carries on.
   */
  private async failover(dead: Connection, reason: CircuitError | undefined): Promise<void> {
    if (this.closing) return this.resolveClosed(undefined);
    this.view.delete(dead.serverId);
    const deadline = monotonicMs() + FAILOVER_MS;
    while (!this.closing && monotonicMs() < deadline) {
      const candidates = [...this.view.values()].sort(
        (a, b) => Number(this.conns.has(b.id)) - Number(this.conns.has(a.id)),
      );
      for (const s of candidates) {
        if (this.closing) break;
        try {
          const c = await this.connFor(s.id);
          if (c.isClosed) continue;
          this.conns.delete(s.id);
          this.home = c;
          await this.adopt(c);
          const ev: FailoverEvent = { from: dead.serverId, to: c.serverId, reason };
          this.emit("failover", ev);
          return;
        } catch {
          this.view.delete(s.id);
        }
      }
      if (this.view.size === 0) break;
    }
    // Nobody left to move to: everything still waiting fails.
    const err = new ServerGone(`lost the dial-in server ${dead.serverId} and found no other live member`);
    for (const id of [...this.conns.keys()]) this.failConn(id, err);
    this.resolveClosed(this.closing ? undefined : (reason ?? err));
  }

  private failConn(id: string, err: CircuitError): void {
    void this.conns.get(id)?.then(
      (c) => c.fail(err),
      () => {},
    );
  }

  /** The dial-in server's ID (it changes when the client fails over to another member). */
  get serverId(): string {
    return this.home.serverId;
  }

  /** The dial-in server's URL. */
  get url(): string {
    return this.home.url;
  }

  /** The moves from a lost dial-in server to another member, as they happen (until close). */
  async *failovers(opts?: OpOptions): AsyncGenerator<FailoverEvent> {
    const ac = new AbortController();
    const stop = () => ac.abort();
    void this.closed.then(stop);
    opts?.signal?.addEventListener("abort", stop, { once: true });
    try {
      for await (const [ev] of on(this, "failover", { signal: ac.signal })) yield ev as FailoverEvent;
    } catch (err) {
      if ((err as Error).name !== "AbortError") throw err;
    } finally {
      opts?.signal?.removeEventListener("abort", stop);
    }
  }

  /** The live servers of the circuit. */
  async servers(opts?: OpOptions): Promise<ServerInfo[]> {
    const home = await this.connFor("");
    return (await home.request({ op: "servers" }, opts?.signal)) as ServerInfo[];
  }

  /**
   * The server a new process asking for `req` should go to ("/X…"): the live server with the most
   * free capacity that fits, as the dial-in server sees the loads every server gossips (no server
   * is asked). Each answer counts against its server for a moment, so a burst of placements
   * spreads. NoCapacity when no server fits; RangeError for a bad request, before any I/O.
   */
  async place(req: { cpus?: number; memoryBytes?: number } = {}, opts?: OpOptions): Promise<string> {
    checkLimits({ cpus: req.cpus, memoryBytes: req.memoryBytes });
    const home = await this.connFor("");
    return (await home.request(
      { op: "place", req: { cpus: req.cpus, memoryBytes: req.memoryBytes } },
      opts?.signal,
    )) as string;
  }

  /** The anchor at an absolute path ("/X…/a/b" or ["X…", "a", "b"]); no I/O. */
  walk(path: string | readonly string[]): Anchor {
    return new Anchor(this, parsePath(path));
  }

  /** @internal The connection to the server that hosts `serverId`'s anchors. */
  connFor(serverId: string): Promise<Connection> {
    // Requests for the circuit as a whole wait for a move in progress and go to the new server.
    if (serverId === "" && this.moving) return this.moving.then(() => this.home);
    if (serverId === "" || serverId === this.home.serverId) return Promise.resolve(this.home);
    let p = this.conns.get(serverId);
    if (!p) {
      const info = this.view.get(serverId);
      if (!info) return Promise.reject(new NotFound(`no server ${serverId} in this circuit`));
      const u = parseUrl(info.url);
      const o = { host: u.host, port: u.port, key: this.key, timeoutMs: this.timeoutMs };
      p = Connection.open({ ...o, maxUnsentBytes: this.maxUnsentBytes, reconnectMs: this.reconnectMs }).then(
        async (c) => {
          if (c.serverId !== serverId) {
            await c.close();
            throw new ServerGone(`${info.url} now serves ${c.serverId}, not ${serverId}`);
          }
          if (this.closing || !this.view.has(serverId)) c.fail(new ServerGone(`server ${serverId} left the circuit`));
          void c.closed.then(() => {
            if (this.conns.get(serverId) === p) this.conns.delete(serverId);
          });
          return c;
        },
      );
      p.catch(() => {
        if (this.conns.get(serverId) === p) this.conns.delete(serverId);
      });
      this.conns.set(serverId, p);
    }
    return p;
  }

  /**
   * @internal Adds the members the dial-in server knows and our view lacks (a push can be missed,
   * say when a member declared dead comes back). For a caller told of a server it cannot find.
   */
  async learnServers(): Promise<void> {
    const list = (await (await this.connFor("")).request({ op: "servers" })) as ServerInfo[];
    for (const s of list) if (!this.view.has(s.id)) this.view.set(s.id, s);
  }

  private onPush(m: Record<string, unknown>): void {
    const id = m.id as string;
    if (m.ev === "join") {
      this.view.set(id, { id, url: m.url as string, path: `/${id}`, joinedAt: m.joinedAt as string });
    } else if (m.ev === "leave") {
      this.view.delete(id);
      // Everything waiting on that server fails now, not when TCP notices (a silent host never would).
      this.failConn(id, new ServerGone(`server ${id} left the circuit`));
    }
  }

  /** Closes every connection; operations still waiting fail with ServerGone. */
  async close(): Promise<void> {
    this.closing = true;
    const others = [...this.conns.values()];
    await Promise.all(
      others.map((p) =>
        p.then(
          (c) => c.close(),
          () => {},
        ),
      ),
    );
    await this.home.close();
    this.resolveClosed(undefined);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
