import { ChannelAborted, CircuitError, NotFound, ProtocolError, toWire, WrongKind } from "../errors.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { peerAddress } from "../transport/secure.js";
import { formatPath } from "../wire/path.js";
import { decode, encode, PROTOCOL_VERSION, T, tail, u32 } from "../wire/protocol.js";
import { receivedRequest, type ServerHello } from "../wire/requests.js";
import { type DnsHost, dnsInfo, dnsRequest } from "./dns-ops.js";
import { markerOf } from "./durable-store.js";
import { readStored } from "./durable-stream.js";
import type { ChanElement, ChannelLike, Element, SubElement } from "./elements.js";
import { type HostOpsHost, hostRequest } from "./host-ops.js";
import type { Limits } from "./limits.js";
import { type ProcHost, procInfo, procRequest } from "./proc-ops.js";
import { SelectHost } from "./select-host.js";
import { SessionChannels } from "./session-channels.js";
import { SessionStreams } from "./session-streams.js";
import type { StoreHost } from "./store-host.js";
import { isStorePath, storeRequest } from "./store-ops.js";
import type { StoreServices } from "./store-svc.js";
import type { StreamPipe } from "./stream-pipe.js";

/** SEND and CSEND frames of this many bytes or more that arrive over several reads stay in their pieces. */
const GATHER_MIN = 128 * 1024;

/**
 * What a session needs of its daemon: the Daemon, seen through this interface so that the session
 * and the request handlers it delegates to do not import daemon.ts (which imports them). Answers
 * the session only passes on to the client are `unknown` here.
 */
export interface SessionHost extends ProcHost, HostOpsHost, DnsHost {
  readonly url: string;
  readonly maxValue: number;
  readonly handshakeMs: number;
  readonly limits: Readonly<Limits>;
  /** Open client sessions by the client id they gave in HELLO. */
  readonly clientSessions: Map<string, Session>;
  /** A client said HELLO with its id. */
  clientBack(cid: string): void;
  /** A client's last connection closed. */
  clientVanished(cid: string): void;
  /** @internal Circuit-wide anchors (/@), when the daemon has a store. */
  readonly shared: StoreHost | undefined;
  /** @internal Services under /@ (store-svc.ts), when started with --store. */
  readonly sharedSvcs: StoreServices | undefined;
  /** The session's connection turned out to come from another server: it carries membership now. */
  adoptPeer(conn: FrameConn, peerId: string, s: Session): void;
  /** The session's connection is gone. */
  sessionGone(s: Session): void;
  /** Pushes membership changes to `s` from now on. */
  watch(s: Session): void;
  checkPath(names: string[]): string[];
  makeChan(names: string[], cap: unknown): ChanElement;
  makeDurableChan(names: string[], cap: unknown): Promise<ChanElement>;
  makeSub(names: string[], kind: unknown): SubElement;
  makeService(names: string[], rawSpec: unknown): unknown;
  list(names: string[], recursive: boolean, long: boolean): unknown;
  stateOf(el: Element): unknown;
  peek(names: string[]): unknown;
  observe(after: number, limit: number, tails: boolean): unknown;
  servers(): unknown;
  placeRequest(raw: unknown): unknown;
  scrub(names: string[], done: () => void): void;
  scrubElement(el: Element, done: () => void): void;
  joinCircuit(url: unknown): Promise<unknown>;
  requestStop(names: string[], by: { peer: string; client?: string }, done: () => void): void;
}

/** How often sessions are looked at for idleness and ticks. */
export const TICK_MS = 1000;

export class Session {
  private handshaken = false;
  private readonly timer: NodeJS.Timeout;
  /** Channel handles, sends and receivers (session-channels.ts). */
  private readonly channels: SessionChannels;
  /** Byte streams to and from the client (session-streams.ts). */
  private readonly streams: SessionStreams;
  private gone = false;
  private peerAddr: string | undefined;
  private readonly selects: SelectHost;
  /** The client's id from HELLO: sends are de-duplicated per cid (PROTOCOL: send sequence numbers). */
  private cid: string | undefined;
  /** The client said BYE: its de-duplication records may go with it. */
  private bye = false;

