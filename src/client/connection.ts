// The client's end of one connection to one server: requests with ids, the channel data path with
// credits, receivers and stream messages. Handles (Chan, Anchor) sit on top of it.

import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import {
  ChannelAborted,
  CircuitError,
  fromWire,
  MessageTooLarge,
  ProtocolError,
  ServerGone,
  StreamBroken,
} from "../errors.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { monotonicMs } from "../util/clock.js";
import { Deque } from "../util/deque.js";
import { binHeadBytes, forEachEntry } from "../wire/frame.js";
import { DEFAULT_MAX_VALUE, decode, encode, PROTOCOL_VERSION, seqAtMost, T, tail, u32 } from "../wire/protocol.js";
import type { Push, Request, ServerHello } from "../wire/requests.js";
import { checkValue } from "../wire/value-check.js";
import {
  ackThrough,
  type ChanState,
  type Completion,
  completion,
  type Gated,
  KEPT_BY_REFERENCE,
  type Kept,
  keep,
  keepCredited,
  keptSize,
  newChanState,
  unrun,
} from "./kept-sends.js";
import { type ConnectOptions, dialLink, startKeepalive, whereOf } from "./link.js";
import { StreamReader, StreamWriter } from "./stream-message.js";

export type { ChanState } from "./kept-sends.js";
export type { ConnectOptions } from "./link.js";

/** How a receiver id's events reach its owner. */
export interface RecvSink {
  /** One value: its encoded bytes are frame[start, end). */
  val(frame: Buffer, start: number, end: number): void;
  stream(r: Readable): void;
  end(err?: CircuitError): void;
  /**
   * The connection was re-established (the old session put every unacknowledged value back in the
   * channel): drop what arrived and was not handed out, and say how many receives to open again.
   * A sink without it ends with ServerGone instead.
   */
  resume?(): number;
}

interface Pending {
  resolve(v: unknown): void;
  reject(err: CircuitError): void;
}

/** How a selector hears from one server (frame fields after the selector id). */
export interface SelectSink {
  offer(idx: number, flags: number, tail: Buffer): void;
  withdraw(idx: number): void;
  done(idx: number, flags: number, pid: number, tail: Buffer): void;
  settled(idx: number, flags: number, pid: number, tail: Buffer): void;
  polled(): void;
  gone(err: CircuitError): void;
}

/** How many credits a sender asks for at most. */
const MAX_WANT = 1024;
/**
 * Blocked sends, and receivers, a server takes from one connection at a time unless its HELLO
 * says otherwise (the daemon's `--max-pending`): a client holds any more back itself, in order.
 */
const DEFAULT_SERVER_PENDING = 65_536;
/** Streams towards it a server takes from one connection unless its HELLO says otherwise (`--max-streams`). */
const DEFAULT_SERVER_STREAMS = 1024;
/** Receives outstanding plus unacknowledged values per receiver unless its HELLO says otherwise (`--max-credits`). */
const DEFAULT_SERVER_CREDITS = 65_536;
/** Cases of one select a server takes unless its HELLO says otherwise (`--max-select-cases`). */
const DEFAULT_SERVER_SELECT_CASES = 1024;
/** Default bound on bytes a connection holds that the operating system has not accepted yet. */
export const DEFAULT_MAX_UNSENT = 4 * 1024 * 1024;
/** How long close() lets ended stream writers finish before it cuts them. */
const CLOSE_GRACE_MS = 10_000;
/**
 * How long a connection that broke tries to reach the same server again before everything on it
 * fails with ServerGone: the failure-detection bound. A refused connection (no server listening
 * there any more) ends the attempts at once.
 */
const RECONNECT_MS = 5000;
/** The most a caller may ask a connection to keep trying (ConnectOptions.reconnectMs). */
export const MAX_RECONNECT_MS = 600_000;
const RECONNECT_EVERY_MS = 100;

/** A bound a server's HELLO gives: a whole number from 1, else (absent, from an older server) the default. */
function bound(v: unknown, otherwise: number): number {
  return typeof v === "number" && Number.isInteger(v) && v >= 1 ? v : otherwise;
}

function tooLarge(size: number, max: number): MessageTooLarge {
  return new MessageTooLarge(`value of ${size} bytes exceeds the limit of ${max}`);
}

/**
 * When credit handed back by a receive loop is written (Connection.moreRecv): at once, once the
 * microtasks queued so far have run, or with the next write (at the latest at the turn's end).
 */
export type Flush = "now" | "soon" | "later";

/** A small byte value's send held back (ChanState.held) without an abort signal: one object, no closures. */
class HeldBin implements Gated {
  constructor(
    private readonly c: Connection,
    private readonly st: ChanState,
    private readonly value: Uint8Array,
    private readonly resolve: () => void,
    readonly reject: (err: unknown) => void,
  ) {}
  run(): void {
    this.c.runHeldBin(this.st, this.value, this.resolve, this.reject);
  }
}

