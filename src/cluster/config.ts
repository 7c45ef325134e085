// Every timing knob of the membership protocol (src/cluster/membership.ts) in one place.
//
// The defaults are chosen to meet DESIGN.md §6 on a LAN-sized cluster (up to a few dozen
// daemons; the suspicion window grows with log10 of the cluster size beyond 10 members):
//   - a silent member (no packets at all) is declared dead by everyone within 5 s;
//   - a member whose event loop is blocked for 2 s, then wakes and refutes, is not declared dead;
//   - a crashed process whose connections are refused is dead everywhere within 1 s.
// Detection time ≈ one or two probe periods + the suspicion window + a few periods to spread the
// verdict; the 2 s tolerance comes from suspicionMinMs exceeding 2 s plus the time a refutation
// needs to reach the suspecters.

export interface SwimConfig {
  /**
   * Probe period: each member probes one other member per period (scaled up by the local health
   * multiplier). Shorter finds failures sooner but costs proportionally more messages per second;
   * the message count per period stays constant in cluster size either way.
   */
  periodMs: number;
  /**
   * How long a direct ping waits for its ack before asking others to probe indirectly (scaled by
   * the local health multiplier). Must leave room in the period for the indirect round trip
   * (two hops each way); too short mistakes a slow peer for a lost packet.
   */
  probeTimeoutMs: number;
  /**
   * k: how many members are asked to probe a target that missed its direct ack. More rides out
   * packet loss and one-sided link trouble better, at k more requests (plus their pings, acks
   * and nacks) per failed probe.
   */
  indirectProbes: number;
  /**
   * Lifeguard dynamic suspicion: a suspicion starts at suspicionMaxMs and shrinks toward
   * suspicionMinMs as independent confirmations arrive; both are multiplied by max(1, log10(n))
   * for n live members, since a refutation needs O(log n) periods to spread. A higher minimum
   * tolerates longer stalls (GC pauses, a blocked event loop) but detects silent members later.
   */
  suspicionMinMs: number;
  /** Upper end of the suspicion window: what a lone, unconfirmed suspicion waits. */
  suspicionMaxMs: number;
  /**
   * K: independent confirmations (other members' own failed probes) that bring the suspicion
   * window down to its minimum. Higher means one confused member can shorten it less.
   */
  suspicionConfirmations: number;
  /**
   * Each gossip item is piggybacked about retransmitMult × ceil(log10(n + 1)) times by each member
   * that learns it. Higher makes dissemination more certain under loss, at the cost of fuller
   * messages and slower turnover of the piggyback queue.
   */
  retransmitMult: number;
  /** Gossip items carried per protocol message at most; bounds message size. */
  maxPiggyback: number;
  /**
   * Lifeguard local health multiplier cap: a member that misses nacks, has to refute suspicion, or
   * finds its own event loop stalled scales its probe timeout and period by up to this factor,
   * so a struggling member slows down instead of accusing healthy ones.
   */
  maxLocalHealth: number;
  /**
   * Push-pull: a full-state exchange with one random live member every interval (jittered ±50%).
   * Heals any divergence the gossip missed; its message size grows with the cluster, so shorter
   * costs bandwidth linear in n per interval.
   */
  syncIntervalMs: number;
  /**
   * A full-state exchange with one random member we believe dead, every interval (jittered). This
   * is how two sides of a healed partition find each other again; each try costs one message
   * (or a refused connection) per interval.
   */
  reconnectIntervalMs: number;
  /**
   * Catch-up: every message says how many members its sender considers live. A member that counts
   * several fewer (a burst of joins it has not heard of yet) pulls the full state of the
   * best-informed peer it has heard from — at most once per this interval. A burst of joins then
   * converges in a few periods instead of waiting for piggyback bandwidth; a stable cluster never
   * triggers it. Shorter converges bursts faster at the price of more full-state messages. One
   * probe period (at most one extra message per member per period while catching up) brings 1,000
   * members joining at once to convergence within 10 periods; 500 ms took 10–11.
   */
  catchUpMs: number;
  /**
   * A member that counts just one fewer than a peer pulls only if the gap outlives this: long
   * enough for gossip to deliver a single join (O(log n) periods), so a lone join or death costs
   * no full-state exchanges, yet a piece of news that gossip somehow dropped is still fetched. A
   * member that itself learned of a join within this interval is in a burst and does not wait.
   */
  catchUpLagMs: number;
  /**
   * A join whose seed has not answered is retried until some seed replies: first after
   * joinRetryMs, then at twice the previous delay, capped at joinRetryMaxMs. A short first delay
   * joins quickly when the seed is merely starting up; the cap bounds both how long a daemon
   * started before its seed waits once the seed is up, and the load that a crowd of daemons
   * pointed at a dead seed puts on it (one connection attempt per daemon per cap).
   */
  joinRetryMs: number;
  /** Upper bound of the join retry delay (see joinRetryMs). */
  joinRetryMaxMs: number;
  /**
   * Dead and left members are remembered this long (so stale gossip cannot revive them, and
   * reconnect attempts can find them after a partition), then forgotten.
   */
  deadRetainMs: number;
  /**
   * A gap between two tick() calls longer than this means our own event loop was blocked: the
   * excess is not counted against other members (pending deadlines move by it, since their
   * answers may be sitting unread in our input), and our local health worsens. Must comfortably
   * exceed the driver's tick interval.
   */
  stallMs: number;
}