  constructor(
    readonly conn: FrameConn,
    private readonly d: SessionHost,
  ) {
    this.timer = setTimeout(() => {
      if (!this.handshaken) this.fatal(new ProtocolError(`no handshake within ${d.handshakeMs} ms`));
    }, d.handshakeMs);
    this.timer.unref();
    this.streams = new SessionStreams(conn, d.limits.streams, () => d.nextPipeId());
    this.channels = new SessionChannels(conn, this.streams, d.limits, d.maxValue, () => this.cid);
    this.selects = new SelectHost({
      send: (type, fields, t) => conn.send(type, fields, t),
      sendParts: (type, fields, parts) => conn.sendParts(type, fields, parts),
      element: (handle) => this.channels.el(handle),
      openInStream: (pipe) => this.streams.openIn(pipe),
      requeue: (el, values) => el.chan.requeue(values),
      ack: (el, value) => {
        // A durable channel's values are whole buffers (SessionChannels joins pieces before storing).
        if (el.kind === "chan" && Buffer.isBuffer(value)) el.durable?.ack(value);
      },
      storedStream: (el, value) =>
        el.kind === "chan" && el.durable && markerOf(value)
          ? readStored(el.durable, this.streams.pipeId(), value)
          : undefined,
      maxValue: d.maxValue,
      maxCases: d.limits.selectCases,
      maxSelectors: d.limits.pending,
    });
    conn.onFrame = (t, b) => this.frame(t, b);
    // A stream's big SDATA frames come piece by piece as they arrive, never copied together.
    conn.passThrough(T.SDATA, (sid, bytes, last) => this.streamData(sid, bytes, last));
    // A big value's SEND or CSEND frame comes whole, in the pieces it arrived in: the value is
    // kept and passed on in them, never copied into a buffer of its own here.
    conn.gather([T.SEND, T.CSEND], (type, pieces, size) => this.framePieces(type, pieces, size), GATHER_MIN);
    conn.onClose = () => this.cleanup();
    conn.onBadInput = (err) => {
      this.logClose(err);
      conn.send(T.ERR, [0], encode(toWire(err)));
    };
  }

  private frame(type: number, body: Buffer): void {
    try {
      if (!this.handshaken) {
        if (type !== T.HELLO) throw new ProtocolError("expected HELLO");
        this.hello(body);
        return;
      }
      this.dispatch(type, body);
    } catch (err) {
      this.failed(err);
    }
  }

  /** A big SEND or CSEND frame in pieces: handled as frame() would handle it whole. */
  private framePieces(type: number, pieces: Buffer[], size: number): void {
    try {
      if (!this.handshaken) throw new ProtocolError("expected HELLO");
      this.channels.framePieces(type, pieces, size);
    } catch (err) {
      this.failed(err);
    }
  }

  /** A piece of a big SDATA frame: the same as an SDATA frame of those bytes. */
  private streamData(sid: number, bytes: Buffer, last: boolean): void {
    try {
      if (!this.handshaken) throw new ProtocolError("expected HELLO");
      this.streams.data(sid, bytes, !last);
    } catch (err) {
      this.failed(err);
    }
  }

  /** What a frame's handling threw ends the session: the client's fault with its reason, ours as an internal error. */
  private failed(err: unknown): void {
    if (err instanceof CircuitError || err instanceof RangeError || err instanceof TypeError) {
      this.fatal(err);
    } else {
      this.d.log.error(
        { event: "session-error", peer: this.peer, stack: (err as Error)?.stack ?? String(err) },
        `session error: ${(err as Error)?.message ?? err}`,
      );
      this.fatal(new ProtocolError("internal error"));
    }
  }

