// The shared store of a circuit (DESIGN §12): a NATS JetStream cluster the operator runs. This file
// holds the connection, the `/@` tree (a KV bucket) and the leases (a KV bucket whose entries expire).
// Nothing here does consensus: compare-and-set revisions, TTLs and replicated streams are JetStream's.

import { readFileSync } from "node:fs";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type NatsConnection,
} from "nats";
import { AnchorBusy, CircuitError, StoreUnavailable } from "../errors.js";
import { monotonicMs } from "../util/clock.js";
import type { Logger } from "../util/log.js";
import type { FullServiceSpec } from "../wire/svc-spec.js";
import { DEFAULT_STORE_CONFIG, parseStoreUrl, type StoreConfig, type StoreOptions } from "./store-config.js";

export { DEFAULT_STORE_CONFIG, parseStoreUrl, type StoreConfig, type StoreOptions };

/** How long a new lease holder waits before reading the lease back at the leader (see claimLease). */
export const LEASE_SETTLE_MS = 50;

const TREE = "circuit_tree";
const LEASES = "circuit_leases";

/** What the tree keeps for a replicated channel. */
export interface ChanEntry {
  kind: "chan";
  cap: number;
  replicas: number;
  /** The JetStream stream holding the element's log. */
  stream: string;
}

/**
 * What the tree keeps for a service (src/daemon/store-svc.ts): its checked spec, the replica count
 * wanted and the slots with their restarts, which its supervisor rewrites when they change so that
 * a successor starts from them.
 */
export interface SvcEntry {
  kind: "svc";
  spec: FullServiceSpec;
  desired: number;
  /** Each replica slot (its number) with its restarts so far, as its supervisor last wrote them. */
  slots?: Record<string, number>;
}

/** What the tree keeps for a circuit-wide element. */
export type TreeEntry = ChanEntry | SvcEntry;

/** A lease as kept in the lease bucket. */
export interface Lease {
  id: string;
  url: string;
}

/** A KV key for a path under /@: the path's bytes in base64url (anchor names allow `@`, keys do not). */
export function keyOf(names: readonly string[]): string {
  return `p.${Buffer.from(names.join("/")).toString("base64url")}`;
}

export function namesOfKey(key: string): string[] {
  return Buffer.from(key.slice(2), "base64url").toString().split("/");
}

/** True for errors that mean the store could not be asked (not a refusal by it). */
function unreachable(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === "TIMEOUT" || code === "503" || code === "CONNECTION_CLOSED" || code === "CONNECTION_REFUSED";
}

/** Turns a nats.js failure into one of ours: StoreUnavailable when the store did not answer. */
export function storeError(err: unknown, what: string): CircuitError {
  if (err instanceof CircuitError) return err;
  const m = (err as Error)?.message ?? String(err);
  if (unreachable(err)) return new StoreUnavailable(`store did not answer ${what}: ${m}`);
  return new StoreUnavailable(`store refused ${what}: ${m}`);
}

