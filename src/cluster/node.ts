// Runs the membership state machine against the real world: a clock, a timer, and the links to
// other servers. The daemon sees only the resulting view and its join/leave events.

import { AuthFailed, type CircuitError, ProtocolError, ServerGone, Timeout } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import type { SwimConfig } from "./config.js";
import { DEFAULT_SWIM } from "./config.js";
import { type JoinFailureKind, type JoinResult, JoinTracker } from "./join-tracker.js";
import { Membership, type MembershipEvent, type MemberView } from "./membership.js";
import { PeerLinks } from "./peer-links.js";

export interface ClusterNodeOptions {
  id: string;
  url: string;
  meta?: Record<string, unknown>;
  maxFrame: number;
  key?: Buffer;
  config?: Partial<SwimConfig>;
  /**
   * How long a seed that accepted our connection may take to answer a join (it has to connect
   * back to our URL). Default 3 s.
   */
  joinReplyMs?: number;
  log: Logger;
  onEvent(e: MembershipEvent): void;
}

const TICK_MS = 20;

/** The error an explicit join fails with, by what went wrong. */
function joinError(kind: JoinFailureKind, message: string): CircuitError {
  if (kind === "auth") return new AuthFailed(message);
  if (kind === "version" || kind === "not-circuit") return new ProtocolError(message);
  if (kind === "no-reply") return new Timeout(message);
  return new ServerGone(message);
}

export class ClusterNode {
  readonly membership: Membership;
  readonly links: PeerLinks;
  /** Ticks the state machine while it has something to do (see schedule). */
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly joins: JoinTracker;

  constructor(private readonly o: ClusterNodeOptions) {
    const config = { ...DEFAULT_SWIM, ...o.config };
    this.membership = new Membership({ id: o.id, addr: o.url, meta: o.meta }, config, {
      now: () => monotonicMs(),
      random: Math.random,
    });
    this.joins = new JoinTracker({
      log: o.log,
      self: o.url,
      replyMs: o.joinReplyMs ?? 3000,
      retryMaxMs: config.joinRetryMaxMs,
    });
    this.links = new PeerLinks({
      self: { id: o.id, url: o.url },
      maxFrame: o.maxFrame,
      key: o.key,
      log: o.log,
      onMessage: (from, msg) => this.after(() => this.receive(from, msg)),
      onUnreachable: (id) => this.after(() => this.membership.unreachable(id)),
      onConnectionLost: (id) => this.after(() => this.membership.connectionLost(id)),
      onSeed: (addr, outcome) =>
        this.after(() => {
          if (this.joins.outcome(addr, outcome, monotonicMs())) this.membership.cancelJoin(addr);
        }),
    });
    this.schedule();
  }

  /**
   * Contacts a member of an existing circuit, retrying with backoff until some seed answers; each
   * change in how the join fares is logged once.
   */
  join(url: string): void {
    this.joins.add(url, monotonicMs());
    this.after(() => this.membership.join(url));
  }

  /**
   * Joins the circuit of the server at `url` now, trying once: resolves when it answered (our
   * views are then merged, and gossip carries the merge to both circuits), or fails with
   * ServerGone (unreachable), AuthFailed (key refused), ProtocolError (another version, or not a
   * circuit daemon) or Timeout (no answer within timeoutMs).
   */
  joinNow(url: string, timeoutMs: number): Promise<JoinResult> {
    return new Promise((resolve, reject) => {
      this.joins.once(url, monotonicMs(), timeoutMs, {
        resolve,
        reject: (kind, message) => reject(joinError(kind, message)),
      });
      this.after(() => this.membership.join(url));
    });
  }

  /** Gossips new metadata of this server (its load); see Membership.updateMeta. */
  updateMeta(meta: Record<string, unknown>): void {
    this.after(() => this.membership.updateMeta(meta));
  }

  /** Live members (alive or suspect), this server included. */
  members(): MemberView[] {
    return this.membership.members();
  }

  get(id: string): MemberView | undefined {
    return this.membership.get(id);
  }

  /** Leaves gracefully: tells the others, gives the message a moment to go out, then closes. */
  async leave(graceMs = 300): Promise<void> {
    this.after(() => this.membership.leave());
    await new Promise((r) => setTimeout(r, graceMs));
    this.close();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.joins.close();
    this.links.close();
  }

  private receive(from: string, msg: unknown): void {
    this.membership.receive(from, msg as never);
    const m = msg as { t?: unknown; reply?: unknown };
    if (this.joins.pending > 0 && m?.t === "sync" && m.reply === true) {
      this.joins.answered(from, this.membership.liveCount(), this.membership.pendingJoins());
    }
  }

  private tick(): void {
    this.membership.tick();
    if (this.joins.pending > 0) for (const url of this.joins.tick(monotonicMs())) this.membership.cancelJoin(url);
  }

  /** Applies an input, then carries out what the state machine decided. */
  private after(input: () => void): void {
    input();
    for (const m of this.membership.drainOutbox()) this.links.send(m.to, m.addr, m.msg);
    for (const n of this.membership.drainNotes()) {
      if (n.kind === "suspect") {
        this.o.log.info(
          { event: "suspect", server: n.id, url: n.addr, by: n.by },
          `suspect /${n.id} ${n.addr} (suspected by ${n.by})`,
        );
      } else {
        this.o.log.info({ event: "refuted", server: n.id, url: n.addr, by: n.by }, `alive again /${n.id} ${n.addr}`);
      }
    }
    for (const e of this.membership.drainEvents()) {
      if (e.kind === "leave") this.links.forget(e.member.id);
      this.o.onEvent(e);
    }
    this.schedule();
  }

  /**
   * Ticks every TICK_MS while the membership or a join has something to do, and not at all while
   * this server is on its own with nothing under way: an idle server alone sleeps instead of
   * waking 50 times a second. Any input (a message, a join, a hint from the links) comes through
   * after(), which starts the ticks again.
   */
  private schedule(): void {
    const idle = this.membership.quiet && this.joins.pending === 0;
    if (idle && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    } else if (!idle && !this.timer && !this.closed) {
      this.timer = setInterval(() => this.after(() => this.tick()), TICK_MS);
      this.timer.unref();
    }
  }
}
