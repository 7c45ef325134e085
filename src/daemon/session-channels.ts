// A session's channel data path: the handles its client holds, credited and blocking sends with
// their de-duplication by sequence number, receivers with their credits and unacknowledged values,
// and stream messages sent into a channel. Values stay opaque bytes here.

import { Channel, type CreditHolder, type Receiver, type SendWaiter } from "../element/channel.js";
import {
  ChannelAborted,
  type CircuitError,
  NoCapacity,
  NotFound,
  ProtocolError,
  toWire,
  WrongKind,
} from "../errors.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { Deque } from "../util/deque.js";
import { forEachEntry } from "../wire/frame.js";
import { encode, seqAtMost, T, tail, u32 } from "../wire/protocol.js";
import type { Push } from "../wire/requests.js";
import type { DurableChan } from "./durable-chan.js";
import { markerOf } from "./durable-store.js";
import { DurableStreamIn, readStored } from "./durable-stream.js";
import type { ChanElement, ChannelLike, Item } from "./elements.js";
import type { Limits } from "./limits.js";
import type { PacedReceiver, Pacer } from "./pacer.js";
import { Pieces, type Value } from "./pieces.js";
import type { SessionStreams } from "./session-streams.js";
import { StreamPipe } from "./stream-pipe.js";

/**
 * How long a credit holder waits for a grant (CWAIT) while other holders keep slots they do not
 * use, before they are all revoked (Channel.holderStuck): an active sender spends its credits well
 * within it, so the wait is for slots an idle one keeps.
 */
const GRANT_WAIT_MS = 5;

/** A session's credit holding on one channel. */
class Holder implements CreditHolder {
  /** Credits granted and not told to the client yet (tell). */
  private untold = 0;
  /** The client knows it holds credits: told a GRANT since it last released. */
  private holding = false;
  constructor(
    private readonly conn: FrameConn,
    readonly handle: number,
  ) {}
  /**
   * A grant is told at once to a client that waits for it, to one that does not know it holds
   * credits, or when other frames go to it this turn anyway. Otherwise the client still holds
   * credit and is sending: the GRANT goes with the CACK of its next batch (tell), which spares a
   * write of a frame of its own (two producers on a full buffer: over half of the daemon's writes
   * were a lone GRANT or CACK).
   */
  grant(n: number, waited: boolean): void {
    this.untold += n;
    if (waited || !this.holding || this.conn.queuing) this.tell();
  }
  /** Sends the credits granted and not told yet, if any. */
  tell(): void {
    if (this.untold === 0) return;
    this.conn.send(T.GRANT, [this.handle, this.untold]);
    this.untold = 0;
    this.holding = true;
  }
  revoke(): void {
    this.tell();
    this.holding = false;
    this.conn.send(T.REVOKE, [this.handle]);
  }
}

/** Stands in `unacked` for a stream message handed out: acknowledged like a value, never put back. */
const STREAM_TAKEN = Buffer.alloc(0);

/** The value in `pieces` (a frame body's) from byte `from` of the body, `size` bytes long in all. */
function valueIn(pieces: readonly Buffer[], from: number, size: number): Pieces {
  return new Pieces([(pieces[0] as Buffer).subarray(from), ...pieces.slice(1)], size - from);
}

/** `v` in one buffer if `joined`, else as it is. */
function whole(v: Value, joined: boolean): Value {
  return joined && v instanceof Pieces ? v.join() : v;
}

/** Values handed out and not acknowledged, to put back in their channel (without stream messages). */
function takenBack(unacked: Deque<Value>): Value[] {
  return unacked.drain().filter((v) => v !== STREAM_TAKEN);
}

/** A receiver id of this session: its blocked receives and the values handed to it, unacked. */
class SessionReceiver implements Receiver<Item>, PacedReceiver {
  readonly unacked = new Deque<Value>();
  ended = false;
  /** Closed by the client, or its session or channel gone: it takes nothing more. */
  withdrawn = false;
  /** Receives outstanding (credits not yet used), `held` of them kept out of the channel. */
  credits = 0;
  private held = 0;
  constructor(
    private readonly conn: FrameConn,
    private readonly streams: SessionStreams,
    private readonly pacer: Pacer,
    readonly rid: number,
    readonly el: ChannelLike,
  ) {}
  /** n more receives: into the channel, unless the connection is backed up. */
  want(n: number): void {
    if (this.held > 0 || this.conn.backedUp) {
      this.held += n;
      this.pacer.hold(this);
    } else this.el.chan.recv(this, n);
  }
  /** No more for now: its receives in the channel wait here instead (the channel allows re-entry). */
  holdBack(): void {
    if (this.withdrawn || this.ended) return;
    const n = this.el.chan.cancelRecv(this);
    if (n > 0) {
      this.held += n;
      this.pacer.hold(this);
    }
  }