  private hello(body: Buffer): void {
    const h = decode(body) as { v?: unknown };
    if (typeof h !== "object" || h === null || h.v !== PROTOCOL_VERSION) {
      throw new ProtocolError(`unsupported protocol version ${JSON.stringify((h as { v?: unknown })?.v)}`);
    }
    this.handshaken = true;
    clearTimeout(this.timer);
    this.conn.send(
      T.HELLO,
      [],
      encode({
        v: PROTOCOL_VERSION,
        id: this.d.id,
        url: this.d.url,
        maxValue: this.d.maxValue,
        pending: this.d.limits.pending,
        streams: this.d.limits.streams,
        credits: this.d.limits.credits,
        selectCases: this.d.limits.selectCases,
        grantWait: true,
        grantAsk: true,
      } satisfies ServerHello),
    );
    const peer = h as { role?: unknown; id?: unknown; cid?: unknown };
    if (typeof peer.cid === "string" && peer.cid.length > 0 && peer.cid.length <= 64) {
      // A client back after losing its connection: its old session ends first, withdrawing what
      // it was doing there, before anything it sends now (its resent sends among it) is read.
      this.d.clientSessions.get(peer.cid)?.conn.destroy();
      this.cid = peer.cid;
      this.d.clientSessions.set(peer.cid, this);
      this.d.clientBack(peer.cid);
    }
    if (peer.role === "server") {
      if (typeof peer.id !== "string") throw new ProtocolError("a server HELLO names the server");
      // From here on this connection carries membership messages, not client requests.
      this.gone = true;
      this.d.adoptPeer(this.conn, peer.id, this);
    }
  }

  private dispatch(type: number, body: Buffer): void {
    switch (type) {
      case T.REQ: {
        const id = u32(body, 0);
        let req: unknown;
        try {
          req = decode(tail(body, 1));
        } catch {
          throw new ProtocolError("undecodable request");
        }
        this.request(id, req);
        return;
      }
      case T.SEND:
      case T.CSEND:
      case T.RELEASE:
      case T.CWAIT:
      case T.CANCEL:
      case T.RECV:
      case T.RCLOSE:
      case T.SOPEN:
        this.channels.frame(type, body);
        return;
      case T.SDATA:
      case T.SFIN:
      case T.SABORT:
      case T.SCREDIT:
      case T.SDROP:
        this.streams.frame(type, body);
        return;
      case T.BYE:
        this.bye = true;
        return;
      case T.SELECT:
      case T.DECIDE:
        this.selects.frame(type, body);
        return;
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
    }
  }

  /** Hands `pipe` to the client's receiver `rid` (process output, a file read). */
  attachStream(rid: number, pipe: StreamPipe): void {
    this.streams.attachRequested(rid, pipe);
  }

  roomForOutput(n: number): void {
    this.streams.roomForOutput(n);
  }

  /**
   * A byte stream from this client that a request opened (process stdin, a file upload) rather than
   * SOPEN: its SDATA/SFIN/SABORT [sid] land in the returned pipe, which grants the client credit.
   */
  acceptStream(sid: number): StreamPipe {
    return this.streams.accept(sid, true);
  }

