// The shared store's settings (DESIGN §12), apart from the code that talks to NATS so that the
// daemon's public types do not pull in the NATS client's.

/**
 * Timing of the store, with its trade-offs (as src/cluster/config.ts does for membership).
 */
export interface StoreConfig {
  /**
   * A lease entry expires this long after its holder last renewed it (the lease bucket's max age).
   * Shorter: faster takeover after a silent death; longer: a host that pauses (GC, SIGSTOP, a slow
   * disk) for less than this keeps its elements. Takeover after a crash known to membership does
   * not wait for it (the entry is taken over by revision at once).
   */
  leaseMs: number;
  /** The holder renews every this often; three renewals fit in one lease so one lost one is harmless. */
  renewMs: number;
  /**
   * Every JetStream request (publish, KV, stream management) fails after this long: the bound on
   * how long an operation under /@ can wait for an unreachable store before failing with
   * StoreUnavailable.
   */
  requestMs: number;
  /** How long a starting daemon keeps trying to open the buckets (a new JetStream cluster elects first). */
  startMs: number;
  /** Replicas of the tree and lease buckets (1, 3 or 5; at most the number of NATS nodes). */
  replicas: number;
}

export const DEFAULT_STORE_CONFIG: StoreConfig = {
  leaseMs: 3000,
  renewMs: 1000,
  requestMs: 4000,
  startMs: 15_000,
  replicas: 3,
};

export interface StoreOptions {
  /** `nats://HOST:PORT[,HOST:PORT…]` (the `nats://` prefix is optional on the later entries). */
  url: string;
  /** A PEM file of the CA that signed the NATS servers' certificates (TLS to the store). */
  tlsCa?: string;
  /** A NATS credentials file (JWT and NKey seed), as `nats` tools take it. */
  creds?: string;
  config?: Partial<StoreConfig>;
}

/** Splits `nats://h1:p1,h2:p2` into ["h1:p1", "h2:p2"]; TypeError with the reason otherwise. */
export function parseStoreUrl(url: string): string[] {
  if (typeof url !== "string" || url.trim() === "") throw new TypeError("--store takes nats://HOST:PORT[,HOST:PORT…]");
  const out: string[] = [];
  for (const raw of url.split(",")) {
    const s = raw.trim();
    const m = /^(?:(nats|tls):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) {
      throw new TypeError(`bad store address ${JSON.stringify(s)}: use nats://HOST:PORT[,HOST:PORT…]`);
    }
    out.push(`${m[1] ?? "nats"}://${m[2]}:${m[3]}`);
  }
  return out;
}
