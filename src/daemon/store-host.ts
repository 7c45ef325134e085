// Which daemon hosts each circuit-wide element, and the elements this one hosts. A daemon asked
// about an element either hosts it already, takes its lease (nobody holds it, or its holder is
// dead as far as membership knows) and resumes it from its log, or answers where it lives.
// Leases only decide who should host; the log's expected-sequence appends make sure a host that
// lost its lease changes nothing (src/daemon/replicated-chan.ts).

import { randomBytes } from "node:crypto";
import { NotFound, StoreUnavailable, WrongKind } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { singleFlight } from "../util/single-flight.js";
import { Moved, type Owner, ReplicatedChan } from "./replicated-chan.js";
import { type ChanEntry, keyOf, type Lease, type Store, storeError } from "./store.js";

interface Hosted {
  names: string[];
  ch: ReplicatedChan;
  revision: number;
  timer: NodeJS.Timeout;
  /** When the store last confirmed the lease (taken or renewed). */
  renewedAt: number;
  renewing: boolean;
}

export interface StoreHostDeps {
  store: Store;
  me: Lease;
  /** True when membership still counts this server among the living. */
  alive(id: string): boolean;
  log: Logger;
}

export type Where = { ch: ReplicatedChan } | { moved: string };

export class StoreHost {
  private readonly hosted = new Map<string, Hosted>();
  private readonly acquiring = new Map<string, Promise<Where>>();
  private stopped = false;

  constructor(private readonly d: StoreHostDeps) {}

  get store(): Store {
    return this.d.store;
  }

  /** Creates a replicated channel at names (its stream, then its tree entry) and hosts it. */
  async makeChan(names: string[], cap: number, replicas: number): Promise<ChanEntry> {
    if (names.length < 2) throw new WrongKind("/@ itself cannot hold a channel");
    const stream = `CIRCUIT_${randomBytes(8).toString("hex")}`;
    const entry: ChanEntry = { kind: "chan", cap, replicas, stream };
    try {
      await ReplicatedChan.createStream(this.d.store.jsm, stream, replicas);
    } catch (err) {
      throw storeError(err, `making a stream with ${replicas} replicas`);
    }
    try {
      await this.d.store.create(names, entry);
    } catch (err) {
      await this.d.store.jsm.streams.delete(stream).catch(() => {});
      throw err;
    }
    return entry;
  }

  /** The element at names as its host sees it here, or where it lives. */
  where(names: string[]): Promise<Where> {
    const key = keyOf(names);
    const h = this.hosted.get(key);
    if (h && !h.ch.lost) return Promise.resolve({ ch: h.ch });
    return singleFlight(this.acquiring, key, () => this.acquireRetrying(names));
  }