export class Connection {
  serverId = "";
  url = "";
  maxValue = DEFAULT_MAX_VALUE;
  /** Server pushes (membership changes for a watching client). */
  onPush: (msg: Record<string, unknown>) => void = () => {};
  /** Settles when the connection is gone; never rejects. */
  readonly closed: Promise<CircuitError | undefined>;
  private resolveClosed!: (e: CircuitError | undefined) => void;
  private readonly pending = new Map<number, Pending>();
  private readonly sinks = new Map<number, RecvSink>();
  /** The channel each receiver id reads, for reopening it after a reconnection. */
  private readonly recvOn = new Map<number, ChanState>();
  /** Every channel this connection sends or receives on (chans is the same by current handle). */
  private readonly states = new Set<ChanState>();
  /** Requests of a resume in progress: they fail if the new link breaks too. */
  private readonly resumeIds = new Set<number>();
  private readonly chans = new Map<number, ChanState>();
  private readonly outStreams = new Map<number, StreamWriter>();
  private readonly inStreams = new Map<number, StreamReader>();
  private readonly selectors = new Map<number, SelectSink>();
  /** Selects opened while serverPending of ours were open there (or while reconnecting): their SELECT waits, in order. */
  private readonly selectWaiting = new Map<number, { poll: boolean; cases: unknown[]; sink: SelectSink }>();
  private nextId = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private where = "";
  /** Set when the peer closed after the TCP connect but before our handshake completed. */
  private handshakeError: CircuitError | undefined;
  private gone: CircuitError | undefined;
  private closing = false;
  /** Operations waiting for the unsent bytes to fall under maxUnsent, in issue order. */
  private readonly gate = new Deque<Gated>();
  private maxUnsent = DEFAULT_MAX_UNSENT;
  private admitting = false;
  /** Blocked sends and receivers the server takes from this connection (its HELLO says). */
  private serverPending = DEFAULT_SERVER_PENDING;
  /** Blocking sends (SEND) at the server, not answered yet. */
  private blockingOut = 0;
  /** Blocking sends waiting here, in issue order, while serverPending of ours wait there. */
  private readonly sendQueue = new Deque<Gated>();
  /**
   * Sends carried over a reconnection past serverPending (credited ones go again as sends that may
   * block): they go, in order, ahead of sendQueue, as ours at the server are answered. Each counts
   * in blockingOut already.
   */
  private readonly resends = new Deque<() => void>();
  private admittingSends = false;
  /** Receivers opened while serverPending of ours were open there: their RECV waits, in order. */
  private readonly recvWaiting = new Map<number, { handle: number; n: number }>();
  /** Streams towards the server it takes from this connection (its HELLO says). */
  private serverStreams = DEFAULT_SERVER_STREAMS;
  /**
   * Receives outstanding plus values handed out and not acknowledged that the server lets one
   * receiver have (its HELLO says): an iterator's prefetch is held to it.
   */
  creditBound = DEFAULT_SERVER_CREDITS;
  /** Values that arrived for this connection's receive loops and were not handed out yet. */
  readonly inboxes = { values: 0 };
  /** Cases of one select the server takes (its HELLO says). */
  selectCaseBound = DEFAULT_SERVER_SELECT_CASES;
  /** The server keeps a credit holder that holds nothing until it revokes it (ServerHello.grantWait). */
  private grantWait = false;
  /** A sender holding no credit may ask the server for some and wait for it (ServerHello.grantAsk). */
  private grantAsk = false;
  /**
   * Request ids of our stream messages open at the server and not answered: each counts in
   * blockingOut (the server holds it as a blocked send until a receiver takes it).
   */
  private readonly streamSends = new Set<number>();
  /** Stream messages started while serverStreams of ours were open there, by sid: their SOPEN waits, in order. */
  private readonly streamWaiting = new Map<number, { id: number; handle: number; writer: StreamWriter }>();
  /** Bytes of sends kept for a resend (they count toward maxUnsent). */
  private keptBytes = 0;
  /** This client's id towards the server, the same across reconnections (sends are de-duplicated by it). */
  private readonly cid = randomBytes(8).toString("hex");
  /** Set while a broken connection is being re-established: operations wait. */
  private reconnecting = false;
  /** Why fail() gave the connection up: it is not re-established then. */
  private failing: CircuitError | undefined;
  /** When the last reconnection completed, and how many links in a row broke soon after one with nothing heard. */
  private lastResume = Number.NEGATIVE_INFINITY;
  private rebreaks = 0;
  private conn!: FrameConn;

  private constructor(private readonly opts: ConnectOptions) {
    this.closed = new Promise((r) => {
      this.resolveClosed = r;
    });
    this.where = whereOf(opts);
    if (opts.maxUnsentBytes !== undefined) this.maxUnsent = opts.maxUnsentBytes;
  }

  private attach(conn: FrameConn): void {
    this.conn = conn;
    // Counted per connection: sends on this one do not join a promise shared on the last (synced).
    for (const st of this.states) st.group = undefined;
    conn.onFrame = (t, b) => {
      try {
        this.frame(t, b);
      } catch (err) {
        // A server speaking nonsense is not reached again.
        this.failing ??= new ProtocolError(err instanceof Error ? err.message : String(err));
        conn.destroy(err instanceof Error ? err : new ProtocolError(String(err)));
      }
    };
    // A stream's SDATA frames of 8 KiB or more reach its reader piece by piece as they arrive, as
    // views of the bytes read, never copied together first: the daemon passes a big stream on in
    // frames of what each of its reads brought (up to 64 KiB), most of which straddle two of ours.
    conn.passThrough(T.SDATA, (pid, bytes) => this.inStreams.get(pid)?.data(bytes), 8 * 1024);
    conn.onClose = (err) => this.linkClosed(conn, err);
    conn.onDrain = () => this.admit();
  }