  /** The connection has room again: the receives held back go into the channel. */
  resume(): void {
    const n = this.held;
    this.held = 0;
    if (n > 0 && !this.withdrawn && !this.ended) this.el.chan.recv(this, n);
  }
  /** Takes nothing more: its receives leave the channel and none is held. */
  withdraw(): void {
    this.withdrawn = true;
    this.held = 0;
    this.pacer.forget(this);
    this.el.chan.cancelRecv(this);
  }
  /** The client acknowledged its first n unacknowledged values: a durable channel forgets them. */
  ack(n: number): void {
    const durable = this.el.kind === "chan" ? this.el.durable : undefined;
    for (let i = 0; i < n && this.unacked.length > 0; i++) {
      const v = this.unacked.shift();
      // A durable channel's values are whole buffers (joined before they were stored).
      if (v !== STREAM_TAKEN && Buffer.isBuffer(v)) durable?.ack(v);
    }
  }
  take(v: Item): void {
    this.credits--;
    const durable = this.el.kind === "chan" ? this.el.durable : undefined;
    if (durable && Buffer.isBuffer(v) && markerOf(v)) {
      // A stored stream message: read out of the store; acknowledged like a value.
      this.unacked.push(v);
      this.streams.attach(this.rid, readStored(durable, this.streams.pipeId(), v));
    } else if (Buffer.isBuffer(v)) {
      this.unacked.push(v);
      this.conn.batch(T.VAL, this.rid, v);
      if (this.conn.backedUp) this.pacer.holdAll();
    } else if (v instanceof Pieces) {
      // Written from its pieces, as they arrived: never copied into one buffer here.
      this.unacked.push(v);
      this.conn.batchParts(T.VAL, this.rid, v.parts, v.length);
      if (this.conn.backedUp) this.pacer.holdAll();
    } else {
      // A stream message cannot be taken back once bytes have flowed; it still takes its place
      // among the items the client acknowledges (it counts every item it was handed), so that an
      // acknowledgement covers the values it names and no later one.
      this.unacked.push(STREAM_TAKEN);
      this.streams.attach(this.rid, v);
    }
  }
  end(err: CircuitError): void {
    if (this.ended) return;
    this.ended = true;
    this.conn.send(T.REND, [this.rid], encode(toWire(err)));
  }
}

export class SessionChannels {
  private readonly handles = new Map<number, { el: ChannelLike; holder: Holder }>();
  private readonly handleOf = new Map<ChannelLike, number>();
  /** Handles are never reused: one below this that is not in `handles` was released (scrubbed). */
  private nextHandle = 1;
  /** Stands in for the channel of a released handle: scrubbed, so every op on it fails as it would. */
  private scrubbedEl: ChanElement | undefined;
  private readonly receivers = new Map<number, SessionReceiver>();
  private readonly pendingSends = new Map<number, { el: ChannelLike; w: SendWaiter<Item> }>();
  /** Stream messages being stored into durable channels, by request id (until they enter it). */
  private readonly storing = new Map<number, DurableStreamIn>();
  private readonly pacer: Pacer;

  constructor(
    private readonly conn: FrameConn,
    private readonly streams: SessionStreams,
    private readonly limits: Readonly<Limits>,
    private readonly maxValue: number,
    /** The client's id from HELLO: sends are de-duplicated per cid (PROTOCOL: send sequence numbers). */
    private readonly cid: () => string | undefined,
  ) {
    this.pacer = streams.pacer;
    this.pacer.receivers = () => this.receivers.values();
  }

