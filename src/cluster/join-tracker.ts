// What became of each join: the seeds given to --join (retried until one answers) and the ones
// `circuit join` asks for (tried once, the caller waits for the answer). It turns connection
// outcomes and sync replies into one log line per change of state — never one per try — and
// into the answer an explicit join waits for. Pure: time comes in as arguments.

import type { Logger } from "../util/log.js";
import type { SeedOutcome } from "./peer-links.js";

export type JoinFailureKind = Exclude<SeedOutcome, { ok: true }>["kind"] | "no-reply";

export interface JoinResult {
  /** The seed that answered. */
  url: string;
  /** Live members in our view right after its answer, this server included. */
  members: number;
}

export interface JoinWaiter {
  resolve(r: JoinResult): void;
  reject(kind: JoinFailureKind, reason: string): void;
}

interface Seed {
  url: string;
  /** Who answered the last successful connection. */
  id: string | undefined;
  /** When a connection to it last succeeded after a failure; the reply is due replyMs later. */
  connectedAt: number | undefined;
  /** The kind of failure we logged last, so a repeated state is not logged again. */
  logged: JoinFailureKind | undefined;
  /** Set for `circuit join`: tried once, the outcome goes here instead of into a retry. */
  waiter: JoinWaiter | undefined;
  deadline: number;
}

export interface JoinTrackerOptions {
  log: Logger;
  /** Our own advertised URL: a seed must be able to connect to it to answer. */
  self: string;
  /** How long after connecting to a seed its sync reply may take (it connects back to us). */
  replyMs: number;
  /** Upper bound of the retry delay, for the log line. */
  retryMaxMs: number;
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

export class JoinTracker {
  private readonly seeds = new Map<string, Seed>();

  constructor(private readonly o: JoinTrackerOptions) {}

  /** A --join seed: retried (by the membership) until some seed answers. */
  add(url: string, now: number): void {
    if (!this.seeds.has(url)) this.seeds.set(url, this.seed(url, now, undefined, Number.POSITIVE_INFINITY));
  }

  /** A `circuit join`: one try; `waiter` hears the outcome, at the latest after `timeoutMs`. */
  once(url: string, now: number, timeoutMs: number, waiter: JoinWaiter): void {
    const old = this.seeds.get(url);
    old?.waiter?.reject("refused", "superseded by another join to the same address");
    this.seeds.set(url, this.seed(url, now, waiter, now + timeoutMs));
  }

  get pending(): number {
    return this.seeds.size;
  }

  /**
   * A connection to a seed said HELLO, or failed. Returns true when the caller should stop
   * retrying this seed (an explicit join, which has now failed).
   */
  outcome(url: string, o: SeedOutcome, now: number): boolean {
    const s = this.seeds.get(url);
    if (!s) return false;
    if (o.ok) {
      s.id = o.id;
      s.connectedAt ??= now;
      return false;
    }
    s.connectedAt = undefined;
    return this.failed(s, o.kind, o.reason);
  }

  /**
   * A sync reply from member `from` arrived; `pendingJoins` are the seeds the membership still
   * retries (none once any seed answered). Logs the join, wakes its waiter, and forgets seeds
   * that no longer need an answer.
   */
  answered(from: string, members: number, pendingJoins: readonly string[]): void {
    let logged = false;
    for (const s of [...this.seeds.values()]) {
      if (s.id === from) {
        this.seeds.delete(s.url);
        if (s.waiter) s.waiter.resolve({ url: s.url, members });
        else if (!logged) {
          this.o.log.info(
            { event: "joined", seed: s.url, members },
            `joined ${s.url} (${members} member${members === 1 ? "" : "s"})`,
          );
        }
        logged = true;
      }
    }
    // Seeds given to --join that the membership stopped retrying: we are in a circuit through
    // another one (or through this one's reply from another connection). Dropped quietly.
    for (const s of [...this.seeds.values()]) {
      if (!s.waiter && !pendingJoins.includes(s.url)) {
        this.seeds.delete(s.url);
        if (!logged) {
          this.o.log.info(
            { event: "joined", seed: s.url, members },
            `joined through ${s.url} (${members} member${members === 1 ? "" : "s"})`,
          );
        }
        logged = true;
      }
    }
  }

  /** Runs deadlines. Returns the seeds whose retries should stop (explicit joins that timed out). */
  tick(now: number): string[] {
    const stop: string[] = [];
    for (const s of [...this.seeds.values()]) {
      if (s.connectedAt !== undefined && now - s.connectedAt >= this.o.replyMs) {
        s.connectedAt = undefined;
        const reason =
          `connected, but got no answer within ${seconds(this.o.replyMs)}: the seed must be able to` +
          ` connect back to ${this.o.self} (if it cannot, start this daemon with --advertise HOST:PORT)`;
        if (this.failed(s, "no-reply", reason)) stop.push(s.url);
      } else if (now >= s.deadline) {
        if (this.failed(s, "no-reply", "no answer in time")) stop.push(s.url);
      }
    }
    return stop;
  }

  /** Forgets every seed; waiters fail. */
  close(): void {
    for (const s of this.seeds.values()) s.waiter?.reject("refused", "this server is stopping");
    this.seeds.clear();
  }

  private failed(s: Seed, kind: JoinFailureKind, reason: string): boolean {
    if (s.waiter) {
      this.seeds.delete(s.url);
      s.waiter.reject(kind, `join ${s.url}: ${reason}`);
      return true;
    }
    // Once per state: "unreachable (EHOSTUNREACH)" and "unreachable (no answer within 1000 ms)"
    // alternate on one dead address, and are one state to the reader.
    if (s.logged !== kind) {
      s.logged = kind;
      this.o.log.warn(
        { event: "join-failed", seed: s.url, kind, reason },
        `join ${s.url}: ${reason}; retrying every ≤${seconds(this.o.retryMaxMs)}`,
      );
    }
    return false;
  }

  private seed(url: string, _now: number, waiter: JoinWaiter | undefined, deadline: number): Seed {
    return { url, id: undefined, connectedAt: undefined, logged: undefined, waiter, deadline };
  }
}
