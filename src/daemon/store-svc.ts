// Services under /@ (DESIGN §3.7, §12): the spec and the replica count wanted are kept in the /@
// tree; the daemon holding the service's lease supervises it. When that daemon dies (membership
// says so, or its lease expires), another daemon takes the lease over by revision and supervises
// the service from the tree: it adopts the replicas still running (they are not tied to any
// supervisor) and starts the missing ones. Leases are the same bucket and protocol as the
// channels' (store-host.ts); unlike a channel, a service is taken over without anyone asking:
// every daemon sweeps the tree for services nobody live supervises.
//
// Two daemons may both believe for a moment that they hold a lease (nats-server before 2.9.21 can
// accept two concurrent compare-and-set updates, issue 4320). That is made harmless: the next
// renewal of one of them fails and it detaches (stops supervising, stopping nothing); a
// supervisor stops a replica it did not start only after renewing its lease again (svc-host.ts).

import { AnchorBusy, NotFound, StoreUnavailable, Unsupported, WrongKind } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import { singleFlight } from "../util/single-flight.js";
import type { FullServiceSpec } from "../wire/svc-spec.js";
import { keyOf, type Lease, type Store, type SvcEntry } from "./store.js";
import type { ServiceHost, SharedService, SvcRecord } from "./svc-host.js";

export interface StoreSvcDeps {
  store: Store;
  me: Lease;
  /** True when membership still counts this server among the living. */
  alive(id: string): boolean;
  /** IDs of the live servers in this daemon's view, itself included. */
  members(): string[];
  log: Logger;
  /** Checks a spec from the wire (TypeError/RangeError); undefined: this daemon cannot run services. */
  checkSpec?: (raw: unknown) => FullServiceSpec;
  /** A driver for the service at names (the daemon's ServiceHost with its deps). */
  newHost(names: string[], spec: FullServiceSpec, shared: SharedService, prior: SvcRecord): ServiceHost;
}

interface Hosted {
  names: string[];
  svc: ServiceHost;
  entry: SvcEntry;
  revision: number;
  timer: NodeJS.Timeout;
  renewedAt: number;
  /** Writes of the record, in order; a scrub waits for them (a late one would bring the entry back). */
  writes: Promise<void>;
  /** The renewal under way: a confirmation waits for it rather than racing it. */
  renewing: Promise<boolean> | undefined;
}

export type SvcWhere = { svc: ServiceHost } | { moved: string };

const NO_SERVICES = "this daemon was started without a client connection for services";

export class StoreServices {
  private readonly hosted = new Map<string, Hosted>();
  private readonly acquiring = new Map<string, Promise<SvcWhere>>();
  private readonly sweepTimer: NodeJS.Timeout;
  private sweeping = false;
  private stopped = false;

  constructor(private readonly d: StoreSvcDeps) {
    // Catches what the leave events do not: an expired lease, a takeover that failed.
    this.sweepTimer = setInterval(() => void this.sweep(), d.store.config.leaseMs);
    this.sweepTimer.unref();
  }

