// What a session hands its client while the client's connection is backed up (a slow link, a
// prefetch of big values, many byte streams read at once): nothing more, until the bytes already
// queued for it have left.

import type { FrameConn } from "../transport/frame-conn.js";

/** Something that hands the client bytes and can wait its turn: a channel receiver, a stream to the client. */
export interface Paced {
  /** The connection has room again: go on (and call Pacer.hold again if it fills up). */
  resume(): void;
}

/** A channel receiver: its receives can leave their channels while the connection is backed up. */
export interface PacedReceiver extends Paced {
  /** No more for now: its receives in the channel wait (Pacer.hold) instead. */
  holdBack(): void;
}

/**
 * Holds back what goes to a connection while it is backed up (more than half of the unsent bound
 * queued). Once a value handed over leaves it so, every channel receiver of the connection
 * withdraws its receives from their channels; a stream message being read keeps its bytes (its
 * sender waits for credit). They go on, in the order they were held, once the bytes already queued
 * have left. The values meanwhile stay in their channels (their senders wait, as for any slow
 * receiver), and the connection is never cut as one that does not read.
 */
export class Pacer {
  /** Every channel receiver of the connection (SessionChannels sets it). */
  receivers: () => Iterable<PacedReceiver> = () => [];
  private readonly held = new Set<Paced>();
  private waiting = false;
  private holding = false;
  constructor(private readonly conn: FrameConn) {}

  /**
   * The connection has just become backed up (a value was handed over): every receiver's receives
   * leave the channels, not only that one's, so that each value past the mark is the only one.
   */
  holdAll(): void {
    if (this.holding) return;
    this.holding = true;
    try {
      for (const r of this.receivers()) r.holdBack();
    } finally {
      this.holding = false;
    }
  }

  hold(p: Paced): void {
    this.held.add(p);
    this.wait();
  }

  private wait(): void {
    if (this.waiting) return;
    this.waiting = true;
    // Rejected when the connection closes: what it held is withdrawn or dropped then.
    this.conn.written().then(
      () => this.release(),
      () => {},
    );
  }

  forget(p: Paced): void {
    this.held.delete(p);
  }

  private release(): void {
    this.waiting = false;
    for (const p of this.held) {
      if (this.conn.backedUp) break;
      this.held.delete(p);
      // May hand over more, find the connection backed up again and be held again (at the end).
      p.resume();
    }
    if (this.held.size > 0) this.wait();
  }
}
