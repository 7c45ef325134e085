// An anchor: a place in the circuit's tree. Walking creates nothing and does no I/O.

import { WrongKind } from "../errors.js";
import { formatPath, parsePath } from "../wire/path.js";
import { MAX_CAP } from "../wire/protocol.js";
import { Chan, type OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import { ServerHandle } from "./server-handle.js";

/** What an anchor can hold, as a handle. */
export type Element = Chan | ServerHandle;

/** How an Anchor reaches the server that hosts it. */
export interface Router {
  connFor(serverId: string): Promise<Connection>;
}

export interface ListEntry {
  path: string;
  kind?: string;
  state?: string;
}

export class Anchor {
  /** The names from the root: ["X…", "jobs", "queue"]. */
  readonly names: readonly string[];

  /** @internal */
  constructor(
    private readonly router: Router,
    names: readonly string[],
  ) {
    this.names = names;
  }

  /** The absolute path, e.g. "/X3f9c0a1be2d47780/jobs/queue". */
  get path(): string {
    return formatPath(this.names);
  }

  /** A descendant anchor; no I/O. */
  walk(rel: string | readonly string[]): Anchor {
    const more = typeof rel === "string" ? rel.split("/").filter((s) => s.length > 0) : [...rel];
    return new Anchor(this.router, parsePath([...this.names, ...more]));
  }

  /** The children of this anchor, by name. */
  async view(opts?: OpOptions): Promise<Map<string, Anchor>> {
    const out = new Map<string, Anchor>();
    for (const e of await this.list({ ...opts })) {
      const name = e.path.slice(e.path.lastIndexOf("/") + 1);
      out.set(name, new Anchor(this.router, [...this.names, name]));
    }
    return out;
  }

  /** Lists children (or all descendants with `recursive`), with kind and state with `long`. */
  async list(opts?: OpOptions & { recursive?: boolean; long?: boolean }): Promise<ListEntry[]> {
    const c = await this.conn();
    return (await c.request(
      { op: "ls", path: this.names, recursive: opts?.recursive === true, long: opts?.long === true },
      opts?.signal,
    )) as ListEntry[];
  }

  /** Creates a channel here with the given capacity. Fails with AnchorBusy if the anchor holds an element. */
  async makeChan<T = unknown>(cap: number, opts?: OpOptions): Promise<Chan<T>> {
    if (!Number.isInteger(cap) || cap < 0 || cap > MAX_CAP) {
      throw new RangeError(`channel capacity must be an integer from 0 to ${MAX_CAP}`);
    }
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a channel`);
    const c = await this.conn();
    const r = (await c.request({ op: "mkchan", path: this.names, cap }, opts?.signal)) as {
      handle: number;
      cap: number;
    };
    return new Chan<T>(c, this.path, c.chanState(r.handle, r.cap));
  }

  /** The element held here, or null. */
  async get(opts?: OpOptions): Promise<Element | null> {
    if (this.names.length === 0) return null;
    const c = await this.conn();
    const r = (await c.request({ op: "open", path: this.names }, opts?.signal)) as {
      kind: string;
      handle?: number;
      cap?: number;
    } | null;
    if (!r) return null;
    if (r.kind === "chan") return new Chan(c, this.path, c.chanState(r.handle as number, r.cap as number));
    if (r.kind === "server") return new ServerHandle(c, this.path);
    throw new WrongKind(`${this.path} holds a ${r.kind}, which this client does not know`);
  }

  /** The element's state (a channel's stat, a server's description). */
  async peek(opts?: OpOptions): Promise<unknown> {
    const c = await this.conn();
    return c.request({ op: "peek", path: this.names }, opts?.signal);
  }

  /** Removes the element held here (aborting a channel). Fails with NotFound if there is none. */
  async scrub(opts?: OpOptions): Promise<void> {
    const c = await this.conn();
    await c.request({ op: "scrub", path: this.names }, opts?.signal);
  }

  private conn(): Promise<Connection> {
    return this.router.connFor(this.names[0] ?? "");
  }
}
