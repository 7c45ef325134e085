// One client connection on the daemon: decodes requests, dispatches them to elements, and answers.
// Values stay opaque bytes here; only control frames are decoded.

import { Channel, type CreditHolder, type Receiver, type SendWaiter } from "../element/channel.js";
import { ChannelAborted, CircuitError, NotFound, ProtocolError, toWire, Unsupported, WrongKind } from "../errors.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { peerAddress } from "../transport/secure.js";
import { Deque } from "../util/deque.js";
import { forEachEntry } from "../wire/frame.js";
import { formatPath } from "../wire/path.js";
import { decode, encode, PROTOCOL_VERSION, T, tail, u32 } from "../wire/protocol.js";
import type { Daemon } from "./daemon.js";
import { dnsInfo, dnsRequest } from "./dns-ops.js";
import type { ChanElement, ChannelLike, Item } from "./elements.js";
import { hostRequest } from "./host-ops.js";
import { procInfo, procRequest } from "./proc-ops.js";
import { SelectHost } from "./select-host.js";
import { isStorePath, storeRequest } from "./store-ops.js";
import { type PipeReceiver, type PipeSender, StreamPipe } from "./stream-pipe.js";

/** A session's credit holding on one channel. */
class Holder implements CreditHolder {
  constructor(
    private readonly s: Session,
    readonly handle: number,
  ) {}
  grant(n: number): void {
    this.s.conn.send(T.GRANT, [this.handle, n]);
  }
  revoke(): void {
    this.s.conn.send(T.REVOKE, [this.handle]);
  }
}

/** A receiver id of this session: its blocked receives and the values handed to it, unacked. */
class SessionReceiver implements Receiver<Item> {
  readonly unacked = new Deque<Buffer>();
  ended = false;
  /** Receives outstanding (credits not yet used). */
  credits = 0;
  constructor(
    private readonly s: Session,
    readonly rid: number,
    readonly el: ChannelLike,
  ) {}
  /** The client acknowledged its first n unacknowledged values: a durable channel forgets them. */
  ack(n: number): void {
    const durable = this.el.kind === "chan" ? this.el.durable : undefined;
    for (let i = 0; i < n && this.unacked.length > 0; i++) {
      const v = this.unacked.shift() as Buffer;
      durable?.ack(v);
    }
  }
  take(v: Item): void {
    this.credits--;
    if (Buffer.isBuffer(v)) {
      this.unacked.push(v);
      this.s.conn.batch(T.VAL, this.rid, v);
    } else {
      // A stream message cannot be taken back once bytes have flowed, so it counts as acked.
      this.s.attachStream(this.rid, v);
    }
  }
  end(err: CircuitError): void {
    if (this.ended) return;
    this.ended = true;
    this.s.conn.send(T.REND, [this.rid], encode(toWire(err)));
  }
}

/** How often sessions are looked at for idleness and ticks. */
export const TICK_MS = 1000;

export class Session {
  private handshaken = false;
  private readonly timer: NodeJS.Timeout;
  private readonly handles = new Map<number, { el: ChannelLike; holder: Holder }>();
  private readonly handleOf = new Map<ChannelLike, number>();
  /** Handles are never reused: one below this that is not in `handles` was released (scrubbed). */
  private nextHandle = 1;
  /** Stands in for the channel of a released handle: scrubbed, so every op on it fails as it would. */
  private scrubbedEl: ChanElement | undefined;
  private readonly receivers = new Map<number, SessionReceiver>();
  private readonly pendingSends = new Map<number, { el: ChannelLike; w: SendWaiter<Item> }>();
  /** Stream messages this session is sending, by its stream id. */
  private readonly outStreams = new Map<number, StreamPipe>();
  /** Stream messages this session is receiving, by pipe id. */
  private readonly inStreams = new Map<number, StreamPipe>();
  private gone = false;
  private peerAddr: string | undefined;
  private readonly selects: SelectHost;
  /** The client's id from HELLO: sends are de-duplicated per cid (PROTOCOL: send sequence numbers). */
  private cid: string | undefined;
  /** The client said BYE: its de-duplication records may go with it. */
  private bye = false;