  /** SEND, CSEND, RELEASE, CWAIT, CANCEL, RECV, RCLOSE and SOPEN. */
  frame(type: number, body: Buffer): void {
    switch (type) {
      case T.SEND:
        this.blockingSend(u32(body, 0), u32(body, 1), u32(body, 2), u32(body, 3), tail(body, 4));
        return;
      case T.CSEND: {
        const values: Value[] = [];
        forEachEntry(body, 2, (start, end) => values.push(body.subarray(start, end)));
        this.creditedSend(u32(body, 0), u32(body, 1), values);
        return;
      }
      case T.RELEASE: {
        const h = this.handles.get(u32(body, 0));
        // A released handle's channel has settled: it holds no credits of ours any more.
        if (h) h.el.chan.release(h.holder);
        else this.el(u32(body, 0));
        return;
      }
      case T.CWAIT: {
        const handle = u32(body, 0);
        const h = this.handles.get(handle);
        // A third field: the want of a client that asks for credit while it holds none (grantAsk).
        const want = body.length >= 12 ? u32(body, 2) : undefined;
        // A released handle's channel has settled: no credit will come. A client that asked (it
        // sent this before it learnt of the release) is refused, so that its send goes as a SEND
        // (which fails with ChannelAborted) rather than wait for ever.
        if (!h) {
          this.el(handle);
          if (want !== undefined && u32(body, 1) !== 0) this.conn.send(T.REVOKE, [handle]);
          return;
        }
        const chan = h.el.chan;
        // Credits granted and not told yet are what it waits for.
        h.holder.tell();
        const waitNo = chan.holderWaits(h.holder, u32(body, 1) !== 0, want);
        // No holder (dropped while it held nothing, or the channel is closing): revoked, its send
        // goes as a SEND.
        if (waitNo === undefined) this.conn.send(T.REVOKE, [handle]);
        else if (waitNo > 0) setTimeout(() => chan.holderStuck(h.holder, waitNo), GRANT_WAIT_MS);
        return;
      }
      case T.CANCEL: {
        const id = u32(body, 0);
        const storing = this.storing.get(id);
        if (storing) {
          this.storing.delete(id);
          this.conn.send(T.ERR, [id], encode({ code: "Cancelled", message: "cancelled" }));
          storing.abort("send cancelled");
          return;
        }
        const p = this.pendingSends.get(id);
        if (p?.el.chan.cancelSend(p.w)) {
          this.pendingSends.delete(id);
          if (p.w.value instanceof StreamPipe) p.w.value.drop("send cancelled");
          else if (p.el.kind === "chan" && Buffer.isBuffer(p.w.value)) p.el.durable?.discardStream(p.w.value);
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
          if (this.receivers.size >= this.limits.pending) throw new ProtocolError("too many receivers");
          r = new SessionReceiver(this.conn, this.streams, this.pacer, rid, el);
          this.receivers.set(rid, r);
        }
        r.ack(ack);
        if (n > 0 && !r.ended) {
          r.credits += n;
          if (r.credits + r.unacked.length > this.limits.credits) {
            throw new ProtocolError(`more than ${this.limits.credits} receives outstanding or unacknowledged`);
          }
          r.want(n);
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
          r.withdraw();
          r.el.chan.requeue(takenBack(r.unacked));
        }
        if (!quiet) this.conn.send(T.REND, [rid]);
        return;
      }
      case T.SOPEN: {
        const id = u32(body, 0);
        const el = this.sendable(id, u32(body, 1));
        if (!el) return;
        const sid = u32(body, 2);
        this.roomForSend();
        if (el.durable) {
          this.storeStream(id, el, sid);
          return;
        }
        const pipe = this.streams.accept(sid);
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
        this.conn.prime(); // as for SEND
        el.chan.send(w);
        return;
      }
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
    }
  }

  /**
   * A big SEND or CSEND frame whose bytes came over several reads (FrameConn.gather), as those
   * pieces: its value stays in them, never copied into one buffer here.
   */
  framePieces(type: number, pieces: Buffer[], size: number): void {
    const head = pieces[0] as Buffer;
    if (type === T.SEND) {
      this.blockingSend(u32(head, 0), u32(head, 1), u32(head, 2), u32(head, 3), valueIn(pieces, 16, size));
      return;
    }
    // A big credited send is a batch of one entry filling the frame; anything else is taken whole.
    if (size < 12 || 12 + head.readUInt32BE(8) !== size) {
      this.frame(type, Buffer.concat(pieces, size));
      return;
    }
    this.creditedSend(u32(head, 0), u32(head, 1), [valueIn(pieces, 12, size)]);
  }

