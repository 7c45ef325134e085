// A handle on a replicated channel at /@/… (DESIGN §12). Every operation goes to the daemon that
// hosts the channel (the holder of its lease), found by asking any daemon. When the host dies or
// loses its lease, operations in flight are issued again through another daemon instead of
// failing: a send carries an id, so that a send retried across a takeover is stored once; a value
// delivered but not yet acknowledged when its host died is delivered again.

import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { ChannelClosed, type CircuitError, ProtocolError, StoreUnavailable } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import { decode } from "../wire/protocol.js";
import { CARRY_MS, type ReplicatedChanStat } from "../wire/shapes.js";
import type { IterateOptions, OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";
import { type CaseChannel, ReplicatedCase } from "./replicated-select.js";
import type { Router } from "./router.js";
import type { SelectCase } from "./select.js";

const RETRY_MS = 100;

export type { ReplicatedChanStat };

/**
 * Operation ids, unique in this process: a host names a receive by its session and opid, and
 * one session may hold several handles on one channel (a cancel must reach only its own).
 */
let nextOpid = 0;

/** Errors after which an operation is issued again (the host is gone or moved), not reported. */
function carriedOver(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "ServerGone" || code === "Moved";
}

export class ReplicatedChan<T = unknown> implements AsyncIterable<T> {
  readonly kind = "chan";
  private readonly idPrefix = randomBytes(8).toString("hex");
  private sends = 0;
  /** The server we believe hosts the channel; "" asks the dial-in server. */
  private host = "";

  /** @internal */
  constructor(
    private readonly router: Router,
    private readonly encodeValue: (v: unknown) => Buffer,
    readonly path: string,
    private readonly names: readonly string[],
    /** The buffer capacity. */
    readonly cap: number,
    /** How many NATS nodes keep each value. */
    readonly replicas: number,
  ) {}

  /**
   * Runs one operation on the host, following moves and carrying it over to the next host when
   * this one dies. Resolves with the host's answer and the connection that gave it.
   */
  private async op(req: Record<string, unknown>, signal?: AbortSignal): Promise<{ r: unknown; conn: Connection }> {
    const deadline = monotonicMs() + CARRY_MS;
    let last: unknown;
    for (let hops = 0; ; hops++) {
      if (signal?.aborted) throw signal.reason;
      if (monotonicMs() > deadline) throw last ?? new StoreUnavailable(`no daemon hosts ${this.path}`);
      let conn: Connection;
      try {
        conn = await this.router.connFor(this.host);
      } catch (err) {
        // The named host is not (or no longer) reachable: ask the dial-in server again (and, for a
        // host our view lacks, which members it knows).
        last = err;
        if ((err as { code?: string }).code === "NotFound") await this.router.learnServers?.().catch(() => {});
        this.host = "";
        await sleep(RETRY_MS, signal);
        continue;
      }
      try {
        const r = await conn.request({ op: "@", path: this.names, ...req }, signal);
        const retry = (r as { retry?: unknown } | null)?.retry;
        if (typeof retry === "string") {
          // The store is reachable but slow to hand the channel over: ask again, within the bound.
          last = new StoreUnavailable(retry);
          await sleep(250, signal);
          continue;
        }
        const moved = (r as { moved?: unknown } | null)?.moved;
        if (typeof moved === "string") {
          this.host = moved;
          if (hops > 0) await sleep(Math.min(RETRY_MS * hops, 500), signal);
          continue;
        }
        return { r, conn };
      } catch (err) {
        if (signal?.aborted) {
          if (req.opid !== undefined) {
            conn.request({ op: "@", path: this.names, act: "cancel", opid: req.opid }).catch(() => {});
          }
          throw signal.reason;
        }
        if (!carriedOver(err)) throw err;
        last = err;
        this.host = "";
        await sleep(RETRY_MS, signal);
      }
    }
  }

  /**
   * Sends a value: resolves once it is stored on a quorum of the channel's replicas (or handed
   * over, for cap 0); waits while the buffer is full. Carried over to a new host if its host dies.
   */
  async send(value: T, opts?: OpOptions): Promise<void> {
    const bytes = this.encodeValue(value);
    const id = `${this.idPrefix}-${++this.sends}`;
    await this.op({ act: "send", opid: ++nextOpid, id, value: bytes }, opts?.signal);
  }

  /** Takes the next value from the host, unacknowledged: `ack` keeps it, `giveBack` returns it. */
  private async take(signal?: AbortSignal): Promise<Taken> {
    const opid = ++nextOpid;
    const { r, conn } = await this.op({ act: "recv", opid }, signal);
    const got = r as { seq: number; value: Uint8Array };
    return {
      value: got.value,
      ack: () => void conn.request({ op: "@", path: this.names, act: "ack", seq: got.seq }).catch(() => {}),
      giveBack: () => void conn.request({ op: "@", path: this.names, act: "cancel", opid }).catch(() => {}),
    };
  }

  private decode(t: Taken): T {
    try {
      return decode(t.value) as T;
    } catch (err) {
      throw new ProtocolError("received a value that is not valid MessagePack", { cause: err });
    }
  }

  /** Receives the next value; fails with ChannelClosed once the channel is closed and drained. */
  async recv(opts?: OpOptions): Promise<T> {
    const t = await this.take(opts?.signal);
    // Acknowledged once we have it; should the host die first, the value is delivered again.
    t.ack();
    return this.decode(t);
  }

  /**
   * A receive, as a case of `select` (docs/select.md, "Replicated channels"): if it is the one, the
   * value is this select's alone and is acknowledged once the select has returned it.
   */
  recvCase(): SelectCase<T, "recv"> {
    return { handle: 0, op: "recv", target: () => new ReplicatedCase(this.caseChannel(), "recv") };
  }

  /**
   * A send of `value`, as a case of `select`: if it is the one, the value is stored (on a quorum)
   * exactly once, even across a takeover; if not, it is stored nowhere. Encoding errors throw here.
   */
  sendCase(value: T): SelectCase<T, "send"> {
    const bytes = this.encodeValue(value);
    return { handle: 0, op: "send", bytes, target: () => new ReplicatedCase(this.caseChannel(), "send", bytes) };
  }

  private caseChannel(): CaseChannel {
    return {
      names: this.names,
      op: (req, signal) => this.op(req, signal),
      nextOpid: () => ++nextOpid,
      sendId: () => `${this.idPrefix}-${++this.sends}`,
    };
  }

  async close(opts?: OpOptions): Promise<void> {
    await this.op({ act: "close" }, opts?.signal);
  }

  async stat(opts?: OpOptions): Promise<ReplicatedChanStat> {
    return (await this.op({ act: "stat" }, opts?.signal)).r as ReplicatedChanStat;
  }

  /** Aborts the channel: blocked operations fail with ChannelAborted; its stream and anchor go. */
  async scrub(opts?: OpOptions): Promise<void> {
    await this.op({ act: "scrub" }, opts?.signal);
  }

  /** Receives until the channel is closed and drained, keeping `prefetch` receives outstanding. */
  async *iterate(opts?: IterateOptions): AsyncIterableIterator<T> {
    const prefetch = opts?.prefetch ?? 1;
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65536) {
      throw new RangeError("prefetch must be an integer from 1 to 65536");
    }
    const ac = new AbortController();
    // Each outstanding receive listens on it: `prefetch` listeners are expected, not a leak.
    setMaxListeners(prefetch + 16, ac.signal);
    const stop = () => ac.abort(opts?.signal?.reason);
    opts?.signal?.addEventListener("abort", stop, { once: true });
    let ended = false;
    const ahead: Promise<Taken>[] = [];
    const more = () => {
      const p = this.take(ac.signal);
      // A value that arrives after the loop ended was never seen: it goes back to the channel.
      p.then(
        (t) => ended && t.giveBack(),
        () => {},
      );
      ahead.push(p);
    };
    try {
      for (;;) {
        while (ahead.length < prefetch) more();
        let t: Taken;
        try {
          t = await (ahead.shift() as Promise<Taken>);
        } catch (err) {
          if ((err as CircuitError)?.code === "ChannelClosed" || err instanceof ChannelClosed) return;
          throw err;
        }
        t.ack();
        yield this.decode(t);
      }
    } finally {
      ended = true;
      opts?.signal?.removeEventListener("abort", stop);
      for (const p of ahead)
        p.then(
          (t) => t.giveBack(),
          () => {},
        );
      ac.abort(new Error("iteration ended"));
    }
  }

  /**
   * Calls `fn` with each value until the channel is closed and drained, awaiting a promise it
   * returns before the next (Chan.consume's contract, through iterate here).
   */
  async consume(fn: (value: T) => unknown, opts?: IterateOptions): Promise<void> {
    if (typeof fn !== "function") throw new TypeError("consume needs a function");
    for await (const v of this.iterate(opts)) await fn(v);
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.iterate();
  }
}

interface Taken {
  value: Uint8Array;
  ack(): void;
  giveBack(): void;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
