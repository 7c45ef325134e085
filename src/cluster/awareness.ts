// Local health (Lifeguard's "awareness"): a score of how badly we ourselves are doing — missed
// nacks, refutations of suspicions about us, stalls of our own event loop. Probe intervals and
// timeouts are multiplied by score + 1, so a struggling member is slower to judge others.

export class Awareness {
  private score = 0;

  /** `max`: the score stays below it (SwimConfig.maxLocalHealth). */
  constructor(private readonly max: number) {}

  /** Adds `delta` (negative: a success), kept within 0 … max - 1. */
  apply(delta: number): void {
    this.score = Math.max(0, Math.min(this.max - 1, this.score + delta));
  }

  /** The multiplier now in force (1 = healthy). */
  get multiplier(): number {
    return this.score + 1;
  }
}