  /** SEND: a send that may block, answered with RES (or ERR) once it has happened. */
  private blockingSend(id: number, handle: number, want: number, seq: number, bytes: Value): void {
    const el = this.sendable(id, handle);
    if (!el) return;
    // A durable channel stores whole buffers.
    const v = whole(this.value(bytes), el.durable !== undefined);
    this.roomForSend();
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
          // In the buffer (capacity 0: with its receiver); complete once synced. Its
          // de-duplication record goes in the same transaction as the value (this same turn).
          this.markStored(el, seq);
          el.durable.whenSent(v as Buffer).then(
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
    // Should the send meet a waiting receiver now, its answer leaves before the value does:
    // the sender (often about to receive the reply) moves on one write sooner.
    this.conn.prime();
    el.chan.send(w);
  }

  /** CSEND: sends on credit, numbered from `first`, acknowledged together with one CACK. */
  private creditedSend(handle: number, first: number, values: Value[]): void {
    const h = this.handles.get(handle);
    if (!h) throw new NotFound("unknown channel handle");
    const durable = h.el.kind === "chan" ? h.el.durable : undefined;
    // Checked in place; a durable channel stores whole buffers.
    for (let i = 0; i < values.length; i++) values[i] = whole(this.value(values[i] as Value), durable !== undefined);
    // The CACK leaves before the values go on to a receiver: a producer keeping a window of sends
    // in flight refills it while this process makes its next write, instead of after it.
    if (!durable) this.conn.prime();
    if (!h.el.chan.sendCreditedMany(h.holder, values)) throw new ProtocolError("credited send without credit");
    const last = (first + values.length - 1) >>> 0;
    if (h.el.kind === "chan") this.markStored(h.el, last);
    // The answer carries the grants not told yet (Holder.grant).
    const answer = (type: number, tail?: Uint8Array) => {
      this.conn.send(type, [handle, last], tail);
      h.holder.tell();
    };
    if (durable) {
      // A credited send into a durable channel completes with its CACK, sent once synced: no
      // round trip beyond the sync. If the store fails, CNAK fails the batch instead.
      durable.whenStoredAll(values as Buffer[]).then(
        () => answer(T.CACK),
        (err) => answer(T.CNAK, encode(toWire(err))),
      );
    } else answer(T.CACK);
  }

  /**
   * SOPEN into a durable channel: the message is stored as it arrives (durable-stream.ts) and,
   * once whole and synced, enters the channel as a send of its marker; answered when that send
   * completes (the marker is stored in the buffer, or for capacity 0 with its receiver).
   */
  private storeStream(id: number, el: ChanElement, sid: number): void {
    const durable = el.durable as DurableChan;
    const pipe = this.streams.accept(sid);
    const s = new DurableStreamIn(durable, pipe, (end) => {
      // Not there any more if the send was cancelled (answered already).
      const live = this.storing.delete(id);
      if ("error" in end) {
        if (live) this.error(id, end.error);
        return;
      }
      const marker = end.marker;
      const w: SendWaiter<Item> = {
        value: marker,
        done: (err) => {
          this.pendingSends.delete(id);
          if (err) {
            durable.discardStream(marker);
            this.error(id, err);
            return;
          }
          durable.whenSent(marker).then(
            () => this.conn.send(T.RES, [id]),
            (e) => {
              durable.discardStream(marker);
              this.error(id, e);
            },
          );
        },
      };
      this.pendingSends.set(id, { el, w });
      el.chan.send(w);
    });
    this.storing.set(id, s);
  }

  /**
   * A send that may wait (SEND, or SOPEN: a stream message is a send until a receiver takes it,
   * however long ago its bytes ended) is one more of this connection's pending operations.
   */
  private roomForSend(): void {
    if (this.pendingSends.size + this.storing.size >= this.limits.pending) {
      throw new ProtocolError("too many pending operations");
    }
  }

  private value(v: Value): Value {
    if (v.length > this.maxValue) throw new ProtocolError(`value of ${v.length} bytes exceeds the limit`);
    return v;
  }

  /** The channel a send may go to; a subscription answers WrongKind. */
  private sendable(id: number, handle: number): ChanElement | undefined {
    const el = this.el(handle);
    if (el.kind === "chan") return el;
    this.error(id, new WrongKind(`${el.kind} subscriptions are receive-only`));
    return undefined;
  }

  /** The channel `handle` names: a scrubbed stand-in if it was released, NotFound if never given. */
  el(handle: number): ChannelLike {
    const h = this.handles.get(handle);
    if (h) return h.el;
    if (handle > 0 && handle < this.nextHandle) return this.scrubbed();
    throw new NotFound("unknown channel handle");
  }

  /** True if `el` is the stand-in el() returns for a released handle. */
  isReleased(el: ChannelLike): boolean {
    return el === this.scrubbedEl;
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
  release(el: ChannelLike): void {
    const h = this.handleOf.get(el);
    if (h === undefined) return;
    this.handleOf.delete(el);
    this.handles.delete(h);
    // Its receivers have ended; values they hold unacked cannot go back into a scrubbed channel.
    for (const [rid, r] of this.receivers) {
      if (r.el !== el) continue;
      this.receivers.delete(rid);
      r.withdraw();
    }
    this.conn.send(T.PUSH, [], encode({ ev: "released", handle: h } satisfies Push));
  }

  /**
   * Throws NoCapacity if `el` (a channel about to be made, when undefined) would need a handle and
   * this connection has as many as --max-channels allows: the open fails, the connection goes on.
   */
  roomFor(el?: ChannelLike): void {
    if ((el === undefined || !this.handleOf.has(el)) && this.handles.size >= this.limits.handles)
      throw new NoCapacity(`more than ${this.limits.handles} open channels on this connection (--max-channels)`);
  }

  /** The client's handle for `el`, given now if it has none (NoCapacity past --max-channels). */
  handleFor(el: ChannelLike): number {
    let h = this.handleOf.get(el);
    if (h === undefined) {
      this.roomFor(el);
      h = this.nextHandle++;
      this.handleOf.set(el, h);
      this.handles.set(h, { el, holder: new Holder(this.conn, h) });
    }
    return h;
  }

  private holderFor(el: ChannelLike): Holder {
    return (this.handles.get(this.handleOf.get(el) as number) as { holder: Holder }).holder;
  }

  private error(id: number, err: unknown): void {
    this.conn.send(T.ERR, [id], encode(toWire(err)));
  }

  /** True if this client's send `seq` on `el` was stored already (a resend after a reconnection). */
  private isStored(el: ChanElement, seq: number): boolean {
    const cid = this.cid();
    if (cid === undefined || seq === 0) return false;
    const stored = el.stored?.get(cid);
    return stored !== undefined && seqAtMost(seq, stored);
  }

  private markStored(el: ChanElement, seq: number): void {
    const cid = this.cid();
    if (cid === undefined || seq === 0) return;
    el.stored ??= new Map();
    el.stored.set(cid, seq);
    el.durable?.storeDedupe(cid, seq);
  }

  /**
   * The connection is gone: withdraw everything it was doing, losing no value. With `bye` (the
   * client said goodbye) its de-duplication records go too.
   */
  cleanup(bye: boolean): void {
    const cid = this.cid();
    if (bye && cid !== undefined) {
      for (const { el } of this.handles.values()) {
        if (el.kind !== "chan") continue;
        el.stored?.delete(cid);
        el.durable?.dropDedupe(cid);
      }
    }
    for (const { el, w } of this.pendingSends.values()) {
      if (!el.chan.cancelSend(w)) continue;
      if (w.value instanceof StreamPipe) w.value.breakOff("sender disconnected");
      else if (el.kind === "chan" && Buffer.isBuffer(w.value)) el.durable?.discardStream(w.value);
    }
    for (const s of this.storing.values()) s.abort("sender disconnected");
    this.storing.clear();
    this.pendingSends.clear();
    for (const r of this.receivers.values()) {
      r.withdraw();
      r.el.chan.requeue(takenBack(r.unacked));
    }
    this.receivers.clear();
    for (const { el, holder } of this.handles.values()) el.chan.dropHolder(holder);
  }
}
