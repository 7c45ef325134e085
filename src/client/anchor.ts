// An anchor: a place in the circuit's tree. Walking creates nothing and does no I/O.

import type { Readable } from "node:stream";
import { NotFound, WrongKind } from "../errors.js";
import { formatPath, parsePath } from "../wire/path.js";
import { MAX_CAP, MAX_DURABLE_CAP } from "../wire/protocol.js";
import type { MakeProcRequest } from "../wire/requests.js";
import { Chan, type OpOptions } from "./chan.js";

export interface MakeChanOptions extends OpOptions {
  /** Keep the buffer on the hosting server's disk (DESIGN §3.6): needs a server with `--data`. */
  durable?: boolean;
  /**
   * A replicated channel (only under /@, DESIGN §12): its buffer is a JetStream stream kept on this
   * many NATS nodes (1, 3 or 5). It outlives the daemon that hosts it.
   */
  replicas?: 1 | 3 | 5;
}

import type { Connection } from "./connection.js";
import { checkNameserverAddr, Nameserver } from "./nameserver.js";
import { checkCommand, type MakeProcOptions, Proc, type ProcCommand } from "./proc.js";
import { ReplicatedChan } from "./replicated-chan.js";
import type { Router } from "./router.js";
import { ServerHandle } from "./server-handle.js";
import { checkSpec, direct, Service, type ServiceSpec, viaStore } from "./service.js";
import { Subscription } from "./subscription.js";

/** What an anchor can hold, as a handle. */
export type Element = Chan | ReplicatedChan | ServerHandle | Subscription | Proc | Nameserver | Service;

export type { Router } from "./router.js";

/** One line of a listing. `kind`, `state` and `stat` are there for anchors that hold an element. */
export interface ListEntry {
  path: string;
  /** "chan", "proc", "dns", "svc", "@join", "@leave" or "server". */
  kind?: string;
  /** With `long`: a short state for people, e.g. "cap=3 len=1" or "pid=4242 running". */
  state?: string;
  /**
   * With `long`: the state as an object — a channel's `{ cap, len, closed, … }`, a process's
   * `{ pid, phase, exitCode, signal }`, a nameserver's `{ address, records }` (a count), a
   * subscription's `{ source, pending, lost }`, a service's `{ state, desired, replicas }` (a
   * count), a server's `{ url }`.
   */
  stat?: Record<string, unknown>;
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

  /**
   * Lists children (or all descendants with `recursive`), with kind and state with `long`. From the
   * root, a recursive listing asks every live server for its own tree; a server that dies meanwhile
   * is skipped, not fatal.
   */
  async list(opts?: OpOptions & { recursive?: boolean; long?: boolean }): Promise<ListEntry[]> {
    const req = { op: "ls" as const, recursive: opts?.recursive === true, long: opts?.long === true };
    if (this.names.length === 0 && opts?.recursive) {
      const c = await this.conn();
      const top = (await c.request({ ...req, path: [], recursive: false }, opts?.signal)) as ListEntry[];
      const out: ListEntry[] = [];
      for (const e of top) {
        out.push(e);
        const id = e.path.slice(1);
        try {
          const sc = await this.router.connFor(id === "@" ? "" : id);
          out.push(...((await sc.request({ ...req, path: [id] }, opts?.signal)) as ListEntry[]));
        } catch (err) {
          if ((err as { code?: string }).code !== "ServerGone" && (err as { code?: string }).code !== "NotFound") {
            throw err;
          }
        }
      }
      return out;
    }
    const c = await this.conn();
    return (await c.request({ ...req, path: this.names }, opts?.signal)) as ListEntry[];
  }

  /**
   * Creates a channel here with the given capacity. Fails with AnchorBusy if the anchor holds an
   * element. With `durable: true` (DESIGN §3.6) its buffer lives in the hosting server's store:
   * `cap` from 1 to 2^31−1, a send completes once its value is synced to disk, and the channel
   * with its backlog survives a crash of the server; a server started without `--data` answers
   * Unsupported and creates nothing. Under /@ (DESIGN §12) the channel is replicated (`replicas`,
   * default 1) and fails with Unsupported when the circuit has no store.
   */
  makeChan<T = unknown>(cap: number, opts: MakeChanOptions & { replicas: 1 | 3 | 5 }): Promise<ReplicatedChan<T>>;
  makeChan<T = unknown>(cap: number, opts?: MakeChanOptions): Promise<Chan<T>>;
  async makeChan<T = unknown>(cap: number, opts?: MakeChanOptions): Promise<Chan<T> | ReplicatedChan<T>> {
    if (this.names[0] === "@" || opts?.replicas !== undefined) return this.makeReplicated<T>(cap, opts);
    return this.chanOp<T>("mkchan", cap, opts);
  }

