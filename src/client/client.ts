// dial and Client: a program's entry into the circuit through one dial-in server.

import { type CircuitError, NotFound, ServerGone } from "../errors.js";
import { discoverServer, parseGroup } from "../transport/discovery.js";
import { loadKey, parseKey } from "../transport/secure.js";
import { parsePath } from "../wire/path.js";
import { Anchor, type Router } from "./anchor.js";
import type { OpOptions } from "./chan.js";
import { Connection } from "./connection.js";

export const DEFAULT_URL = "circuit://127.0.0.1:7711";

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
}

export interface ServerInfo {
  id: string;
  url: string;
  path: string;
  joinedAt: string;
}

/** Splits `circuit://HOST:PORT[/XID]`. Throws TypeError for anything else. */
export function parseUrl(url: string): { host: string; port: number; id?: string } {
  const m = /^circuit:\/\/(?:\[([^\]]+)\]|([^/:[\]]+)):(\d{1,5})(?:\/(X[0-9a-f]{16}))?\/?$/.exec(url.trim());
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new TypeError(
      `bad circuit URL ${JSON.stringify(url)}: expected circuit://HOST:PORT or circuit://HOST:PORT/XID`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port, ...(m[4] ? { id: m[4] } : {}) };
}

/**
 * Connects to a circuit server: by URL, or `{ discover: "GROUP:PORT" }` to take the first server
 * that announces itself there. Fails with ServerGone if nobody answers, Timeout past the deadline,
 * AuthFailed if the keys differ.
 */
export async function dial(
  target: string | { discover: string } = DEFAULT_URL,
  opts: DialOptions = {},
): Promise<Client> {
  const mu = opts.maxUnsentBytes;
  if (mu !== undefined && (!Number.isSafeInteger(mu) || mu < 1)) {
    throw new RangeError(`maxUnsentBytes must be a positive integer, not ${mu}`);
  }
  let url: string;
  if (typeof target === "string") url = target;
  else {
    const key =
      opts.key === undefined ? undefined : typeof opts.key === "string" ? loadKey(opts.key) : parseKey(opts.key);
    url = await discoverServer(parseGroup(target.discover), key, opts.timeoutMs ?? 5000);
  }
  const u = parseUrl(url);
  const key =
    opts.key === undefined ? undefined : typeof opts.key === "string" ? loadKey(opts.key) : parseKey(opts.key);
  const conn = await Connection.open({
    host: u.host,
    port: u.port,
    key,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
    maxUnsentBytes: opts.maxUnsentBytes,
  });
  if (u.id && conn.serverId !== u.id) {
    await conn.close();
    throw new NotFound(`${url} names server ${u.id}, but ${u.host}:${u.port} serves ${conn.serverId}`);
  }
  const client = new Client(conn, opts);
  try {
    await client.init();
  } catch (err) {
    await conn.close();
    throw err;
  }
  return client;
}

export class Client implements Router, AsyncDisposable {
  /** Live servers by ID, as the dial-in server reports them. */
  private readonly view = new Map<string, ServerInfo>();
  /** Connections to other servers, opened on first use. */
  private readonly conns = new Map<string, Promise<Connection>>();
  private readonly timeoutMs: number | undefined;
  private readonly maxUnsentBytes: number | undefined;
  private readonly key: Buffer | undefined;
  private closing = false;

  /** @internal */
  constructor(
    private readonly home: Connection,
    opts: DialOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs;
    this.maxUnsentBytes = opts.maxUnsentBytes;
    this.key =
      opts.key === undefined ? undefined : typeof opts.key === "string" ? loadKey(opts.key) : parseKey(opts.key);
    home.onPush = (m) => this.onPush(m);
    // Without the dial-in server there is no membership view: nothing may wait on the others.
    void home.closed.then((err) => {
      for (const p of this.conns.values())
        void p.then(
          (c) => c.fail(err ?? new ServerGone("client closed")),
          () => {},
        );
    });
  }

  /** @internal Starts the membership watch; the view then follows the pushes. */
  async init(): Promise<void> {
    const list = (await this.home.request({ op: "watch" })) as ServerInfo[];
    for (const s of list) this.view.set(s.id, s);
  }

  /** The dial-in server's ID. */
  get serverId(): string {
    return this.home.serverId;
  }

  /** The dial-in server's URL. */
  get url(): string {
    return this.home.url;
  }

  /** Settles when the connection to the dial-in server is gone: with ServerGone, or undefined after close(). */
  get closed(): Promise<ServerGone | CircuitError | undefined> {
    return this.home.closed;
  }

  /** The live servers of the circuit. */
  async servers(opts?: OpOptions): Promise<ServerInfo[]> {
    return (await this.home.request({ op: "servers" }, opts?.signal)) as ServerInfo[];
  }

  /** The anchor at an absolute path ("/X…/a/b" or ["X…", "a", "b"]); no I/O. */
  walk(path: string | readonly string[]): Anchor {
    return new Anchor(this, parsePath(path));
  }

  /** @internal The connection to the server that hosts `serverId`'s anchors. */
  connFor(serverId: string): Promise<Connection> {
    if (serverId === "" || serverId === this.home.serverId) return Promise.resolve(this.home);
    if (this.home.isClosed) return Promise.reject(new ServerGone("the dial-in server is gone"));
    let p = this.conns.get(serverId);
    if (!p) {
      const info = this.view.get(serverId);
      if (!info) return Promise.reject(new NotFound(`no server ${serverId} in this circuit`));
      const u = parseUrl(info.url);
      const o = { host: u.host, port: u.port, key: this.key, timeoutMs: this.timeoutMs };
      p = Connection.open({ ...o, maxUnsentBytes: this.maxUnsentBytes }).then(async (c) => {
        if (c.serverId !== serverId) {
          await c.close();
          throw new ServerGone(`${info.url} now serves ${c.serverId}, not ${serverId}`);
        }
        if (this.closing || !this.view.has(serverId)) c.fail(new ServerGone(`server ${serverId} left the circuit`));
        void c.closed.then(() => {
          if (this.conns.get(serverId) === p) this.conns.delete(serverId);
        });
        return c;
      });
      p.catch(() => {
        if (this.conns.get(serverId) === p) this.conns.delete(serverId);
      });
      this.conns.set(serverId, p);
    }
    return p;
  }

  private onPush(m: Record<string, unknown>): void {
    const id = m.id as string;
    if (m.ev === "join") {
      this.view.set(id, { id, url: m.url as string, path: `/${id}`, joinedAt: m.joinedAt as string });
    } else if (m.ev === "leave") {
      this.view.delete(id);
      // Everything waiting on that server fails now, not when TCP notices (a silent host never would).
      void this.conns.get(id)?.then(
        (c) => c.fail(new ServerGone(`server ${id} left the circuit`)),
        () => {},
      );
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
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
