// dial and Client: a program's entry into the circuit through one dial-in server.

import { CircuitError, type ServerGone } from "../errors.js";
import { parsePath } from "../wire/path.js";
import { Anchor, type Router } from "./anchor.js";
import type { OpOptions } from "./chan.js";
import { Connection } from "./connection.js";

export const DEFAULT_URL = "circuit://127.0.0.1:7711";

export interface DialOptions {
  /** Cluster key (not yet supported by this build). */
  key?: string | Uint8Array;
  signal?: AbortSignal;
  /** Connect and handshake deadline in ms (default 10,000); past it dial fails with Timeout. */
  timeoutMs?: number;
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

/** Connects to a circuit server. Fails with ServerGone if nobody answers, Timeout past the deadline. */
export async function dial(url: string = DEFAULT_URL, opts: DialOptions = {}): Promise<Client> {
  const u = parseUrl(url);
  if (opts.key !== undefined) {
    throw new CircuitError("Unsupported", "cluster keys are not supported by this build yet");
  }
  const conn = await Connection.open({ host: u.host, port: u.port, signal: opts.signal, timeoutMs: opts.timeoutMs });
  if (u.id && conn.serverId !== u.id) {
    await conn.close();
    throw new TypeError(`${url} names server ${u.id}, but ${u.host}:${u.port} is ${conn.serverId}`);
  }
  return new Client(conn);
}

export class Client implements Router, AsyncDisposable {
  /** @internal */
  constructor(private readonly home: Connection) {}

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

  /** @internal */
  async connFor(_serverId: string): Promise<Connection> {
    return this.home;
  }

  /** Closes the connection; operations still waiting fail with ServerGone. */
  close(): Promise<void> {
    return this.home.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
