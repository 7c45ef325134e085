// A session's byte streams: stream messages and request-opened streams (process stdin, uploads)
// coming from its client under the client's stream ids, and pipes going to it (stream messages it
// receives, process output, downloads) under daemon-wide pipe ids, each with its credit.

import { NoCapacity, ProtocolError } from "../errors.js";
import type { FrameConn } from "../transport/frame-conn.js";
import { encode, T, tail, u32 } from "../wire/protocol.js";
import { Pacer } from "./pacer.js";
import { type PipeReceiver, type PipeSender, StreamPipe } from "./stream-pipe.js";

/** What a request handler (proc-ops, host-ops) needs of the session it answers. */
export interface StreamSession {
  /** Its connection: closed once the client is gone (a wait or a file transfer then stops). */
  readonly conn: { readonly closed: boolean };
  /**
   * Fails with NoCapacity unless the client may read n more byte streams that requests open
   * (--max-streams): called before the request starts anything.
   */
  roomForOutput(n: number): void;
  /** Hands `pipe` to the client's receiver `rid` (SATTACH), then streams it; it counts until it ends. */
  attachStream(rid: number, pipe: StreamPipe): void;
  /** A byte stream the client sends under its stream id `sid` (process stdin, a file upload). */
  acceptStream(sid: number): StreamPipe;
}

export class SessionStreams {
  /** Streams this session's client is sending, by its stream id. */
  private readonly outStreams = new Map<number, StreamPipe>();
  /** Streams this session's client is receiving, by pipe id. */
  private readonly inStreams = new Map<number, StreamPipe>();
  /** Those of them its requests opened (process output, file reads): --max-streams bounds these. */
  private readonly requested = new Set<number>();
  /** What goes to the client waits here while its connection is backed up (channel values too). */
  readonly pacer: Pacer;

  constructor(
    private readonly conn: FrameConn,
    /** Most streams the client may have open towards us (Limits.streams). */
    private readonly maxStreams: number,
    private readonly nextPipeId: () => number,
  ) {
    this.pacer = new Pacer(conn);
  }

  /**
   * Bytes of the client's stream `sid`: an SDATA frame, or a piece of a big one (`more`: the rest
   * of its frame follows).
   */
  data(sid: number, bytes: Buffer, more = false): void {
    const pipe = this.outStreams.get(sid);
    if (pipe && !pipe.write(bytes, more)) throw new ProtocolError("stream data beyond its credit");
  }

  /** SDATA, SFIN, SABORT (the client's streams) and SCREDIT, SDROP (ours to it). */
  frame(type: number, body: Buffer): void {
    switch (type) {
      case T.SDATA:
        this.data(u32(body, 0), tail(body, 1));
        return;
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
      case T.SCREDIT:
        this.inStreams.get(u32(body, 0))?.grant(u32(body, 1));
        return;
      case T.SDROP: {
        const pid = u32(body, 0);
        const p = this.inStreams.get(pid);
        if (p) {
          this.ended(pid);
          p.drop("receiver stopped reading");
        }
        return;
      }
      default:
        throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
    }
  }

  /**
   * A byte stream from the client under its stream id `sid` (a stream message's SOPEN, or a
   * request naming `sid`): its SDATA/SFIN/SABORT land in the returned pipe, which grants the
   * client credit.
   */
  accept(sid: number, requested = false): StreamPipe {
    if (this.outStreams.has(sid)) throw new ProtocolError("stream id in use");
    if (this.outStreams.size >= this.maxStreams) {
      // A request's stream (a process's stdin, an upload) may stay open as long as its user likes,
      // so the client does not wait for room for one: that request alone fails, and says why. A
      // stream message past the bound is a client that ignored the bound HELLO gave it.
      if (requested) {
        throw new NoCapacity(
          `this connection has ${this.maxStreams} byte streams open, the most the server takes (--max-streams): end one first`,
        );
      }
      throw new ProtocolError(`more than ${this.maxStreams} open streams`);
    }
    const pipe = new StreamPipe(this.nextPipeId(), this.pipeSender(sid));
    this.outStreams.set(sid, pipe);
    return pipe;
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

  /** A daemon-wide id for a pipe to this client. */
  pipeId(): number {
    return this.nextPipeId();
  }

  /** See StreamSession.roomForOutput. */
  roomForOutput(n: number): void {
    if (this.requested.size + n > this.maxStreams) {
      throw new NoCapacity(
        `this connection is reading ${this.requested.size} byte streams, the most the server takes (--max-streams): finish or destroy one first`,
      );
    }
  }

  /** attach() for a stream a request opened (after roomForOutput): it counts until it ends. */
  attachRequested(rid: number, pipe: StreamPipe): void {
    this.requested.add(pipe.id);
    this.attach(rid, pipe);
  }

  /** Hands `pipe` to the client's receiver `rid` (SATTACH), then streams it. */
  attach(rid: number, pipe: StreamPipe): void {
    this.conn.send(T.SATTACH, [rid, pipe.id]);
    this.openIn(pipe);
  }

  /** Streams a pipe's bytes to the client under its pipe id, with its credit. */
  openIn(pipe: StreamPipe): void {
    this.inStreams.set(pipe.id, pipe);
    const recv: PipeReceiver = {
      // Its bytes wait in the pipe (and its sender for credit) while the connection is backed up.
      blocked: () => {
        if (!this.conn.backedUp) return false;
        this.pacer.hold(pipe);
        return true;
      },
      data: (c) => this.conn.send(T.SDATA, [pipe.id], c),
      // The pieces of a big frame from the sender go on as one frame, written from the pieces.
      dataParts: (parts) => this.conn.sendParts(T.SDATA, [pipe.id], parts),
      fin: () => {
        this.ended(pipe.id);
        this.conn.send(T.SFIN, [pipe.id]);
      },
      broken: (reason) => {
        this.ended(pipe.id);
        this.conn.send(T.SABORT, [pipe.id], encode({ code: "StreamBroken", message: reason }));
      },
    };
    pipe.attach(recv);
  }

  /** The stream to the client under pipe id `pid` is over: it counts no more. */
  private ended(pid: number): void {
    const p = this.inStreams.get(pid);
    if (p) this.pacer.forget(p);
    this.inStreams.delete(pid);
    this.requested.delete(pid);
  }

  /** The connection is gone: streams from the client break off, streams to it are dropped. */
  cleanup(): void {
    for (const p of this.outStreams.values()) p.breakOff("sender disconnected");
    this.outStreams.clear();
    for (const p of this.inStreams.values()) p.drop("receiver disconnected", true);
    this.inStreams.clear();
    this.requested.clear();
  }
}