  /**
   * Acquires, asking again while the store is connected but slow to answer (a NATS node died and
   * its streams elect new leaders); with no NATS server reachable, fails at once.
   */
  private async acquireRetrying(names: string[]): Promise<Where> {
    const deadline = monotonicMs() + this.d.store.config.requestMs;
    for (;;) {
      if (!this.d.store.connected) throw new StoreUnavailable("the store is unreachable: no NATS server answers");
      try {
        return await this.bounded(names);
      } catch (err) {
        if (!(err instanceof StoreUnavailable) || monotonicMs() > deadline || !this.d.store.connected) throw err;
        this.d.log.warn(
          { event: "takeover-retry", path: `/${names.join("/")}`, reason: err.message },
          `taking over /${names.join("/")} again: ${err.message}`,
        );
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /**
   * One attempt, bounded: nats.js calls each have their own timeout, but an ordered consumer that
   * keeps resetting while a NATS node dies may not; an attempt abandoned here installs nothing.
   */
  private bounded(names: string[]): Promise<Where> {
    const ms = 2 * this.d.store.config.requestMs;
    const attempt = { abandoned: false };
    return new Promise<Where>((resolve, reject) => {
      const t = setTimeout(() => {
        attempt.abandoned = true;
        reject(new StoreUnavailable(`taking over /${names.join("/")} took over ${ms} ms`));
      }, ms);
      this.acquire(names, attempt).then(
        (w) => {
          clearTimeout(t);
          resolve(w);
        },
        (err) => {
          clearTimeout(t);
          reject(err);
        },
      );
    });
  }

  private async acquire(names: string[], attempt: { abandoned: boolean }): Promise<Where> {
    const key = keyOf(names);
    const entry = await this.d.store.entry(names);
    if (!entry) throw new NotFound(`/${names.join("/")} holds no element`);
    // Services under /@ have a host of their own (store-svc.ts); this one hosts channels.
    if (entry.kind !== "chan") throw new WrongKind(`/${names.join("/")} holds a ${entry.kind}, not a channel`);
    const claim = await this.d.store.claimLease(names, this.d.me, this.d.alive, this.d.log);
    if ("moved" in claim) return claim;
    const { revision, leasedAt } = claim;
    let ch: ReplicatedChan;
    try {
      ch = await ReplicatedChan.resume(
        this.d.store.js,
        this.d.store.jsm,
        entry.stream,
        entry.cap,
        entry.replicas,
        this.d.me.id,
        this.d.store.config.requestMs,
      );
    } catch (err) {
      throw storeError(err, `resuming /${names.join("/")}`);
    }
    if (attempt.abandoned) {
      ch.lose(new Moved("takeover abandoned"));
      throw new StoreUnavailable("takeover abandoned");
    }
    const h: Hosted = {
      names,
      ch,
      revision,
      timer: setInterval(() => void this.renew(key), this.d.store.config.renewMs),
      renewedAt: leasedAt,
      renewing: false,
    };
    h.timer.unref();
    // A margin of one renewal below the lease: the store's clock for the lease starts later than ours.
    const margin = this.d.store.config.leaseMs - this.d.store.config.renewMs;
    ch.fresh = () => monotonicMs() - h.renewedAt < margin;
    ch.onLost = (err) => {
      this.d.log.warn(
        { event: "host-lost", path: `/${names.join("/")}`, reason: err.message },
        `no longer hosting /${names.join("/")}: ${err.message}`,
      );
      this.drop(key, h);
    };
    this.hosted.set(key, h);
    const path = `/${names.join("/")}`;
    const from = claim.from;
    if (from) this.d.log.info({ event: "takeover", path, from }, `took over ${path} from ${from}`);
    else this.d.log.info({ event: "hosting", path }, `hosting ${path}`);
    return { ch };
  }

  private async renew(key: string): Promise<void> {
    const h = this.hosted.get(key);
    if (!h || this.stopped || h.renewing) return;
    // Past its lease without a renewal the store confirmed, this host may have been replaced
    // unawares: it stops serving (a receive waiting here would wait on a stale buffer forever).
    if (monotonicMs() - h.renewedAt > this.d.store.config.leaseMs - this.d.store.config.renewMs) {
      h.ch.lose(new Moved("lease not renewed in time"));
      return;
    }
    h.renewing = true;
    const asked = monotonicMs();
    let rev: number | null;
    try {
      rev = await this.d.store.renewLease(h.names, this.d.me, h.revision);
    } catch {
      // The store did not answer: try again at the next tick, while the lease lasts.
      return;
    } finally {
      h.renewing = false;
    }
    if (rev === null) h.ch.lose(new Moved("lease lost"));
    else {
      h.revision = rev;
      h.renewedAt = asked;
      // Parties waiting here: make sure no other daemon took the log over meanwhile.
      if (h.ch.waiting) h.ch.verify().catch(() => {});
    }
  }

  private drop(key: string, h: Hosted): void {
    clearInterval(h.timer);
    if (this.hosted.get(key) === h) this.hosted.delete(key);
  }

  /** Scrubs the element: waiters fail with ChannelAborted, its stream and entry go. */
  async scrub(names: string[], ch: ReplicatedChan): Promise<void> {
    const key = keyOf(names);
    ch.abort();
    const h = this.hosted.get(key);
    if (h) this.drop(key, h);
    try {
      await this.d.store.jsm.streams.delete(ch.stream).catch(() => {});
      await this.d.store.remove(names);
    } catch (err) {
      throw storeError(err, "scrubbing");
    }
  }

  ownerGone(owner: Owner): void {
    for (const h of this.hosted.values()) h.ch.ownerGone(owner);
  }

  async close(): Promise<void> {
    this.stopped = true;
    for (const [key, h] of this.hosted) {
      this.drop(key, h);
      // Hand the lease back so that another daemon takes over at once.
      await this.d.store.leases.delete(key, { previousSeq: h.revision }).catch(() => {});
    }
    await this.d.store.close();
  }
}