  /**
   * The channel held here, or a new one with capacity `cap` (and `durable`) if the anchor is
   * empty, in one atomic step on the hosting server: a producer and a consumer that both open the
   * same anchor, in either order or at the same moment, get the same channel. A channel that is
   * already there keeps its own capacity (see `cap` of the result). WrongKind if the anchor holds
   * another kind of element.
   */
  openChan<T = unknown>(cap: number, opts: MakeChanOptions & { replicas: 1 | 3 | 5 }): Promise<ReplicatedChan<T>>;
  openChan<T = unknown>(cap: number, opts?: MakeChanOptions): Promise<Chan<T>>;
  async openChan<T = unknown>(cap: number, opts?: MakeChanOptions): Promise<Chan<T> | ReplicatedChan<T>> {
    if (this.names[0] === "@" || opts?.replicas !== undefined) return this.makeReplicated<T>(cap, opts, "openchan");
    return this.chanOp<T>("openchan", cap, opts);
  }

  private async makeReplicated<T>(
    cap: number,
    opts?: MakeChanOptions,
    op: "mkchan" | "openchan" = "mkchan",
  ): Promise<ReplicatedChan<T>> {
    if (!Number.isInteger(cap) || cap < 0 || cap > MAX_CAP) {
      throw new RangeError(`channel capacity must be an integer from 0 to ${MAX_CAP}`);
    }
    const replicas = opts?.replicas;
    if (replicas !== undefined && replicas !== 1 && replicas !== 3 && replicas !== 5) {
      throw new RangeError("replicas is 1, 3 or 5");
    }
    if (opts?.durable) throw new TypeError("a channel is durable (on one server) or replicated (under /@), not both");
    if (this.names[0] !== "@") throw new TypeError(`a replicated channel lives under /@, not at ${this.path}`);
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a channel`);
    const c = await this.conn();
    const req = { op, path: this.names, cap, replicas: replicas ?? 1 };
    const r = (await c.request(req, opts?.signal)) as { cap: number; replicas: number };
    return new ReplicatedChan<T>(this.router, (v) => c.encodeValue(v), this.path, this.names, r.cap, r.replicas);
  }

  private async chanOp<T>(op: "mkchan" | "openchan", cap: number, opts?: MakeChanOptions): Promise<Chan<T>> {
    if (opts?.durable !== undefined && typeof opts.durable !== "boolean")
      throw new TypeError("durable must be a boolean");
    const durable = opts?.durable === true;
    const max = durable ? MAX_DURABLE_CAP : MAX_CAP;
    if (!Number.isInteger(cap) || cap < 0 || cap > max) {
      throw new RangeError(`${durable ? "a durable " : ""}channel capacity must be an integer from 0 to ${max}`);
    }
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a channel`);
    const c = await this.conn();
    const req = { op, path: this.names, cap, ...(durable ? { durable: true } : {}) };
    const r = (await c.request(req, opts?.signal)) as { handle: number; cap: number; durable?: boolean };
    return new Chan<T>(c, this.path, c.chanState(r.handle, r.cap, this.names, r.durable === true));
  }

  /** Creates a subscription to servers joining the circuit; it starts with every live server. */
  makeOnJoin(opts?: OpOptions): Promise<Subscription> {
    return this.makeSub("@join", opts);
  }

  /** Creates a subscription to servers leaving the circuit (gracefully or by dying). */
  makeOnLeave(opts?: OpOptions): Promise<Subscription> {
    return this.makeSub("@leave", opts);
  }

  /**
   * Starts a process on the server that hosts this anchor. Fails with SpawnFailed (leaving the
   * anchor empty) if it cannot start, AnchorBusy if the anchor holds an element; TypeError for a
   * malformed command, before any I/O. `{ stdout: true }` captures stdout from its first byte.
   */
  async makeProc(cmd: ProcCommand, opts?: MakeProcOptions): Promise<Proc> {
    checkCommand(cmd);
    const tied = opts?.tiedTo;
    if (tied !== undefined && (typeof tied !== "string" || !/^\/X[0-9a-f]{16}$/.test(tied)))
      throw new TypeError('tiedTo must be a server path, "/X" and 16 hex digits');
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a process`);
    const c = await this.conn();
    const attached: { stdout?: Readable; stderr?: Readable } = {};
    const expect = (fd: "stdout" | "stderr") =>
      opts?.[fd]
        ? c.expectStream({
            val: () => {},
            stream: (r) => {
              attached[fd] = r;
            },
            end: () => {},
          })
        : undefined;
    const rid1 = expect("stdout");
    const rid2 = expect("stderr");
    let r: { eid: number; pid: number };
    try {
      const req: MakeProcRequest = {
        op: "mkproc",
        path: this.names,
        cmd,
        ...(rid1 ? { rid1 } : {}),
        ...(rid2 ? { rid2 } : {}),
        ...(tied ? { tied: tied.slice(1) } : {}),
      };
      r = (await c.request(req, opts?.signal)) as typeof r;
    } catch (err) {
      for (const rid of [rid1, rid2]) if (rid !== undefined) c.closeRecv(rid, 0);
      throw err;
    }
    return new Proc(c, this.path, this.names, r.eid, r.pid, attached);
  }

  /**
   * Starts a service here (DESIGN.md §3.7): the server hosting this anchor keeps `spec.replicas`
   * copies of `spec.cmd` running across the circuit, each a proc element at this path under the
   * server that runs it plus r<n>, placed by load, restarted by the policy, scaled by hand or by
   * its metric. AnchorBusy if the anchor holds an element; TypeError/RangeError for a bad spec,
   * before any I/O. Under /@ (DESIGN §12) the service is kept in the circuit's store and
   * supervised by whichever daemon holds its lease: its replicas run at /SERVER/@/PATH/r<n>, and
   * when that daemon dies another one adopts them and supervises on. Unsupported without a store.
   */
  async makeService(spec: ServiceSpec, opts?: OpOptions): Promise<Service> {
    checkSpec(spec);
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a service`);
    const c = await this.conn();
    await c.request({ op: "mksvc", path: this.names, spec }, opts?.signal);
    return this.service(c);
  }

  /**
   * Starts a nameserver (a DNS server, UDP and TCP on one port) on the server that hosts this
   * anchor, listening on `addr` ("HOST:PORT"; default 127.0.0.1 and a free port). A non-loopback
   * address needs a keyed daemon or one started with --insecure (else AccessDenied); a taken port
   * fails with the code AddressInUse. TypeError for a malformed address, before any I/O.
   */
  async makeNameserver(addr?: string, opts?: OpOptions): Promise<Nameserver> {
    if (addr !== undefined) checkNameserverAddr(addr);
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a nameserver`);
    const c = await this.conn();
    const r = (await c.request({ op: "mkdns", path: this.names, addr }, opts?.signal)) as {
      eid: number;
      address: string;
    };
    return new Nameserver(c, this.path, this.names, r.eid, r.address);
  }

  private async makeSub(kind: "@join" | "@leave", opts?: OpOptions): Promise<Subscription> {
    if (this.names.length < 2) throw new WrongKind(`${this.path} cannot hold a subscription`);
    const c = await this.conn();
    const r = (await c.request({ op: "mksub", path: this.names, kind }, opts?.signal)) as {
      handle: number;
      cap: number;
    };
    return new Subscription(kind, c, new Chan<string>(c, this.path, c.chanState(r.handle, r.cap, this.names)));
  }

  /**
   * The element held here, or null. The typed getters below (`getChan`, `getProc`, …) say what they
   * expect and fail with NotFound or WrongKind instead, so that their result needs no narrowing.
   */
  async get(opts?: OpOptions): Promise<Element | null> {
    if (this.names.length === 0) return null;
    const c = await this.conn();
    const r = (await c.request({ op: "open", path: this.names }, opts?.signal)) as {
      kind: string;
      handle?: number;
      cap?: number;
      eid?: number;
      pid?: number;
      address?: string;
      durable?: boolean;
    } | null;
    if (!r) return null;
    if (this.names[0] === "@" && r.kind === "chan") {
      const x = r as unknown as { cap: number; replicas: number };
      return new ReplicatedChan(this.router, (v) => c.encodeValue(v), this.path, this.names, x.cap, x.replicas);
    }
    if (r.kind === "chan") {
      return new Chan(c, this.path, c.chanState(r.handle as number, r.cap as number, this.names, r.durable === true));
    }
    if (r.kind === "server") return new ServerHandle(c, this.path);
    if (r.kind === "proc") return new Proc(c, this.path, this.names, r.eid as number, r.pid as number);
    if (r.kind === "svc") return this.service(c);
    if (r.kind === "dns") return new Nameserver(c, this.path, this.names, r.eid as number, r.address as string);
    if (r.kind === "@join" || r.kind === "@leave") {
      return new Subscription(
        r.kind,
        c,
        new Chan<string>(c, this.path, c.chanState(r.handle as number, r.cap as number, this.names)),
      );
    }
    throw new WrongKind(`${this.path} holds a ${r.kind}, which this client does not know`);
  }

  /** The channel held here. NotFound if the anchor is empty, WrongKind if it holds something else. */
  async getChan<T = unknown>(opts?: OpOptions): Promise<Chan<T>> {
    return (await this.getKind("chan", "a channel", opts)) as Chan<T>;
  }

  /** The process held here. NotFound if the anchor is empty, WrongKind if it holds something else. */
  getProc(opts?: OpOptions): Promise<Proc> {
    return this.getKind("proc", "a process", opts) as Promise<Proc>;
  }

  /** The server at this path (`/XID`). NotFound if no such server is live, WrongKind below a server. */
  getServer(opts?: OpOptions): Promise<ServerHandle> {
    return this.getKind("server", "a server", opts) as Promise<ServerHandle>;
  }

  /** The nameserver held here. NotFound if the anchor is empty, WrongKind if it holds something else. */
  getNameserver(opts?: OpOptions): Promise<Nameserver> {
    return this.getKind("dns", "a nameserver", opts) as Promise<Nameserver>;
  }

  /** The @join or @leave subscription held here. NotFound if empty, WrongKind if it holds something else. */
  getSubscription(opts?: OpOptions): Promise<Subscription> {
    return this.getKind("sub", "a subscription", opts) as Promise<Subscription>;
  }

  /** The service held here. NotFound if the anchor is empty, WrongKind if it holds something else. */
  getService(opts?: OpOptions): Promise<Service> {
    return this.getKind("svc", "a service", opts) as Promise<Service>;
  }

  private async getKind(kind: string, what: string, opts?: OpOptions): Promise<Element> {
    const el = await this.get(opts);
    if (!el) throw new NotFound(`${this.path} holds nothing (expected ${what})`);
    const k = el.kind === "@join" || el.kind === "@leave" ? "sub" : el.kind;
    if (k !== kind) throw new WrongKind(`${this.path} holds a ${el.kind}, not ${what}`);
    return el;
  }

  /** The element's state (a channel's stat, a server's description). */
  async peek(opts?: OpOptions): Promise<unknown> {
    if (this.names[0] === "@") {
      const el = await this.replicated(opts);
      return el instanceof Service ? el.peek(opts) : el.stat(opts);
    }
    const c = await this.conn();
    return c.request({ op: "peek", path: this.names }, opts?.signal);
  }

  /** Removes the element held here (aborting a channel). Fails with NotFound if there is none. */
  async scrub(opts?: OpOptions): Promise<void> {
    if (this.names[0] === "@") return this.replicated(opts).then((ch) => ch.scrub(opts));
    const c = await this.conn();
    await c.request({ op: "scrub", path: this.names }, opts?.signal);
  }

  private async replicated(opts?: OpOptions): Promise<ReplicatedChan | Service> {
    const el = await this.get(opts);
    if (!el) throw new NotFound(`${this.path} holds no element`);
    if (!(el instanceof ReplicatedChan) && !(el instanceof Service))
      throw new WrongKind(`${this.path} holds a ${el.kind}`);
    return el;
  }

  /** A handle on the service here: under /@ its requests follow the supervisor wherever it is. */
  private service(c: Connection): Service {
    return new Service(this.names[0] === "@" ? viaStore(this.router) : direct(c), this.path, this.names);
  }

  private conn(): Promise<Connection> {
    // Circuit-wide anchors are reached through the dial-in server, which knows their hosts.
    const first = this.names[0] ?? "";
    return this.router.connFor(first === "@" ? "" : first);
  }
}
