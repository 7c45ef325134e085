// The broadcast queue: gossip waiting to be piggybacked on protocol messages, with how often each
// item was sent (memberlist's TransmitLimitedQueue). Items are keyed by member id: a newer item
// about a member replaces the older one.

import { Deque } from "../util/deque.js";

interface QueueEntry<I> {
  readonly item: I;
}

/**
 * One item per member, kept in FIFO buckets by how often each was sent so the least-sent go first
 * at O(1) per item. Replaced items stay in their bucket as stale entries and are dropped when
 * reached.
 */
export class GossipQueue<I extends { readonly id: string }> {
  private readonly buckets: Deque<QueueEntry<I>>[] = [];
  private readonly current = new Map<string, QueueEntry<I>>();
  private stale = 0;

  put(item: I): void {
    if (this.current.has(item.id)) this.stale++;
    const e = { item };
    this.current.set(item.id, e);
    this.bucket(0).push(e);
    if (this.stale > 1024 && this.stale > 2 * this.current.size) this.compact();
  }

  /**
   * Appends up to `max` items to `out`, skipping members that `out` already has an item about;
   * an item sent `limit` times is dropped.
   */
  take(max: number, limit: number, out: I[]): void {
    const first = out.length;
    let want = max;
    // Promotions wait until the end, or one item could climb every bucket within one message.
    const promoted: [QueueEntry<I>, number][] = [];
    for (let i = 0; i < this.buckets.length && want > 0; i++) {
      const b = this.buckets[i] as Deque<QueueEntry<I>>;
      const skipped: QueueEntry<I>[] = [];
      while (want > 0 && b.length > 0) {
        const e = b.shift() as QueueEntry<I>;
        if (this.current.get(e.item.id) !== e) {
          this.stale--;
          continue;
        }
        if (first > 0 && has(out, first, e.item.id)) {
          skipped.push(e);
          continue;
        }
        out.push(e.item);
        want--;
        if (i + 1 < limit) promoted.push([e, i + 1]);
        else this.current.delete(e.item.id);
      }
      for (let j = skipped.length - 1; j >= 0; j--) b.unshift(skipped[j] as QueueEntry<I>);
    }
    for (const [e, i] of promoted) this.bucket(i).push(e);
  }

  private bucket(i: number): Deque<QueueEntry<I>> {
    while (this.buckets.length <= i) this.buckets.push(new Deque());
    return this.buckets[i] as Deque<QueueEntry<I>>;
  }

  private compact(): void {
    for (const b of this.buckets) b.removeWhere((e) => this.current.get(e.item.id) !== e);
    this.stale = 0;
  }
}

/** True if one of the first `n` items is about member `id`. */
function has<I extends { readonly id: string }>(items: I[], n: number, id: string): boolean {
  for (let i = 0; i < n; i++) if ((items[i] as I).id === id) return true;
  return false;
}