  constructor(
    readonly conn: FrameConn,
    private readonly d: Daemon,
  ) {
    this.timer = setTimeout(() => {
      if (!this.handshaken) this.fatal(new ProtocolError(`no handshake within ${d.handshakeMs} ms`));
    }, d.handshakeMs);
    this.timer.unref();
    this.selects = new SelectHost({
      send: (type, fields, t) => conn.send(type, fields, t),
      element: (handle) => this.el(handle),
      openInStream: (pipe) => this.openInStream(pipe),
      requeue: (el, values) => el.chan.requeue(values),
      ack: (el, value) => {
        if (el.kind === "chan") el.durable?.ack(value);
      },
      maxValue: d.maxValue,
      maxCases: d.limits.selectCases,
      maxSelectors: d.limits.pending,
    });
    conn.onFrame = (t, b) => this.frame(t, b);
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
      encode({ v: PROTOCOL_VERSION, id: this.d.id, url: this.d.url, maxValue: this.d.maxValue }),
    );
    const peer = h as { role?: unknown; id?: unknown; cid?: unknown };
    if (typeof peer.cid === "string" && peer.cid.length > 0 && peer.cid.length <= 64) {
      // A client back after losing its connection: its old session ends first, withdrawing what
      // it was doing there, before anything it sends now (its resent sends among it) is read.
      this.d.clientSessions.get(peer.cid)?.conn.destroy();
      this.cid = peer.cid;
      this.d.clientSessions.set(peer.cid, this);
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
      case T.SEND: {
        const id = u32(body, 0);
        const el = this.sendable(id, u32(body, 1));
        if (!el) return;
        const want = u32(body, 2);
        const seq = u32(body, 3);
        const v = this.value(tail(body, 4));
        if (this.pendingSends.size >= this.d.limits.pending) throw new ProtocolError("too many pending operations");
        if (this.isStored(el, seq)) {
          // A resend of a value stored before this client's connection broke: stored once (on a
          // durable channel, answered once what was written before it is synced).
          if (el.durable) el.durable.whenSynced().then(() => this.conn.send(T.RES, [id]));
          else this.conn.send(T.RES, [id]);
          return;
        }
        const w: SendWaiter<Item> = {
          value: v,
          done: (err) => {
            this.pendingSends.delete(id);
            if (err) this.error(id, err);
            else if (el.durable) {
              // In the buffer; complete once synced. Its de-duplication record goes in the same
              // transaction as the value (written in this same turn).
              this.markStored(el, seq);
              el.durable.whenStored(v).then(
                () => {
                  this.conn.send(T.RES, [id]);
                  if (want > 0) el.chan.want(this.holderFor(el), want);
                },
                (e) => this.error(id, e),
              );
            } else {
              this.markStored(el, seq);
              this.conn.send(T.RES, [id]);
              if (want > 0) el.chan.want(this.holderFor(el), want);
            }
          },
        };
        this.pendingSends.set(id, { el, w });
        el.chan.send(w);
        return;
      }
      case T.CSEND: {
        const h = this.handles.get(u32(body, 0));
        if (!h) throw new NotFound("unknown channel handle");
        const first = u32(body, 1);
        const values: Buffer[] = [];
        forEachEntry(body, 2, (start, end) => values.push(this.value(body.subarray(start, end))));
        if (!h.el.chan.sendCreditedMany(h.holder, values)) throw new ProtocolError("credited send without credit");
        const last = (first + values.length - 1) >>> 0;
        if (h.el.kind === "chan") this.markStored(h.el, last);
        const durable = h.el.kind === "chan" ? h.el.durable : undefined;
        if (durable) {
          // A credited send into a durable channel completes with its CACK, sent once synced: no
          // round trip beyond the sync. If the store fails, CNAK fails the batch instead.
          const handle = u32(body, 0);
          Promise.all(values.map((v) => durable.whenStored(v))).then(
            () => this.conn.send(T.CACK, [handle, last]),
            (err) => this.conn.send(T.CNAK, [handle, last], encode(toWire(err))),
          );
        } else this.conn.send(T.CACK, [u32(body, 0), last]);
        return;
      }
      case T.BYE:
        this.bye = true;
        return;
      case T.RELEASE: {
        const h = this.handles.get(u32(body, 0));
        // A released handle's channel has settled: it holds no credits of ours any more.
        if (h) h.el.chan.release(h.holder);
        else this.el(u32(body, 0));
        return;
      }
      case T.CANCEL: {
        const id = u32(body, 0);
        const p = this.pendingSends.get(id);
        if (p?.el.chan.cancelSend(p.w)) {
          this.pendingSends.delete(id);
          if (!Buffer.isBuffer(p.w.value)) p.w.value.drop("send cancelled");
          this.conn.send(T.ERR, [id], encode({ code: "Cancelled", message: "cancelled" }));
        }
        return;
      }
      case T.RECV: {
        const rid = u32(body, 0);
        const handle = u32(body, 1);
        const ack = u32(body, 2);
        const n = u32(body, 3);
        let r = this.receivers.get(rid);
        if (!r) {
          const el = this.handles.get(handle)?.el;
          if (!el) {
            this.conn.send(T.REND, [rid], encode(toWire(this.noHandle(handle))));
            return;
          }
          if (this.receivers.size >= this.d.limits.pending) throw new ProtocolError("too many receivers");
          r = new SessionReceiver(this, rid, el);
          this.receivers.set(rid, r);
        }
        r.ack(ack);
        if (n > 0 && !r.ended) {
          r.credits += n;
          if (r.credits + r.unacked.length > this.d.limits.credits) {
            throw new ProtocolError(`more than ${this.d.limits.credits} receives outstanding or unacknowledged`);
          }
          r.el.chan.recv(r, n);
        }
        return;
      }
      case T.RCLOSE: {
        const rid = u32(body, 0);
        const ack = u32(body, 1);
        const quiet = u32(body, 2);
        const r = this.receivers.get(rid);
        if (r) {
          this.receivers.delete(rid);
          r.ack(ack);
          r.el.chan.cancelRecv(r);
          r.el.chan.requeue(r.unacked.drain());
        }
        if (!quiet) this.conn.send(T.REND, [rid]);
        return;
      }
      case T.SOPEN: {
        const id = u32(body, 0);
        const el = this.sendable(id, u32(body, 1));
        if (!el) return;
        const sid = u32(body, 2);
        if (el.durable) {
          this.error(id, new Unsupported("a durable channel stores values, not stream messages"));
          return;
        }
        if (this.outStreams.has(sid)) throw new ProtocolError("stream id in use");
        if (this.outStreams.size >= this.d.limits.streams)
          throw new ProtocolError(`more than ${this.d.limits.streams} open streams`);
        const pipe = new StreamPipe(this.d.nextPipeId(), this.pipeSender(sid));
        this.outStreams.set(sid, pipe);
        const w: SendWaiter<Item> = {
          value: pipe,
          done: (err) => {
            this.pendingSends.delete(id);
            if (err) {
              pipe.drop(err.message);
              this.error(id, err);
            } else this.conn.send(T.RES, [id]);
          },
        };
        this.pendingSends.set(id, { el, w });
        el.chan.send(w);
        return;
      }
      case T.SDATA: {
        const sid = u32(body, 0);
        const pipe = this.outStreams.get(sid);
        if (pipe && !pipe.write(tail(body, 1))) throw new ProtocolError("stream data beyond its credit");
        return;
      }
      case T.SFIN: {
        const sid = u32(body, 0);
        const pipe = this.outStreams.get(sid);
        if (pipe) {
          this.outStreams.delete(sid);
          pipe.fin();
        }
        return;
      }
      case T.SABORT: {
        const sid = u32(body, 0);
        const out = this.outStreams.get(sid);
        if (out) {
          this.outStreams.delete(sid);
          out.breakOff("sender aborted the stream");
        }
        return;
      }
      case T.SCREDIT: {
        const pid = u32(body, 0);
        this.inStreams.get(pid)?.grant(u32(body, 1));
        return;
      }
      case T.SDROP: {
        const pid = u32(body, 0);
        const p = this.inStreams.get(pid);
        if (p) {
          this.inStreams.delete(pid);
          p.drop("receiver stopped reading");
        }
        return;
      }
      case T.SELECT:
      case T.DECIDE:
        this.selects.frame(type, body);
        return;
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
    }
  }

  private pipeSender(sid: number): PipeSender {
    return {
      credit: (n) => this.conn.send(T.SCREDIT, [sid, n]),
      abort: (reason) => {
        this.outStreams.delete(sid);
        this.conn.send(T.SDROP, [sid], encode({ code: "StreamBroken", message: reason }));
      },
    };
  }

  attachStream(rid: number, pipe: StreamPipe): void {
    this.conn.send(T.SATTACH, [rid, pipe.id]);
    this.openInStream(pipe);
  }

  /** Streams a stream message's bytes to this client under its pipe id, with its credit. */
  openInStream(pipe: StreamPipe): void {
    this.inStreams.set(pipe.id, pipe);
    const recv: PipeReceiver = {
      data: (c) => this.conn.send(T.SDATA, [pipe.id], c),
      fin: () => {
        this.inStreams.delete(pipe.id);
        this.conn.send(T.SFIN, [pipe.id]);
      },
      broken: (reason) => {
        this.inStreams.delete(pipe.id);
        this.conn.send(T.SABORT, [pipe.id], encode({ code: "StreamBroken", message: reason }));
      },
    };
    pipe.attach(recv);
  }

  /**
   * A byte stream from this client that a request opened (process stdin, a file upload) rather than
   * SOPEN: its SDATA/SFIN/SABORT [sid] land in the returned pipe, which grants the client credit.
   */
  acceptStream(sid: number): StreamPipe {
    if (this.outStreams.has(sid)) throw new ProtocolError("stream id in use");
    if (this.outStreams.size >= this.d.limits.streams)
      throw new ProtocolError(`more than ${this.d.limits.streams} open streams`);
    const pipe = new StreamPipe(this.d.nextPipeId(), this.pipeSender(sid));
    this.outStreams.set(sid, pipe);
    return pipe;
  }

  private request(id: number, req: unknown): void {
    if (typeof req !== "object" || req === null || typeof (req as { op?: unknown }).op !== "string") {
      throw new ProtocolError("a request is an object with an op");
    }
    const r = req as Record<string, unknown>;
    const reply = (v: unknown) => this.conn.send(T.RES, [id], encode(v ?? null));
    const fail = (err: unknown) => this.error(id, err);
    try {
      if (r.op === "@" || isStorePath(r.path)) {
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
            return reply({ kind: el.kind, cap: el.chan.cap, handle: this.handleFor(el), ...durable });
          }
          if (el.kind === "proc") return reply(procInfo(el));
          if (el.kind === "dns") return reply(dnsInfo(el));
          return reply({ kind: el.kind });
        }
        case "mkchan": {
          if (r.durable === true) {
            this.d
              .makeDurableChan(this.path(r.path), r.cap)
              .then((el) => reply({ kind: "chan", cap: el.chan.cap, handle: this.handleFor(el), durable: true }), fail);
            return;
          }
          const el = this.d.makeChan(this.path(r.path), r.cap);
          return reply({ kind: "chan", cap: el.chan.cap, handle: this.handleFor(el) });
        }
        case "openchan": {
          // Get-or-create in one step: nothing else runs between the look and the make, so two
          // clients opening the same anchor at once get the same channel.
          const names = this.path(r.path);
          const found = this.d.element(names);
          if (found && found.kind !== "chan")
            throw new WrongKind(`${formatPath(names)} holds a ${found.kind}, not a channel`);
          if (!found && r.durable === true) {
            // Placed at once, answered once synced (Daemon.makeDurableChan).
            this.d
              .makeDurableChan(names, r.cap)
              .then((el) => reply({ kind: "chan", cap: el.chan.cap, handle: this.handleFor(el), durable: true }), fail);
            return;
          }
          const el = found ?? this.d.makeChan(names, r.cap);
          const durable = el.kind === "chan" && el.durable ? { durable: true } : {};
          return reply({ kind: "chan", cap: el.chan.cap, handle: this.handleFor(el), ...durable });
        }
        case "stat": {
          const el = this.el(this.int(r.handle));
          if (el === this.scrubbedEl) throw new ChannelAborted("the channel was scrubbed");
          return reply(this.d.stateOf(el));
        }
        case "mksub": {
          const el = this.d.makeSub(this.path(r.path), r.kind);
          return reply({ kind: el.kind, cap: el.chan.cap, handle: this.handleFor(el) });
        }
        case "watch":
          this.d.watch(this);
          return reply(this.d.servers());
        case "peek":
          return reply(this.d.peek(this.path(r.path)));
        case "close": {
          const el = this.el(this.int(r.handle));
          if (el.kind !== "chan") throw new WrongKind(`${el.kind} subscriptions cannot be closed; scrub them`);
          const durable = el.durable;
          // A durable channel's closed flag is synced before the close is answered.
          el.chan.close(() => (durable ? durable.setClosed().then(() => reply(null), fail) : reply(null)));
          return;
        }
        case "scrub": {
          if (r.handle !== undefined) {
            const el = this.el(this.int(r.handle));
            // Scrubbed already (and its handle released): done.
            if (el === this.scrubbedEl) return reply(null);
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
          throw new ProtocolError(`unknown op ${JSON.stringify(r.op)}`);
      }
    } catch (err) {
      if (err instanceof CircuitError || err instanceof RangeError || err instanceof TypeError) fail(err);
      else throw err;
    }
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

  private value(v: Buffer): Buffer {
    if (v.length > this.d.maxValue) throw new ProtocolError(`value of ${v.length} bytes exceeds the limit`);
    return v;
  }

  /** The channel a send may go to; a subscription answers WrongKind. */
  private sendable(id: number, handle: number): ChanElement | undefined {
    const el = this.el(handle);
    if (el.kind === "chan") return el;
    this.error(id, new WrongKind(`${el.kind} subscriptions are receive-only`));
    return undefined;
  }

  private el(handle: number): ChannelLike {
    const h = this.handles.get(handle);
    if (h) return h.el;
    if (handle > 0 && handle < this.nextHandle) return this.scrubbed();
    throw new NotFound("unknown channel handle");
  }

  /** Why `handle` names no channel: it was released (ChannelAborted) or never given (NotFound). */
  private noHandle(handle: number): CircuitError {
    if (handle > 0 && handle < this.nextHandle) return new ChannelAborted("the channel was scrubbed");
    return new NotFound("unknown channel handle");
  }

  private scrubbed(): ChanElement {
    if (!this.scrubbedEl) {
      this.scrubbedEl = { kind: "chan", chan: new Channel<Item>(0), names: [] };
      this.scrubbedEl.chan.scrub(() => {});
    }
    return this.scrubbedEl;
  }

  /**
   * `el` was scrubbed and has settled (no credit of ours is left in it): its handle and everything
   * kept for it go, and the client hears so; later uses of the handle fail with ChannelAborted.
   */
  releaseHandle(el: ChannelLike): void {
    const h = this.handleOf.get(el);
    if (h === undefined || this.gone) return;
    this.handleOf.delete(el);
    this.handles.delete(h);
    // Its receivers have ended; values they hold unacked cannot go back into a scrubbed channel.
    for (const [rid, r] of this.receivers) if (r.el === el) this.receivers.delete(rid);
    this.conn.send(T.PUSH, [], encode({ ev: "released", handle: h }));
  }

  private handleFor(el: ChannelLike): number {
    let h = this.handleOf.get(el);
    if (h === undefined) {
      if (this.handles.size >= this.d.limits.handles)
        throw new ProtocolError("too many open channels on this connection");
      h = this.nextHandle++;
      this.handleOf.set(el, h);
      this.handles.set(h, { el, holder: new Holder(this, h) });
    }
    return h;
  }

  private holderFor(el: ChannelLike): Holder {
    return (this.handles.get(this.handleOf.get(el) as number) as { holder: Holder }).holder;
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

  /** True if this client's send `seq` on `el` was stored already (a resend after a reconnection). */
  private isStored(el: ChanElement, seq: number): boolean {
    return this.cid !== undefined && seq !== 0 && (el.stored?.get(this.cid) ?? 0) >= seq;
  }

  private markStored(el: ChanElement, seq: number): void {
    if (this.cid === undefined || seq === 0) return;
    el.stored ??= new Map();
    el.stored.set(this.cid, seq);
    el.durable?.storeDedupe(this.cid, seq);
  }

  /** The connection is gone: withdraw everything it was doing, losing no value. */
  private cleanup(): void {
    if (this.gone) return;
    this.gone = true;
    clearTimeout(this.timer);
    if (this.cid !== undefined && this.d.clientSessions.get(this.cid) === this) this.d.clientSessions.delete(this.cid);
    if (this.bye && this.cid !== undefined) {
      for (const { el } of this.handles.values()) {
        if (el.kind !== "chan") continue;
        el.stored?.delete(this.cid);
        el.durable?.dropDedupe(this.cid);
      }
    }
    for (const { el, w } of this.pendingSends.values()) {
      if (el.chan.cancelSend(w) && !Buffer.isBuffer(w.value)) w.value.breakOff("sender disconnected");
    }
    this.pendingSends.clear();
    for (const r of this.receivers.values()) {
      r.el.chan.cancelRecv(r);
      r.el.chan.requeue(r.unacked.drain());
    }
    this.receivers.clear();
    for (const { el, holder } of this.handles.values()) el.chan.dropHolder(holder);
    for (const p of this.outStreams.values()) p.breakOff("sender disconnected");
    this.outStreams.clear();
    for (const p of this.inStreams.values()) p.drop("receiver disconnected");
    this.inStreams.clear();
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