export class Store {
  readonly config: StoreConfig;
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly tree: KV,
    readonly leases: KV,
    config: StoreConfig,
  ) {
    this.config = config;
  }

  /**
   * Connects to the store and opens (or makes) its buckets. Fails with StoreUnavailable within
   * `requestMs` (plus the connect timeout) when no NATS server answers or JetStream is off.
   */
  static async connect(o: StoreOptions): Promise<Store> {
    const servers = parseStoreUrl(o.url);
    const config = { ...DEFAULT_STORE_CONFIG, ...o.config };
    const copts: ConnectionOptions = {
      servers,
      name: "circuit",
      timeout: config.requestMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 2000,
      maxPingOut: 2,
    };
    if (o.tlsCa) copts.tls = { caFile: o.tlsCa };
    if (o.creds) copts.authenticator = credsAuthenticator(readFileSync(o.creds));
    let nc: NatsConnection;
    try {
      nc = await connect(copts);
    } catch (err) {
      throw new StoreUnavailable(`cannot reach the store at ${o.url}: ${(err as Error).message}`);
    }
    // A JetStream cluster that has just started elects its leaders first: keep asking a while.
    const deadline = monotonicMs() + config.startMs;
    for (;;) {
      try {
        const js = nc.jetstream({ timeout: config.requestMs });
        const jsm = await nc.jetstreamManager({ timeout: config.requestMs });
        const tree = await js.views.kv(TREE, { history: 1, replicas: config.replicas });
        const leases = await js.views.kv(LEASES, { history: 1, replicas: config.replicas, ttl: config.leaseMs });
        const st = new Store(nc, js, jsm, tree, leases, config);
        void st.watchStatus();
        return st;
      } catch (err) {
        if (monotonicMs() + 500 < deadline) {
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        await nc.close().catch(() => {});
        throw storeError(err, `opening the /@ buckets at ${o.url} (is JetStream on, with ${config.replicas} nodes?)`);
      }
    }
  }

  /**
   * The element at names, or null, as the tree stream's leader has it. The buckets allow direct
   * gets, which any replica answers, and a replica may not have applied a change that has just
   * completed: a create (a service made here and looked up at once answered "nothing there") or
   * a removal (a channel scrubbed and looked up at once through another daemon was still there).
   */
  async entry(names: readonly string[]): Promise<TreeEntry | null> {
    try {
      const m = await this.lastAtLeader(TREE, keyOf(names));
      return m ? (JSON.parse(Buffer.from(m.data).toString()) as TreeEntry) : null;
    } catch (err) {
      throw storeError(err, "a tree lookup");
    }
  }

  /** The last message of key in bucket as its stream leader has it; null when none or deleted. */
  private async lastAtLeader(bucket: string, key: string): Promise<{ data: Uint8Array; seq: number } | null> {
    try {
      const m = await this.jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
      const op = m.header?.get("KV-Operation");
      if ((op && op !== "PUT") || m.data.length === 0) return null;
      return { data: m.data, seq: m.seq };
    } catch (err) {
      if ((err as { code?: string })?.code === "404" || /no message found/i.test((err as Error)?.message ?? ""))
        return null;
      throw err;
    }
  }

  /** Puts a new element in the tree; AnchorBusy if the anchor holds one. */
  async create(names: readonly string[], e: TreeEntry): Promise<void> {
    try {
      await this.tree.create(keyOf(names), Buffer.from(JSON.stringify(e)));
    } catch (err) {
      if ((err as Error)?.message?.includes("wrong last sequence")) {
        throw new AnchorBusy(`/${names.join("/")} already holds an element`);
      }
      throw storeError(err, "creating an element");
    }
  }

  /** Rewrites the element at names (its holder only: a service's desired count). */
  async put(names: readonly string[], e: TreeEntry): Promise<void> {
    try {
      await this.tree.put(keyOf(names), Buffer.from(JSON.stringify(e)));
    } catch (err) {
      throw storeError(err, "updating an element");
    }
  }

  async remove(names: readonly string[]): Promise<void> {
    try {
      await this.tree.purge(keyOf(names));
      await this.leases.purge(keyOf(names));
    } catch (err) {
      throw storeError(err, "removing an element");
    }
  }

  /** Every path in the tree (names from the root, `@` first). */
  async paths(): Promise<{ names: string[]; entry: TreeEntry }[]> {
    const out: { names: string[]; entry: TreeEntry }[] = [];
    try {
      const keys: string[] = [];
      for await (const k of await this.tree.keys()) keys.push(k);
      for (const k of keys) {
        const names = namesOfKey(k);
        const e = await this.entry(names);
        if (e) out.push({ names, entry: e });
      }
    } catch (err) {
      throw storeError(err, "listing /@");
    }
    return out.sort((a, b) => (a.names.join("/") < b.names.join("/") ? -1 : 1));
  }

  /**
   * The lease of names as the lease bucket's stream leader has it (the plain read may come from a
   * replica that is behind), or null when nobody holds it.
   */
  async leaseAtLeader(names: readonly string[]): Promise<{ lease: Lease; revision: number } | null> {
    try {
      const m = await this.lastAtLeader(LEASES, keyOf(names));
      return m ? { lease: JSON.parse(Buffer.from(m.data).toString()) as Lease, revision: m.seq } : null;
    } catch (err) {
      throw storeError(err, "a lease lookup");
    }
  }

  /** The current lease of names and its revision, or null when nobody holds it. */
  async lease(names: readonly string[]): Promise<{ lease: Lease; revision: number } | null> {
    try {
      const e = await this.leases.get(keyOf(names));
      if (e?.operation !== "PUT" || e.value.length === 0) return null;
      return { lease: JSON.parse(Buffer.from(e.value).toString()) as Lease, revision: e.revision };
    } catch (err) {
      throw storeError(err, "a lease lookup");
    }
  }

  /**
   * Takes the lease: when nobody holds it (create), or over `revision` (a holder known dead, or
   * ourselves again). Resolves with the new revision, or null when another daemon got there first.
   */
  async takeLease(names: readonly string[], me: Lease, revision?: number): Promise<number | null> {
    const v = Buffer.from(JSON.stringify(me));
    try {
      return revision === undefined
        ? await this.leases.create(keyOf(names), v)
        : await this.leases.update(keyOf(names), v, revision);
    } catch (err) {
      if ((err as Error)?.message?.includes("wrong last sequence")) return null;
      throw storeError(err, "taking a lease");
    }
  }

  /**
   * Claims the lease of names for `me`, for a daemon about to host the element (channel or
   * service): taken when nobody holds it, or over the holder's revision when the holder is `me`
   * from before or `alive` says it is dead; `{ moved }` names the live holder otherwise. A lease
   * taken is then confirmed at the lease bucket's stream leader, LEASE_SETTLE_MS later:
   * nats-server before 2.9.21 may accept a second compare-and-set made at the same moment (issue
   * 4320), and once both are applied the leader has the later one, so whoever wrote first finds
   * the other's lease there and steps back before resuming anything. `leasedAt` is when the claim
   * began (the lease runs from before it was asked for, not from when the answer came); `from`, the
   * holder it was taken from (possibly `me`).
   */
  async claimLease(
    names: readonly string[],
    me: Lease,
    alive: (id: string) => boolean,
    log: Logger,
  ): Promise<{ revision: number; leasedAt: number; from?: string } | { moved: string }> {
    const cur = await this.lease(names);
    const leasedAt = monotonicMs();
    let revision: number | null;
    if (!cur) revision = await this.takeLease(names, me);
    else if (cur.lease.id === me.id || !alive(cur.lease.id)) revision = await this.takeLease(names, me, cur.revision);
    else return { moved: cur.lease.id };
    if (revision === null) {
      const now = await this.lease(names);
      if (now && now.lease.id !== me.id) return { moved: now.lease.id };
      throw storeError(new Error("the lease changed hands while taking it"), "taking a lease");
    }
    await new Promise((r) => setTimeout(r, LEASE_SETTLE_MS));
    const now = await this.leaseAtLeader(names).catch(() => undefined);
    if (now && now.revision > revision && now.lease.id !== me.id) {
      log.info(
        { event: "lease-contended", path: `/${names.join("/")}`, holder: now.lease.id },
        `/${names.join("/")}: ${now.lease.id} took the lease at the same moment; it hosts`,
      );
      return { moved: now.lease.id };
    }
    return { revision, leasedAt, ...(cur ? { from: cur.lease.id } : {}) };
  }

  /** Renews a lease we hold; null when it is no longer ours (revision moved on, or it expired). */
  async renewLease(names: readonly string[], me: Lease, revision: number): Promise<number | null> {
    return this.takeLease(names, me, revision);
  }

  /** False while the connection to every NATS server is down (nats.js keeps reconnecting). */
  connected = true;

  private async watchStatus(): Promise<void> {
    for await (const st of this.nc.status()) {
      if (st.type === "disconnect") this.connected = false;
      else if (st.type === "reconnect") this.connected = true;
    }
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => {});
  }
}