  private request(id: number, req: unknown): void {
    const r = receivedRequest(req);
    const reply = (v: unknown) => this.conn.send(T.RES, [id], encode(v ?? null));
    const fail = (err: unknown) => this.error(id, err);
    try {
      if (r.op === "@" || ("path" in r && isStorePath(r.path))) {
        const ss = { owner: this, maxValue: this.d.maxValue, depth: this.d.limits.depth, svcs: this.d.sharedSvcs };
        return storeRequest(this.d.shared, ss, r, reply, fail);
      }
      switch (r.op) {
        case "ls":
          return reply(this.d.list(this.path(r.path), r.recursive === true, r.long === true));
        case "open": {
          const el = this.d.element(this.path(r.path));
          if (!el) return reply(null);
          if ("chan" in el) {
            const durable = el.kind === "chan" && el.durable ? { durable: true } : {};
            return reply({ kind: el.kind, cap: el.chan.cap, handle: this.channels.handleFor(el), ...durable });
          }
          if (el.kind === "proc") return reply(procInfo(el));
          if (el.kind === "dns") return reply(dnsInfo(el));
          return reply({ kind: el.kind });
        }
        case "mkchan": {
          // Room for its handle first: a refused open makes nothing.
          this.channels.roomFor();
          if (r.durable === true) {
            this.replyDurable(this.d.makeDurableChan(this.path(r.path), r.cap), reply, fail);
            return;
          }
          const el = this.d.makeChan(this.path(r.path), r.cap);
          return reply({ kind: "chan", cap: el.chan.cap, handle: this.channels.handleFor(el) });
        }
        case "openchan": {
          // Get-or-create in one step: nothing else runs between the look and the make, so two
          // clients opening the same anchor at once get the same channel.
          const names = this.path(r.path);
          const found = this.d.element(names);
          if (found && found.kind !== "chan")
            throw new WrongKind(`${formatPath(names)} holds a ${found.kind}, not a channel`);
          this.channels.roomFor(found ?? undefined);
          if (!found && r.durable === true) {
            // Placed at once, answered once synced (Daemon.makeDurableChan).
            this.replyDurable(this.d.makeDurableChan(names, r.cap), reply, fail);
            return;
          }
          const el = found ?? this.d.makeChan(names, r.cap);
          const durable = el.kind === "chan" && el.durable ? { durable: true } : {};
          return reply({ kind: "chan", cap: el.chan.cap, handle: this.channels.handleFor(el), ...durable });
        }
        case "stat": {
          const el = this.channels.el(this.int(r.handle));
          if (this.channels.isReleased(el)) throw new ChannelAborted("the channel was scrubbed");
          return reply(this.d.stateOf(el));
        }
        case "mksub": {
          const el = this.d.makeSub(this.path(r.path), r.kind);
          return reply({ kind: el.kind, cap: el.chan.cap, handle: this.channels.handleFor(el) });
        }
        case "watch":
          this.d.watch(this);
          return reply(this.d.servers());
        case "peek":
          return reply(this.d.peek(this.path(r.path)));
        case "close": {
          const el = this.channels.el(this.int(r.handle));
          if (el.kind !== "chan") throw new WrongKind(`${el.kind} subscriptions cannot be closed; scrub them`);
          const durable = el.durable;
          // A durable channel's closed flag is synced before the close is answered.
          el.chan.close(() => (durable ? durable.setClosed().then(() => reply(null), fail) : reply(null)));
          return;
        }
        case "scrub": {
          if (r.handle !== undefined) {
            const el = this.channels.el(this.int(r.handle));
            // Scrubbed already (and its handle released): done.
            if (this.channels.isReleased(el)) return reply(null);
            this.d.scrubElement(el, () => reply(null));
            return;
          }
          this.d.scrub(this.path(r.path), () => reply(null));
          return;
        }
        case "servers":
          return reply(this.d.servers());
        case "obs": {
          if (this.path(r.path).length !== 1) throw new WrongKind("obs is an operation of a server, /XID");
          const after = typeof r.after === "number" ? r.after : 0;
          const limit = typeof r.limit === "number" ? Math.max(0, Math.min(r.limit, 100_000)) : 1000;
          return reply(this.d.observe(after, limit, r.tails === true));
        }
        case "ping":
          return reply(null);
        case "join":
          if (this.path(r.path).length !== 1) throw new WrongKind("join is an operation of a server, /XID");
          this.d.joinCircuit(r.url).then(reply, fail);
          return;
        case "stop":
          this.d.requestStop(this.path(r.path), { peer: this.peer, client: this.cid }, () => reply(null));
          return;
        case "mkproc":
        case "proc":
          return procRequest(this.d, this, this.path(r.path), r, reply, fail);
        case "host":
          return hostRequest(this.d, this, this.path(r.path), r, reply, fail);
        case "place":
          return reply(this.d.placeRequest(r.req));
        case "mksvc":
          this.d.makeService(this.path(r.path), r.spec);
          return reply({ kind: "svc" });
        case "svc": {
          const names = this.path(r.path);
          const el = this.d.element(names);
          if (!el) throw new NotFound(`${formatPath(names)} holds no element`);
          if (el.kind !== "svc") throw new WrongKind(`${formatPath(names)} holds a ${el.kind}, not a service`);
          if (r.do === "scale") {
            const n = r.n;
            if (typeof n !== "number" || !Number.isInteger(n) || n < 0)
              throw new RangeError("scale takes a whole number");
            el.svc.scale(n);
            return reply(el.svc.stat());
          }
          if (r.do === "peek") return reply(el.svc.stat());
          throw new ProtocolError(`unknown service operation ${JSON.stringify(r.do)}`);
        }
        case "mkdns":
        case "dns":
          return dnsRequest(this.d, this.path(r.path), r, reply, fail);
        default:
          // Received lists the ops we know; anything else a client sends ends here.
          throw new ProtocolError(`unknown op ${JSON.stringify((r as { op: unknown }).op)}`);
      }
    } catch (err) {
      if (err instanceof CircuitError || err instanceof RangeError || err instanceof TypeError) fail(err);
      else throw err;
    }
  }