export const DEFAULT_SWIM: Readonly<SwimConfig> = Object.freeze({
  periodMs: 200,
  probeTimeoutMs: 100,
  indirectProbes: 3,
  suspicionMinMs: 2500,
  suspicionMaxMs: 4000,
  suspicionConfirmations: 3,
  retransmitMult: 4,
  maxPiggyback: 12,
  maxLocalHealth: 8,
  syncIntervalMs: 5000,
  reconnectIntervalMs: 10_000,
  catchUpMs: 200,
  catchUpLagMs: 1000,
  joinRetryMs: 1000,
  joinRetryMaxMs: 30_000,
  deadRetainMs: 10 * 60_000,
  stallMs: 250,
});

/**
 * How each server measures and publishes its load for placement (src/cluster/placement.ts,
 * src/daemon/load-meter.ts). The load rides on the server's membership item: every publication
 * raises its incarnation and is gossiped like any change, so its cost is one small item
 * retransmitted O(log n) times — nobody polls anybody.
 */
export interface LoadConfig {
  /**
   * How often the host's CPU and this server's processes are sampled. Shorter follows bursts
   * sooner; each sample reads /proc/stat and the processes' last figures (cheap).
   */
  sampleMs: number;
  /**
   * CPU figures are averaged over this many samples ("the last few seconds"): more smooths out
   * spikes that would send every placement to the server that happened to idle for one second,
   * fewer reacts faster to a server that became busy.
   */
  window: number;
  /**
   * A publication goes out when the figures moved (a process started or ended, CPU moved by
   * `cpuDelta` cores, free memory by a tenth) but not more often than this: the bound on the
   * gossip a busy server causes. A process start or exit is published after at most this long.
   */
  minPublishMs: number;
  /** …and at least this often, changed or not, so that a stale figure cannot linger. */
  maxPublishMs: number;
  /** The CPU change in cores that is worth a publication. */
  cpuDelta: number;
  /**
   * A placement this server made counts against its target until the target's gossiped load has
   * moved on by this many publications (or this long has passed, below): without it, a burst of
   * placements would all go to the server that looked idlest before the burst.
   */
  pendingPublications: number;
  pendingMaxMs: number;
}

export const DEFAULT_LOAD: Readonly<LoadConfig> = Object.freeze({
  sampleMs: 1000,
  window: 3,
  minPublishMs: 250,
  maxPublishMs: 5000,
  cpuDelta: 0.1,
  pendingPublications: 2,
  pendingMaxMs: 5000,
});