  /** Keeps a new service at names in the tree and supervises it; AnchorBusy if the anchor holds one. */
  async make(names: string[], raw: unknown): Promise<void> {
    if (!this.d.checkSpec) throw new Unsupported(NO_SERVICES);
    if (names.length < 2) throw new WrongKind("/@ itself cannot hold a service");
    const spec = this.d.checkSpec(raw);
    const desired = Math.min(spec.max, Math.max(spec.min, spec.replicas));
    await this.d.store.create(names, { kind: "svc", spec, desired });
    // Kept in the store now: if taking its lease is slow (a NATS node elects leaders), asked again
    // for a while; should that fail too, the sweeps of the daemons supervise it soon after.
    const deadline = monotonicMs() + this.d.store.config.requestMs;
    for (;;) {
      try {
        await this.where(names);
        return;
      } catch (err) {
        if (!(err instanceof StoreUnavailable) || !this.d.store.connected) throw err;
        if (monotonicMs() > deadline) {
          this.d.log.warn(
            { event: "svc-takeover-failed", path: `/${names.join("/")}`, reason: err.message },
            `/${names.join("/")} is stored but not supervised yet: ${err.message}`,
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /** The service at names as supervised here, or where it is supervised. */
  where(names: string[]): Promise<SvcWhere> {
    const key = keyOf(names);
    const h = this.hosted.get(key);
    if (h) return Promise.resolve({ svc: h.svc });
    if (this.stopped) return Promise.reject(new StoreUnavailable("this daemon is stopping"));
    return singleFlight(this.acquiring, key, () => this.acquire(names));
  }

  private async acquire(names: string[]): Promise<SvcWhere> {
    const key = keyOf(names);
    const path = `/${names.join("/")}`;
    const entry = await this.d.store.entry(names);
    if (!entry) throw new NotFound(`${path} holds no element`);
    if (entry.kind !== "svc") throw new WrongKind(`${path} holds a ${entry.kind}, not a service`);
    if (!this.d.checkSpec) throw new Unsupported(NO_SERVICES);
    const claim = await this.d.store.claimLease(names, this.d.me, this.d.alive, this.d.log);
    if ("moved" in claim) return claim;
    const { revision, leasedAt } = claim;
    // Scrubbed between our reading of the tree and our taking of the lease: nothing to supervise.
    const again = await this.d.store.entry(names);
    if (again?.kind !== "svc" || this.stopped) {
      await this.d.store.leases.delete(key, { previousSeq: revision }).catch(() => {});
      if (this.stopped) throw new StoreUnavailable("this daemon is stopping");
      throw new NotFound(`${path} holds no element`);
    }
    const h: Hosted = {
      names,
      entry: again,
      revision,
      renewedAt: leasedAt,
      renewing: undefined,
      writes: Promise.resolve(),
      timer: setInterval(() => void this.renew(key), this.d.store.config.renewMs),
      svc: undefined as unknown as ServiceHost,
    };
    h.timer.unref();
    const shared: SharedService = {
      supervisor: this.d.me.id,
      record: (r) => {
        if (this.hosted.get(key) !== h) return;
        h.entry = { ...h.entry, desired: r.desired, slots: r.slots };
        const e = h.entry;
        const write = async () => {
          if (this.hosted.get(key) !== h) return;
          try {
            await this.d.store.put(names, e);
          } catch (err) {
            this.d.log.warn(
              { event: "svc-store", path, reason: (err as Error).message },
              `service ${path}: could not keep its replica count and slots in the store: ${(err as Error).message}`,
            );
          }
        };
        h.writes = h.writes.then(write);
      },
      confirm: () => this.renew(key, true),
    };
    h.svc = this.d.newHost(names, again.spec, shared, { desired: again.desired, slots: again.slots ?? {} });
    this.hosted.set(key, h);
    const from = claim.from;
    if (from && from !== this.d.me.id) {
      this.d.log.info({ event: "svc-takeover", path, from }, `supervising ${path}, taken over from ${from}`);
    } else this.d.log.info({ event: "svc-hosting", path }, `supervising ${path}`);
    return { svc: h.svc };
  }

  /**
   * Renews the lease of the service at key; resolves true while it is ours. `confirm`: the answer
   * must come from the store now (a renewal already under way is waited for, then one more made).
   */
  private async renew(key: string, confirm = false): Promise<boolean> {
    const h = this.hosted.get(key);
    if (!h || this.stopped) return false;
    if (h.renewing) {
      const ok = await h.renewing;
      if (!confirm || !ok) return ok;
      return this.renew(key, true);
    }
    const p = this.renewOnce(key, h, confirm);
    h.renewing = p;
    try {
      return await p;
    } finally {
      if (h.renewing === p) h.renewing = undefined;
    }
  }

  private async renewOnce(key: string, h: Hosted, confirm: boolean): Promise<boolean> {
    const cfg = this.d.store.config;
    if (monotonicMs() - h.renewedAt > cfg.leaseMs - cfg.renewMs) {
      this.lose(key, h, "lease not renewed in time");
      return false;
    }
    const asked = monotonicMs();
    let rev: number | null;
    try {
      rev = await this.d.store.renewLease(h.names, this.d.me, h.revision);
    } catch {
      return !confirm; // the store did not answer: try again at the next tick, while the lease lasts
    }
    if (this.hosted.get(key) !== h) return false;
    if (rev === null) {
      this.lose(key, h, "lease lost");
      return false;
    }
    h.revision = rev;
    h.renewedAt = asked;
    return true;
  }

  /** Another daemon supervises the service now: stop supervising, stopping no replica. */
  private lose(key: string, h: Hosted, why: string): void {
    clearInterval(h.timer);
    if (this.hosted.get(key) === h) this.hosted.delete(key);
    h.svc.detach();
    const path = `/${h.names.join("/")}`;
    this.d.log.warn({ event: "svc-lost", path, reason: why }, `no longer supervising ${path}: ${why}`);
  }

  /** Sets the replica count wanted (kept in the tree by the driver's record hook). */
  scale(svc: ServiceHost, n: number): void {
    svc.scale(n);
  }

  /** Stops every replica, then removes the service from the tree and its lease. */
  async scrub(names: string[], svc: ServiceHost): Promise<void> {
    const key = keyOf(names);
    const h = this.hosted.get(key);
    await svc.close();
    if (h) {
      clearInterval(h.timer);
      if (this.hosted.get(key) === h) this.hosted.delete(key);
      await h.writes;
    }
    await this.d.store.remove(names);
  }

  /** A server left the circuit: the replicas it ran start elsewhere; its services find a new supervisor. */
  memberLeft(id: string): void {
    for (const h of this.hosted.values()) h.svc.serverGone(id);
    // The live server with the lowest ID takes over at once; the others a moment later, should it
    // not have (they find its lease then, and leave it).
    const first = this.d.members().sort()[0];
    setTimeout(() => void this.sweep(), first === this.d.me.id ? 0 : this.d.store.config.renewMs).unref();
  }

  /** Supervises every service whose lease is free or held by a dead server. */
  async sweep(): Promise<void> {
    if (this.sweeping || this.stopped || !this.d.checkSpec) return;
    this.sweeping = true;
    try {
      const all = await this.d.store.paths();
      const present = new Set<string>();
      for (const { names, entry } of all) {
        if (entry.kind !== "svc") continue;
        const key = keyOf(names);
        present.add(key);
        if (this.hosted.has(key)) continue;
        await this.where(names).catch((err) => {
          if (err instanceof NotFound || err instanceof AnchorBusy) return;
          this.d.log.warn(
            { event: "svc-takeover-failed", path: `/${names.join("/")}`, reason: (err as Error).message },
            `could not take /${names.join("/")} over: ${(err as Error).message}`,
          );
        });
      }
      // A service scrubbed while we took it over (its entry is gone): stop what we started.
      for (const [key, h] of this.hosted) {
        if (present.has(key) || (await this.d.store.entry(h.names))?.kind === "svc") continue;
        if (this.hosted.get(key) !== h) continue;
        clearInterval(h.timer);
        this.hosted.delete(key);
        await h.svc.close();
      }
    } catch {
      // The store did not answer: the next sweep tries again.
    } finally {
      this.sweeping = false;
    }
  }

  /** The daemon stops: supervision ends here, replicas run on, the leases go back at once. */
  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    for (const [key, h] of this.hosted) {
      clearInterval(h.timer);
      h.svc.detach();
      await this.d.store.leases.delete(key, { previousSeq: h.revision }).catch(() => {});
    }
    this.hosted.clear();
  }
}