  /** Answers a durable mkchan/openchan once its channel is placed and synced. */
  private replyDurable(made: Promise<ChanElement>, reply: (v: unknown) => void, fail: (err: unknown) => void): void {
    made
      // handleFor can still refuse (another open took the last handle meanwhile): that fails the
      // request, as any other failure here does.
      .then((el) => reply({ kind: "chan", cap: el.chan.cap, handle: this.channels.handleFor(el), durable: true }))
      .catch(fail);
  }

  private path(p: unknown): string[] {
    if (!Array.isArray(p) || !p.every((x) => typeof x === "string"))
      throw new ProtocolError("path must be an array of names");
    return this.d.checkPath(p as string[]);
  }

  private int(v: unknown): number {
    if (typeof v !== "number" || !Number.isInteger(v)) throw new ProtocolError("expected an integer");
    return v;
  }

  /**
   * `el` was scrubbed and has settled (no credit of ours is left in it): its handle and everything
   * kept for it go, and the client hears so; later uses of the handle fail with ChannelAborted.
   */
  releaseHandle(el: ChannelLike): void {
    if (!this.gone) this.channels.release(el);
  }

  private error(id: number, err: unknown): void {
    this.conn.send(T.ERR, [id], encode(toWire(err)));
  }

  /** A membership change, for a client that watches. */
  push(ev: Record<string, unknown>): void {
    this.conn.send(T.PUSH, [], encode(ev));
  }

  /** HOST:PORT of the client. */
  get peer(): string {
    this.peerAddr ??= peerAddress(this.conn.stream as { remoteAddress?: string; remotePort?: number });
    return this.peerAddr;
  }

  /** One line per connection closed for bad input: a refused handshake, or a protocol error after it. */
  private logClose(err: Error): void {
    const fields = { peer: this.peer, ...(this.cid ? { client: this.cid } : {}), reason: err.message };
    if (/^idle for over/.test(err.message)) {
      this.d.log.debug({ event: "idle-close", ...fields }, `closed idle connection from ${this.peer}`);
    } else if (!this.handshaken) {
      this.d.log.warn(
        { event: "handshake-refused", ...fields },
        `refused a connection from ${this.peer}: ${err.message}`,
      );
    } else {
      this.d.log.warn({ event: "protocol-error", ...fields }, `protocol error from ${this.peer}: ${err.message}`);
    }
  }

  /** Tells the peer why, then closes. */
  private fatal(err: Error): void {
    if (this.conn.closed) return;
    this.logClose(err);
    this.conn.send(T.ERR, [0], encode(toWire(err)));
    this.conn.destroy(err);
  }

  /** The connection is gone: withdraw everything it was doing, losing no value. */
  private cleanup(): void {
    if (this.gone) return;
    this.gone = true;
    clearTimeout(this.timer);
    if (this.cid !== undefined && this.d.clientSessions.get(this.cid) === this) {
      this.d.clientSessions.delete(this.cid);
      // Its last connection: without its goodbye it may come back and resend, for a while
      // (Daemon.forgetVanished). With it, the records on the channels it holds go now (below), and
      // any it left on others through earlier connections go after that while too.
      this.d.clientVanished(this.cid);
    }
    this.channels.cleanup(this.bye);
    this.streams.cleanup();
    this.selects.cleanup();
    this.d.sessionGone(this);
  }

  /**
   * Every TICK_MS: reaps a peer that has sent nothing for too long (a half-open connection, or a
   * slow attacker), and tells a client whose bytes keep arriving that we are alive even when we
   * have nothing else to say (its pings may be queued behind its own values on a slow link).
   */
  tick(now: number, idleMs: number): void {
    if (this.gone) return;
    if (now - this.conn.lastInput > idleMs) this.fatal(new ProtocolError(`idle for over ${idleMs} ms`));
    else if (this.handshaken && now - this.conn.lastInput < TICK_MS && now - this.conn.lastOutput >= TICK_MS) {
      this.conn.send(T.TICK, []);
    }
  }

  /** The daemon is stopping. */
  shutdown(): void {
    this.conn.destroy();
  }
}
