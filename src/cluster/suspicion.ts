// One suspicion of a member (Lifeguard): a window that starts at `max` and shrinks towards `min` as
// independent confirmations from other members arrive. The suspect dies when the window ends
// unless it refutes first. Pure: the caller passes the time in.

/** How a suspicion's window is sized. */
export interface SuspicionWindow {
  /** The shortest window, with `k` confirmations. */
  min: number;
  /** The longest window, with none. */
  max: number;
  /** Confirmations that bring the window down to `min` (0: it is `min` from the start). */
  k: number;
}

export class Suspicion {
  /** The first suspecter's id; confirmations are other members. */
  readonly by: string;
  private readonly confirmers: Set<string>;
  private startedAt: number;
  /** When the suspect is declared dead, unless it refutes. */
  deadline: number;

  constructor(
    /** The incarnation the suspect is suspected at. */
    readonly inc: number,
    by: string,
    private readonly window: SuspicionWindow,
    now: number,
  ) {
    this.by = by;
    this.confirmers = new Set([by]);
    this.startedAt = now;
    this.deadline = now + suspicionTimeout(window, 0);
  }

  /** An independent suspicion from `by`: returns false if `by` was counted already. */
  confirm(by: string): boolean {
    if (this.confirmers.has(by)) return false;
    this.confirmers.add(by);
    this.deadline = this.startedAt + suspicionTimeout(this.window, this.confirmers.size - 1);
    return true;
  }

  /** Our own event loop stalled for `excess` ms: that time does not count against the suspect. */
  postpone(excess: number): void {
    this.startedAt += excess;
    this.deadline += excess;
  }
}

/** Lifeguard: from `max` with no confirmations down to `min` at `k`, logarithmically. */
export function suspicionTimeout(w: SuspicionWindow, confirmations: number): number {
  if (w.k < 1) return w.min;
  const frac = Math.log(confirmations + 1) / Math.log(w.k + 1);
  return Math.max(w.min, w.max - frac * (w.max - w.min));
}