  /** Keepalive (link.ts): a server silent for too long is gone, and everything waiting on it fails. */
  private startHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = startKeepalive({
      link: () => this.conn,
      silent: (quiet) => this.fail(new ServerGone(`no answer from ${this.serverId} for ${Math.round(quiet)} ms`)),
      ping: () => {
        if (this.gone) return;
        const id = this.id();
        this.pending.set(id, { resolve: () => {}, reject: () => {} });
        this.conn.send(T.REQ, [id], encode({ op: "ping" } satisfies Request));
      },
    });
  }

  static async open(opts: ConnectOptions): Promise<Connection> {
    const c = new Connection(opts);
    await c.connectLink(opts.signal, opts.timeoutMs ?? 10_000);
    return c;
  }

  /** Opens a socket to the server, attaches it and completes the handshake (link.ts). */
  private connectLink(signal: AbortSignal | undefined, timeoutMs: number): Promise<void> {
    return dialLink(this.opts, signal, timeoutMs, this.cid, {
      attach: (conn) => this.attach(conn),
      handshakeClosed: (err) => {
        this.handshakeError = err;
      },
      awaitHello: (settle) => this.pending.set(0, settle as Pending),
    });
  }

  get isClosed(): boolean {
    return this.gone !== undefined;
  }

  /** Settles once the server has read everything sent before (a ping answered after it). */
  received(): Promise<void> {
    return this.request({ op: "ping" }).then(() => undefined);
  }

  /** A control request; resolves with the server's result. */
  request(req: Request, signal?: AbortSignal): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Behind held-back sends, so that (say) a close issued after them still comes after them.
    if ((this.gate.length > 0 || this.reconnecting) && !this.admitting) {
      return this.gated(() => this.request(req, signal), signal);
    }
    const id = this.id();
    this.conn.send(T.REQ, [id], encode(req));
    return this.wait(id, signal);
  }

  /**
   * Encodes a value, refusing one that would not come back exactly (src/wire/value-check.ts), and
   * checks it against the server's limit.
   */
  encodeValue(v: unknown): Buffer {
    checkValue(v);
    const bytes = encode(v);
    if (bytes.length > this.maxValue) throw tooLarge(bytes.length, this.maxValue);
    return bytes;
  }

  chanState(handle: number, cap: number, names?: readonly string[], durable = false): ChanState {
    let st = this.chans.get(handle);
    if (!st) {
      st = newChanState(handle, cap, names, durable);
      this.chans.set(handle, st);
      this.states.add(st);
    }
    return st;
  }

  /**
   * A channel send of a value. A byte value sent on a credit is encoded straight into the
   * outgoing frame; anything else is encoded first.
   */
  sendValue(st: ChanState, value: unknown, signal?: AbortSignal): Promise<void> {
    if (value instanceof Uint8Array && value.length < KEPT_BY_REFERENCE) {
      const n = value.length;
      const size = binHeadBytes(n) + n;
      if (size > this.maxValue) return Promise.reject(tooLarge(size, this.maxValue));
      // Held back by reference, not copied (a copy would be the unbounded queue the bound exists
      // to prevent): the bytes are read when their turn comes (documented: do not change them
      // before the send completes).
      if (this.mustWait()) return this.gated(() => this.sendValue(st, value, signal), signal);
      if (this.mustHold(st)) {
        if (signal) return this.hold(st, () => this.sendValue(st, value, signal), signal);
        // One object (HeldBin) until its turn, then on credit with the promise it was given
        // (several producers on one full buffer hold nearly every send until a grant).
        return new Promise<void>((resolve, reject) => {
          st.held.push(new HeldBin(this, st, value, resolve, reject));
          this.sayIfWaiting(st);
        });
      }
      if (st.credits > 0 && st.blocking === 0 && !this.gone && !signal?.aborted) {
        return this.synced(st, this.creditedBin(st, value));
      }
    }
    if (value instanceof Uint8Array) {
      // Big bytes leave from the caller's buffer, after a header holding their bin head: no copy
      // (the caller must not change them before the send completes, as for small ones above).
      const size = binHeadBytes(value.length) + value.length;
      if (size > this.maxValue) return Promise.reject(tooLarge(size, this.maxValue));
      return this.send(st, value, signal, true);
    }
    if (this.mustWait()) {
      return this.gated(() => this.sendValue(st, value, signal), signal);
    }
    let bytes: Buffer;
    try {
      bytes = this.encodeValue(value);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.send(st, bytes, signal);
  }

  /**
   * A small byte value sent on a credit: encoded straight into the outgoing batch and the kept
   * copy, with no buffer of its own; it completes with the CACK that acknowledges it. Returns its
   * sequence number.
   */
  private creditedBin(st: ChanState, value: Uint8Array): number {
    const seq = (st.seq = (st.seq + 1) >>> 0 || 1);
    st.credits--;
    this.conn.batchBin(T.CSEND, st.handle, value, seq);
    this.keptBytes += keepCredited(st, seq, value, true);
    return seq;
  }

  /**
   * A HeldBin's turn: on credit there and then if it may, else a send again (held again if it must).
   * @internal
   */
  runHeldBin(st: ChanState, value: Uint8Array, resolve: () => void, reject: (err: unknown) => void): void {
    if (st.credits > 0 && st.blocking === 0 && !this.gone && !this.mustWait()) {
      st.completions.push(completion(this.creditedBin(st, value), resolve, reject));
    } else this.sendValue(st, value).then(resolve, reject);
  }

  /** True if a send on `st` must wait in the client behind one of ours that waits for room (ChanState.held). */
  private mustHold(st: ChanState): boolean {
    return st.cap > 0 && !st.releasing && (st.blocking > 0 || st.held.length > 0 || this.waitsForGrant(st));
  }

  /** Holds a send on `st` back (mustHold), telling the server if it waits for credit. */
  private hold(st: ChanState, op: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    const p = this.gated(op, signal, st.held, () => {
      // Cancelled: if nothing waits for credit any more, the server should not count us waiting.
      if (st.held.length === 0 && st.waitSaid) this.sayWait(st, false);
    });
    this.sayIfWaiting(st);
    return p;
  }

  /** Tells the server (CWAIT 1, once per grant) if a send of ours waits here for its next GRANT. */
  private sayIfWaiting(st: ChanState): void {
    if (st.held.length > 0 && !st.waitSaid && this.waitsForGrant(st)) this.sayWait(st, true);
  }

  private sayWait(st: ChanState, waits: boolean): void {
    st.waitSaid = waits;
    if (this.grantAsk) this.conn.send(T.CWAIT, [st.handle, waits ? 1 : 0, Math.min(st.cap, MAX_WANT)]);
    else this.conn.send(T.CWAIT, [st.handle, waits ? 1 : 0]);
  }

  /**
   * True while the channel's sends wait here for the server's next GRANT: we are a credit holder
   * out of credit (the buffer is full), and the server keeps us one until it revokes us, so the
   * slots freed next come to us without a send that may block (which would take every sender's
   * credits back, round trips each). Or we hold no credit and ask for it (ChanState.asking): with
   * several producers on a full buffer, each would otherwise keep one send that may block in
   * flight, and keep the others from credit (a sender waiting at the channel gets every holder
   * revoked).
   */
  private waitsForGrant(st: ChanState): boolean {
    return (
      (st.holding || (st.asking && this.grantAsk)) &&
      st.credits === 0 &&
      st.blocking === 0 &&
      this.grantWait &&
      !this.gone
    );
  }

  /**
   * A channel send of already-encoded bytes (with `bin`: of bytes to be sent as a MessagePack bin,
   * from their own buffer).
   */
  send(st: ChanState, bytes: Uint8Array, signal?: AbortSignal, bin = false): Promise<void> {
    if (this.gone) return Promise.reject(this.gone);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.mustWait()) {
      return this.gated(() => this.send(st, bytes, signal, bin), signal);
    }
    if (this.mustHold(st)) return this.hold(st, () => this.send(st, bytes, signal, bin), signal);
    if (
      !(st.credits > 0 && st.blocking === 0) &&
      ((this.sendQueue.length > 0 && !this.admittingSends) || this.blockingOut >= this.serverPending)
    ) {
      return this.queueBlocking(st, () => this.send(st, bytes, signal, bin), signal);
    }
    const seq = (st.seq = (st.seq + 1) >>> 0 || 1);
    if (st.credits > 0 && st.blocking === 0) {
      st.credits--;
      if (bin) this.conn.batchBin(T.CSEND, st.handle, bytes, seq);
      else this.conn.batch(T.CSEND, st.handle, bytes, seq);
      this.keptBytes += keepCredited(st, seq, bytes, bin);
      // A credited send completes when the server acknowledges it (CACK: the value is in the
      // channel; into a durable channel, synced): one round trip later, but with no wait of its
      // own, the buffer slot being reserved by the credit. Not as soon as its bytes have left this
      // process: a process that exits (or is killed) while bytes from the server wait unread makes
      // the kernel reset the connection and drop what it had accepted and not sent yet. Its copy
      // stays here until then, to be sent again should the connection break before.
      return this.synced(st, seq);
    }
    const id = this.id();
    st.blocking++;
    this.blockingOut++;
    // The server knows our want now: without credit, later sends ask for it.
    st.asking = true;
    const kept = keep(st, seq, bytes as Buffer, id, bin);
    this.keptBytes += bytes.length;
    this.sendFrame(id, st.handle, st.cap, seq, bytes, bin);
    // After a reconnection the send goes again under another request id (kept.id).
    return this.wait(id, signal, () => this.conn.send(T.CANCEL, [kept.id])).then(
      () => {
        this.answered(st, kept);
      },
      (err) => {
        this.answered(st, kept);
        throw err;
      },
    );
  }

  /** A SEND frame: a send that may block, asking for credits up to the channel's capacity. */
  private sendFrame(id: number, handle: number, cap: number, seq: number, bytes: Uint8Array, bin = false): void {
    if (bin) this.conn.sendBin(T.SEND, [id, handle, Math.min(cap, MAX_WANT), seq], bytes);
    else this.conn.send(T.SEND, [id, handle, Math.min(cap, MAX_WANT), seq], bytes);
  }

  /** A blocking send of ours was answered: it no longer waits at the server. */
  private answered(st: ChanState, kept: Kept): void {
    st.blocking--;
    this.blockingOut--;
    this.forget(st, kept);
    this.unhold(st);
    this.admitSends();
    this.admitStreams();
  }

  /**
   * Holds back a send that would block while serverPending of ours already wait at the server
   * (more would be a protocol error there): it goes, in issue order, once one of them is answered.
   * Until then it counts as the channel's blocking send, so later sends on the channel wait
   * behind it as they would behind one at the server.
   */
  private queueBlocking(st: ChanState, op: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    st.blocking++;
    const go = () => {
      st.blocking--;
      const was = st.releasing;
      // Ahead of the sends held behind it on this channel.
      st.releasing = true;
      try {
        return op();
      } finally {
        st.releasing = was;
        this.unhold(st);
      }
    };
    return this.gated(go, signal, this.sendQueue, () => {
      st.blocking--;
      this.unhold(st);
    });
  }

  /** Lets held-back blocking sends go, in order, while fewer than serverPending of ours wait at the server. */
  private admitSends(): void {
    if (this.admittingSends) return;
    this.admittingSends = true;
    try {
      while (
        this.resends.length > 0 &&
        !this.gone &&
        !this.reconnecting &&
        this.blockingOut - this.resends.length < this.serverPending
      ) {
        (this.resends.shift() as () => void)();
      }
      while (this.sendQueue.length > 0 && (this.gone || this.blockingOut < this.serverPending)) {
        const next = this.sendQueue.shift() as Gated;
        if (this.gone) next.reject(this.gone);
        else next.run();
      }
    } finally {
      this.admittingSends = false;
    }
  }

  /** Runs `op` once the unsent bytes are under the bound and everything held back before it has gone. */
  private gated<R>(
    op: () => Promise<R>,
    signal?: AbortSignal,
    queue: Deque<Gated> = this.gate,
    withdrawn?: () => void,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (!signal) {
        queue.push({ run: () => op().then(resolve, reject), reject });
        return;
      }
      const entry: Gated = {
        run: () => {
          signal.removeEventListener("abort", onAbort);
          op().then(resolve, reject);
        },
        reject: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      // Held back, nothing was sent: an abort withdraws it without a trace.
      const onAbort = () => {
        if (queue.remove(entry)) withdrawn?.();
        reject(signal.reason);
        this.admit();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      queue.push(entry);
    });
  }

  /** Lets a channel's held sends go, in order, while none of ours waits at the server. */
  private unhold(st: ChanState): void {
    if (st.releasing) return;
    st.releasing = true;
    try {
      while (st.held.length > 0 && st.blocking === 0 && !this.waitsForGrant(st)) {
        const next = st.held.shift() as Gated;
        if (this.gone) next.reject(this.gone);
        else next.run();
      }
    } finally {
      st.releasing = false;
    }
    this.sayIfWaiting(st);
  }

  /** True if a send must be held back: the bound is reached, others wait before it, or the link is being re-established. */
  private mustWait(): boolean {
    return (
      !this.admitting &&
      (this.reconnecting || this.gate.length > 0 || this.conn.unsent + this.keptBytes >= this.maxUnsent)
    );
  }

  /**
   * Settles when the server acknowledges credited send `seq`, just queued (CACK; durable: synced),
   * or fails it (CNAK). Credited sends on a channel that leave in one write share one promise (and
   * one Completion): the CACK that acknowledges the last of them comes once every one is stored (an
   * object and a promise less a value; Chan.send says so). A send joins the group of the send
   * before it while both wait in the connection's writer (no write since); one that has gone out
   * already (a big value, written at once; a send that filled the writer) starts none. Not on a
   * durable channel, whose CNAK fails one batch frame: a send there has its own outcome.
   */
  private synced(st: ChanState, seq: number): Promise<void> {
    const g = st.group;
    if (g !== undefined && g.gen === this.conn.writes && st.completions.peekLast() === g) {
      g.seq = seq;
      return g.promise as Promise<void>;
    }
    let c!: Completion;
    const promise = new Promise<void>((resolve, reject) => {
      c = completion(seq, resolve, reject);
    });
    st.completions.push(c);
    if (!st.durable && this.conn.queuing) {
      c.promise = promise;
      c.gen = this.conn.writes;
      st.group = c;
    } else st.group = undefined;
    return promise;
  }

  /**
   * The credited sends through `through` are acknowledged (or failed with `err`; omitted: all of
   * them). A shared promise settles once its last send is acknowledged, or when any of its sends fails.
   */
  private complete(st: ChanState, through?: number, err?: CircuitError): void {
    for (let c = st.completions.peek(); c; c = st.completions.peek()) {
      if (through !== undefined && !seqAtMost(err ? c.first : c.seq, through)) break;
      st.completions.shift();
      if (c === st.group) st.group = undefined;
      if (err) c.reject(err);
      else c.resolve();
    }
  }

  /**
   * The server let go of a scrubbed channel's handle (after every send on it was answered): so do
   * we, and a reconnection will not try to open it again.
   */
  private released(handle: number): void {
    const st = this.chans.get(handle);
    if (!st) return;
    this.chans.delete(handle);
    this.states.delete(st);
    for (const k of st.kept.drain()) this.keptBytes -= keptSize(k);
    st.run = undefined;
    // Later sends through a Chan that kept this state go as sends that may block, which the
    // server fails (ChannelAborted): nothing would answer a CWAIT on a released handle.
    st.credits = 0;
    st.holding = false;
    st.asking = false;
    const err = new ChannelAborted("the channel was scrubbed");
    for (const h of st.held.drain()) h.reject(err);
    this.complete(st, undefined, err);
  }

  private forget(st: ChanState, k: Kept): void {
    // Answered in the order sent, as a rule: k is at the head, and goes as a shift would.
    if (!st.kept.remove(k)) return;
    this.keptBytes -= keptSize(k);
    this.admit();
  }

  /** Lets held-back operations go, in order, while the unsent bytes stay under the bound. */
  private admit(): void {
    const g = this.gate;
    if (this.admitting) return;
    this.admitting = true;
    try {
      while (
        g.length > 0 &&
        (this.gone || (!this.reconnecting && this.conn.unsent + this.keptBytes < this.maxUnsent))
      ) {
        const next = g.shift() as Gated;
        if (this.gone) next.reject(this.gone);
        else next.run();
      }
    } finally {
      this.admitting = false;
    }
  }

  /** Opens a receiver with n credits; returns its id. */
  openRecv(handle: number, n: number, sink: RecvSink): number {
    const rid = this.id();
    if (this.gone) {
      const err = this.gone;
      queueMicrotask(() => sink.end(err));
      return rid;
    }
    this.sinks.set(rid, sink);
    const st = this.chans.get(handle);
    if (st) this.recvOn.set(rid, st);
    // The server takes serverPending receivers from one connection at a time: past that, this one
    // opens there once one of ours has ended, in the order they were opened here.
    if (this.recvWaiting.size > 0 || this.sinks.size - 1 - this.recvWaiting.size >= this.serverPending) {
      this.recvWaiting.set(rid, { handle, n });
    } else this.conn.send(T.RECV, [rid, handle, 0, n]);
    return rid;
  }

  /** Opens waiting receivers, in order, while fewer than serverPending of ours are open at the server. */
  private admitRecvs(): void {
    for (const [rid, w] of this.recvWaiting) {
      if (this.gone || this.reconnecting || this.sinks.size - this.recvWaiting.size >= this.serverPending) return;
      this.recvWaiting.delete(rid);
      this.conn.send(T.RECV, [rid, this.recvOn.get(rid)?.handle ?? w.handle, 0, w.n]);
    }
  }

  /** Acknowledges `ack` consumed values of rid and adds n credits. */
  moreRecv(rid: number, handle: number, ack: number, n: number, flush: Flush): void {
    if (!this.sinks.has(rid)) return;
    const waiting = this.recvWaiting.get(rid);
    if (waiting) {
      // Not open at the server yet: it will open with these credits too.
      waiting.n += n;
      return;
    }
    this.conn.send(T.RECV, [rid, handle, ack, n]);
    // A consumer working through its prefetched values runs on microtasks and does not reach the
    // end-of-turn flush until it runs dry: credit it gives while its loops still have much to go
    // through leaves now, to keep the pipe full. One that has run dry lets the microtasks already
    // queued run first (soon): the other receive loops that the same read woke hand their credit
    // back meanwhile, and a program iterating many channels returns them all in one write, not in
    // one write each. Later leaves it to the next of those writes, or the turn's end.
    if (flush === "now") this.conn.flush();
    else if (flush === "soon") this.conn.flushAfterMicrotasks();
  }

  /** Ends receiver rid: `ack` values were consumed; the rest go back to the channel. */
  closeRecv(rid: number, ack: number): void {
    this.sinks.delete(rid);
    this.recvOn.delete(rid);
    // One still waiting here was never opened there: nothing to close.
    if (this.recvWaiting.delete(rid)) return;
    if (!this.gone) this.conn.send(T.RCLOSE, [rid, ack, 1]);
    this.admitRecvs();
  }

  /** Like closeRecv, but resolves once the server has put the unconsumed values back. */
  closeRecvAndWait(rid: number, ack: number): Promise<void> {
    if (this.gone) return Promise.resolve();
    if (this.recvWaiting.delete(rid)) {
      this.sinks.delete(rid);
      this.recvOn.delete(rid);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // Values still in flight for rid are discarded here: the server requeues them.
      this.sinks.set(rid, { val: () => {}, stream: (r) => r.destroy(), end: () => resolve() });
      this.conn.send(T.RCLOSE, [rid, ack, 0]);
      void this.closed.then(() => resolve());
    });
  }

  /** Starts a stream message on a channel. */
  sendStream(handle: number, signal?: AbortSignal): { writer: StreamWriter; sent: Promise<void> } {
    const sid = this.id();
    const id = this.id();
    const writer = new StreamWriter(this, sid);
    if (this.gone) {
      writer.destroy(this.gone);
      return { writer, sent: Promise.reject(this.gone) };
    }
    // The server takes serverStreams of ours at a time, and counts a stream message as a blocked
    // send until it is taken: past either bound, this one opens there once there is room, in the
    // order they were started (its bytes wait for credit until then).
    if (this.streamWaiting.size > 0 || !this.roomForStream()) this.streamWaiting.set(sid, { id, handle, writer });
    else this.openStreamSend(id, handle, sid, writer);
    const cancel = () => {
      // Not opened there yet: withdrawn here, and nothing happened.
      if (this.streamWaiting.delete(sid)) this.settle(id, new CircuitError("Cancelled", "cancelled"));
      else this.conn.send(T.CANCEL, [id]);
    };
    const taken = this.wait(id, signal, cancel).then(
      () => {
        this.streamSendAnswered(id);
      },
      (err) => {
        this.streamSendAnswered(id);
        writer.destroy(err);
        throw err;
      },
    );
    // Sent once the message is in the channel (or with its receiver) and the server has all of
    // it, end marker included.
    const sent = Promise.all([taken, finished(writer)]).then(() => undefined);
    return { writer, sent };
  }

  /**
   * A byte stream to the server that a request opens (process stdin, a file upload) rather than a
   * channel send: the request names `sid`; bytes leave as the server grants credit.
   */
  openStream(): { sid: number; writer: StreamWriter } {
    const sid = this.id();
    const writer = new StreamWriter(this, sid);
    if (this.gone) writer.destroy(this.gone);
    else this.outStreams.set(sid, writer);
    return { writer, sid };
  }

  /**
   * A receiver id for a byte stream the server attaches (SATTACH) in answer to a request of ours
   * (process output, a file read) rather than a channel message. `closeRecv(rid, 0)` if the request
   * fails.
   */
  expectStream(sink: RecvSink): number {
    const rid = this.id();
    if (!this.gone) {
      this.sinks.set(rid, {
        val: () => {},
        stream: (r) => {
          this.sinks.delete(rid);
          sink.stream(r);
        },
        end: (err) => sink.end(err),
      });
    }
    return rid;
  }

  /**
   * Registers a selector's cases on this server. The server takes serverPending selects of ours at
   * a time: past that, this one registers once one of ours there ends, in order; with `once` (a
   * select with a default, which never waits) its cases here count as not ready instead.
   */
  openSelect(sel: number, poll: boolean, cases: unknown[], sink: SelectSink, once = false): void {
    if (this.gone) {
      const err = this.gone;
      queueMicrotask(() => sink.gone(err));
      return;
    }
    if (this.reconnecting || this.selectWaiting.size > 0 || this.selectors.size >= this.serverPending) {
      if (once && !this.reconnecting) queueMicrotask(() => sink.polled());
      else this.selectWaiting.set(sel, { poll, cases, sink });
      return;
    }
    this.registerSelect(sel, poll, cases, sink);
  }

  private registerSelect(sel: number, poll: boolean, cases: unknown[], sink: SelectSink): void {
    this.selectors.set(sel, sink);
    this.conn.send(T.SELECT, [Math.floor(sel / 2 ** 32), sel >>> 0, poll ? 1 : 0], encode({ cases }));
  }

  /** Registers waiting selects, in order, while fewer than serverPending of ours are open at the server. */
  private admitSelects(): void {
    for (const [sel, w] of this.selectWaiting) {
      if (this.gone || this.reconnecting || this.selectors.size >= this.serverPending) return;
      this.selectWaiting.delete(sel);
      this.registerSelect(sel, w.poll, w.cases, w.sink);
    }
  }

  /** Commits case idx, or releases every case here (ALL_CASES); nothing for a select not registered here. */
  decide(sel: number, idx: number): void {
    if (!this.gone && this.selectors.has(sel)) this.conn.send(T.DECIDE, [Math.floor(sel / 2 ** 32), sel >>> 0, idx]);
  }

  closeSelect(sel: number): void {
    if (this.selectWaiting.delete(sel)) return;
    if (this.selectors.delete(sel)) this.admitSelects();
  }

  /** A reader for a stream message the server starts sending under pipe id `pid`. */
  streamReader(pid: number): Readable {
    const reader = new StreamReader(this, pid);
    this.inStreams.set(pid, reader);
    return reader;
  }

  /** Frame output for stream writers and readers. */
  frameOut(type: number, fields: number[], t?: Uint8Array): void {
    if (!this.gone) this.conn.send(type, fields, t);
  }

  forgetStream(sid: number): void {
    const waiting = this.streamWaiting.get(sid);
    if (waiting) {
      // Broken off before it opened at the server.
      this.streamWaiting.delete(sid);
      this.settle(waiting.id, new StreamBroken("sender destroyed the stream"));
      return;
    }
    this.outStreams.delete(sid);
    this.admitStreams();
  }

  /** Whether the server takes one more stream message of ours now (streams open, and sends pending). */
  private roomForStream(): boolean {
    return this.outStreams.size < this.serverStreams && this.blockingOut < this.serverPending;
  }

  private openStreamSend(id: number, handle: number, sid: number, writer: StreamWriter): void {
    this.outStreams.set(sid, writer);
    this.streamSends.add(id);
    this.blockingOut++;
    this.conn.send(T.SOPEN, [id, handle, sid]);
  }

  /** A stream message's send was answered (taken, failed or withdrawn): it no longer waits at the server. */
  private streamSendAnswered(id: number): void {
    if (!this.streamSends.delete(id)) return;
    this.blockingOut--;
    this.admitSends();
    this.admitStreams();
  }

  /** Opens waiting stream messages, in order, while the server has room for them. */
  private admitStreams(): void {
    for (const [sid, w] of this.streamWaiting) {
      if (this.gone || this.reconnecting || !this.roomForStream()) return;
      this.streamWaiting.delete(sid);
      this.openStreamSend(w.id, w.handle, sid, w.writer);
    }
  }

  forgetReader(pid: number): void {
    this.inStreams.delete(pid);
  }

  /** Ends the connection at once: everything waiting on it fails with `err`. */
  fail(err: CircuitError): void {
    if (this.gone) return;
    this.failing = err;
    if (this.reconnecting) this.teardown(err);
    else this.conn.destroy(err);
  }

  /**
   * Closes gracefully: stream writers already ended get up to CLOSE_GRACE_MS to send the rest of
   * their message; writers not ended are broken off (their receivers see StreamBroken).
   */
  async close(): Promise<void> {
    if (!this.gone && !this.closing) {
      this.closing = true;
      const ending = [...this.outStreams.values(), ...[...this.streamWaiting.values()].map((w) => w.writer)].filter(
        (w) => w.writableEnded && !w.writableFinished,
      );
      if (ending.length > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled(ending.map((w) => finished(w))),
          new Promise((r) => {
            timer = setTimeout(r, CLOSE_GRACE_MS);
          }),
        ]);
        clearTimeout(timer);
      }
      // On purpose: the server need not keep our sends' de-duplication records.
      if (!this.reconnecting) this.conn.send(T.BYE, []);
      if (this.reconnecting) this.teardown();
      else this.conn.end();
    }
    await this.closed;
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xfffffff0 ? 1 : this.nextId + 1;
    return id;
  }

  private wait(id: number, signal?: AbortSignal, cancel?: () => void): Promise<never> {
    return new Promise((resolve, reject) => {
      if (!signal) {
        this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        return;
      }
      const onAbort = () => {
        if (cancel) {
          // The op may already have completed on the server; its answer decides.
          cancel();
        } else {
          this.pending.delete(id);
          reject(signal.reason);
        }
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        resolve: (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v as never);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e.code === "Cancelled" ? signal.reason : e);
        },
      });
    });
  }

  private settle(id: number, err: CircuitError | undefined, v?: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (err) p.reject(err);
    else p.resolve(v);
  }

  private frame(type: number, body: Buffer): void {
    switch (type) {
      case T.RES: {
        const t = tail(body, 1);
        this.settle(u32(body, 0), undefined, t.length > 0 ? decode(t) : undefined);
        return;
      }
      case T.ERR: {
        const id = u32(body, 0);
        const err = fromWire(decode(tail(body, 1)));
        if (id === 0 && !this.pending.has(0)) {
          // The server ends the connection on purpose, with a reason: no reconnecting.
          this.failing = err;
          this.conn.destroy(err);
          return;
        }
        this.settle(id, err);
        return;
      }
      case T.HELLO: {
        const h = decode(body) as ServerHello;
        if (h.v !== PROTOCOL_VERSION) throw new ProtocolError(`server speaks protocol ${h.v}`);
        this.serverId = h.id;
        this.url = h.url;
        this.maxValue = h.maxValue;
        this.serverPending = bound(h.pending, DEFAULT_SERVER_PENDING);
        this.serverStreams = bound(h.streams, DEFAULT_SERVER_STREAMS);
        this.creditBound = bound(h.credits, DEFAULT_SERVER_CREDITS);
        this.selectCaseBound = bound(h.selectCases, DEFAULT_SERVER_SELECT_CASES);
        this.grantWait = h.grantWait === true;
        this.grantAsk = this.grantWait && h.grantAsk === true;
        this.handshakeError = undefined;
        this.startHeartbeat();
        this.settle(0, undefined);
        return;
      }
      case T.PUSH: {
        const m = decode(body) as Push;
        if (m.ev === "released") this.released(m.handle);
        else this.onPush(m);
        return;
      }
      case T.TICK:
        return; // its arrival is the point (FrameConn.lastInput)
      case T.CACK: {
        const st = this.chans.get(u32(body, 0));
        if (!st) return;
        const through = u32(body, 1);
        const freed = ackThrough(st, through);
        this.keptBytes -= freed;
        if (freed > 0) this.admit();
        this.complete(st, through);
        return;
      }
      case T.CNAK: {
        // A durable channel could not store these credited sends (StorageFull): they failed.
        const st = this.chans.get(u32(body, 0));
        if (!st) return;
        const through = u32(body, 1);
        const err = fromWire(decode(tail(body, 2)));
        const freed = ackThrough(st, through);
        this.keptBytes -= freed;
        if (freed > 0) this.admit();
        this.complete(st, through, err);
        return;
      }
      case T.GRANT: {
        const st = this.chans.get(u32(body, 0));
        if (!st) return;
        st.credits += u32(body, 1);
        st.holding = true;
        st.waitSaid = false;
        this.unhold(st);
        return;
      }
      case T.REVOKE: {
        const h = u32(body, 0);
        const st = this.chans.get(h);
        this.conn.send(T.RELEASE, [h]);
        if (!st) return;
        st.credits = 0;
        // Our credits taken back: ask for more, waiting our turn. Revoked while holding none: the
        // server refused our asking (the channel is closing), the next send goes as one that may block.
        st.asking = st.holding;
        st.holding = false;
        st.waitSaid = false;
        // Sends waiting for a grant go on as sends that may block, after the RELEASE.
        this.unhold(st);
        return;
      }
      case T.VAL: {
        // Each value goes on as a range of the frame (decoded where used, with no copy before).
        const rid = u32(body, 0);
        forEachEntry(body, 1, (start, end) => this.sinks.get(rid)?.val(body, start, end));
        return;
      }
      case T.REND: {
        const rid = u32(body, 0);
        const sink = this.sinks.get(rid);
        if (!sink) return;
        this.sinks.delete(rid);
        const t = tail(body, 1);
        sink.end(t.length > 0 ? fromWire(decode(t)) : undefined);
        this.admitRecvs();
        return;
      }
      case T.SATTACH: {
        const rid = u32(body, 0);
        const pid = u32(body, 1);
        const reader = new StreamReader(this, pid);
        this.inStreams.set(pid, reader);
        const sink = this.sinks.get(rid);
        if (sink) sink.stream(reader);
        else reader.destroy();
        return;
      }
      case T.SDATA:
        this.inStreams.get(u32(body, 0))?.data(tail(body, 1));
        return;
      case T.SFIN: {
        const pid = u32(body, 0);
        this.inStreams.get(pid)?.push(null);
        this.inStreams.delete(pid);
        return;
      }
      case T.SABORT: {
        const pid = u32(body, 0);
        const err = fromWire(decode(tail(body, 1)));
        this.inStreams.get(pid)?.destroy(new StreamBroken(err.message));
        this.inStreams.delete(pid);
        return;
      }
      case T.SCREDIT:
        this.outStreams.get(u32(body, 0))?.credit(u32(body, 1));
        return;
      case T.SDROP: {
        const sid = u32(body, 0);
        const err = fromWire(decode(tail(body, 1)));
        this.outStreams.get(sid)?.destroy(new StreamBroken(err.message));
        this.outStreams.delete(sid);
        this.admitStreams();
        return;
      }
      case T.OFFER:
      case T.WITHDRAW:
      case T.DONE:
      case T.SETTLED:
      case T.POLLED: {
        const sink = this.selectors.get(u32(body, 0) * 2 ** 32 + u32(body, 1));
        if (!sink) return;
        if (type === T.POLLED) sink.polled();
        else if (type === T.WITHDRAW) sink.withdraw(u32(body, 2));
        else if (type === T.OFFER) sink.offer(u32(body, 2), u32(body, 3), tail(body, 4));
        else if (type === T.DONE) sink.done(u32(body, 2), u32(body, 3), u32(body, 4), tail(body, 5));
        else sink.settled(u32(body, 2), u32(body, 3), u32(body, 4), tail(body, 5));
        return;
      }
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)} from server`);
    }
  }

  /** A link ended: re-establish it if the server may still be there, else give everything up. */
  private linkClosed(conn: FrameConn, cause?: Error): void {
    if (conn !== this.conn || this.gone) return;
    if (this.reconnecting) {
      // An attempt to reconnect failed, in its handshake or while carrying things over.
      const err = this.handshakeError ?? new ServerGone(`cannot reach ${this.where}`, { cause });
      for (const id of [0, ...this.resumeIds]) {
        const p = this.pending.get(id);
        this.pending.delete(id);
        p?.reject(err);
      }
      return;
    }
    if (this.closing || this.failing || !this.serverId) return this.teardown(this.failing ?? cause);
    // A link that breaks again and again right after being re-established, each time before the
    // server sent anything on it, is given up. One that lasted 5 s or brought answers was working,
    // and is re-established however often it breaks (a flapping network).
    const now = monotonicMs();
    const silentBreak = now - this.lastResume < RECONNECT_MS && conn.lastInput <= this.lastResume;
    this.rebreaks = silentBreak ? this.rebreaks + 1 : 0;
    // (A caller who asked to ride through restarts expects breaks: only each outage is bounded.)
    if (this.rebreaks >= (this.opts.reconnectMs !== undefined ? 1000 : 5)) return this.teardown(cause);
    void this.reconnect(cause);
  }

  /**
   * Reaches the same server again and carries over what can be: every send it has not
   * acknowledged goes again with its sequence number (stored once), and receivers reopen (the old
   * session put their unacknowledged values back at the head of the channel). Requests whose
   * answer was lost fail with ServerGone (their outcome is unknown); streams and selects in
   * progress fail too.
   */
  private async reconnect(cause?: Error): Promise<void> {
    this.reconnecting = true;
    clearInterval(this.heartbeat);
    const lost = new ServerGone(
      `lost connection to ${this.serverId}${cause ? `: ${cause.message}` : ""}; the outcome is unknown`,
      { cause },
    );
    const keepIds = new Set<number>();
    for (const st of this.chans.values()) for (const k of st.kept) if (k.id !== 0) keepIds.add(k.id);
    for (const [id, p] of this.pending) {
      if (!keepIds.has(id)) {
        this.pending.delete(id);
        p.reject(lost);
      }
    }
    for (const [rid, s] of this.sinks) {
      if (!s.resume) {
        this.sinks.delete(rid);
        this.recvOn.delete(rid);
        this.recvWaiting.delete(rid);
        s.end(lost);
      }
    }
    for (const w of this.outStreams.values()) w.destroy(lost);
    this.outStreams.clear();
    for (const w of this.streamWaiting.values()) w.writer.destroy(lost);
    for (const r of this.inStreams.values()) r.destroy(lost);
    this.inStreams.clear();
    for (const sel of this.selectors.values()) sel.gone(lost);
    this.selectors.clear();
    const id = this.serverId;
    const patient = this.opts.reconnectMs !== undefined;
    const deadline = monotonicMs() + (this.opts.reconnectMs ?? RECONNECT_MS);
    for (;;) {
      if (this.failing || this.closing) return this.teardown(this.failing ?? cause);
      try {
        await this.connectLink(undefined, Math.max(100, deadline - monotonicMs()));
        if (this.serverId !== id) {
          return this.teardown(new ServerGone(`${this.where} now serves ${this.serverId}`));
        }
        // The new link may break too while we carry things over: then we start again.
        await this.resume();
        break;
      } catch (err) {
        // Nothing listens there any more: the server is gone. (Any other failure, even one that
        // looks like a refused key, may be the network still breaking: the key worked before.)
        const code = ((err as { cause?: NodeJS.ErrnoException }).cause ?? (err as NodeJS.ErrnoException)).code;
        if ((code === "ECONNREFUSED" && !patient) || monotonicMs() >= deadline) return this.teardown(cause);
        await new Promise((r) => setTimeout(r, RECONNECT_EVERY_MS));
      }
    }
    this.reconnecting = false;
    this.lastResume = monotonicMs();
    this.admitRecvs();
    this.admitSelects();
    this.admitSends();
    this.admit();
    // Sends that waited for a grant on the old link go on (the new one starts with no credit).
    for (const st of this.states) this.unhold(st);
  }

  /** Carries channels, sends and receivers over to the new link; idempotent if a link breaks midway. */
  private async resume(): Promise<void> {
    this.chans.clear();
    // Rebuilt below from the kept copies, which these were still among.
    this.resends.drain();
    for (const st of [...this.states]) {
      const r = st.names ? await this.openAgain(st.names) : null;
      const { out: kept, delta } = unrun(st.kept.drain());
      this.keptBytes += delta;
      st.run = undefined;
      st.slabUsed = 0;
      if (r?.kind !== "chan" || typeof r.handle !== "number") {
        // The channel is gone (scrubbed meanwhile), or we cannot name it: its sends cannot go.
        const err = new ChannelAborted("the channel is gone");
        this.states.delete(st);
        for (const k of kept) {
          this.keptBytes -= keptSize(k);
          this.settle(k.id, err);
        }
        for (const h of st.held.drain()) h.reject(err);
        this.complete(st, undefined, err);
        continue;
      }
      st.handle = r.handle;
      st.credits = 0;
      st.holding = false;
      st.waitSaid = false;
      this.chans.set(st.handle, st);
      for (const k of kept) {
        // Everything not acknowledged goes again, in order, as sends that may block; the server
        // stores each sequence number once.
        const id = this.id();
        const p = this.pending.get(k.id);
        this.pending.delete(k.id);
        if (k.id === 0) {
          st.blocking++;
          this.blockingOut++;
        }
        // A credited send completes with its resend's answer.
        this.pending.set(
          id,
          p ?? {
            resolve: () => {
              this.answered(st, k);
              this.complete(st, k.seq);
            },
            reject: (err) => {
              this.answered(st, k);
              this.complete(st, k.seq, err);
            },
          },
        );
        k.id = id;
        st.kept.push(k);
        const handle = st.handle;
        const go = () => this.sendFrame(id, handle, st.cap, k.seq, k.bytes, k.bin);
        // Past the server's bound they wait here, and so does everything after them (in order).
        if (this.resends.length > 0 || this.blockingOut > this.serverPending) this.resends.push(go);
        else go();
      }
    }
    for (const [rid, s] of this.sinks) {
      const st = this.recvOn.get(rid);
      const waiting = this.recvWaiting.get(rid);
      const n = waiting ? 0 : (s.resume?.() ?? 0);
      if (!st || !this.chans.has(st.handle)) {
        this.sinks.delete(rid);
        this.recvOn.delete(rid);
        this.recvWaiting.delete(rid);
        s.end(new ChannelAborted("the channel is gone"));
      } else if (n > 0) this.conn.send(T.RECV, [rid, st.handle, 0, n]);
    }
  }

  /** `open` on the new link, past the gate that holds everyone else back while we reconnect. */
  private async openAgain(names: readonly string[]): Promise<{ kind?: string; handle?: number } | null> {
    const id = this.id();
    this.resumeIds.add(id);
    this.conn.send(T.REQ, [id], encode({ op: "open", path: names } satisfies Request));
    try {
      return (await (this.wait(id) as Promise<unknown>)) as { kind?: string; handle?: number } | null;
    } finally {
      this.resumeIds.delete(id);
    }
  }

  private teardown(cause?: Error): void {
    if (this.gone) return;
    this.reconnecting = false;
    const why = cause ? `: ${(cause as NodeJS.ErrnoException).code ?? cause.message}` : "";
    const err = new ServerGone(
      this.closing
        ? "connection closed"
        : this.serverId
          ? `lost connection to ${this.serverId}${cause ? `: ${cause.message}` : ""}`
          : `cannot reach a circuit server at ${this.where}${why}`,
      { cause },
    );
    this.gone = err;
    clearInterval(this.heartbeat);
    const hs = this.pending.get(0);
    this.pending.delete(0);
    if (hs) hs.reject(this.handshakeError ?? err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const s of this.sinks.values()) s.end(err);
    this.sinks.clear();
    this.recvOn.clear();
    this.recvWaiting.clear();
    for (const w of this.outStreams.values()) w.destroy(err);
    this.outStreams.clear();
    for (const w of this.streamWaiting.values()) w.writer.destroy(err);
    this.streamWaiting.clear();
    for (const r of this.inStreams.values()) r.destroy(err);
    this.inStreams.clear();
    for (const sel of this.selectors.values()) sel.gone(err);
    this.selectors.clear();
    for (const w of this.selectWaiting.values()) w.sink.gone(err);
    this.selectWaiting.clear();
    this.chans.clear();
    for (const st of this.states) {
      for (const h of st.held.drain()) h.reject(err);
      this.complete(st, undefined, err);
    }
    this.states.clear();
    this.keptBytes = 0;
    this.blockingOut = 0;
    this.streamSends.clear();
    this.resends.drain();
    this.admitSends();
    this.admit();
    this.resolveClosed(this.closing ? undefined : err);
  }
}
