// A FIFO queue with O(1) push, shift and unshift on a growable ring.

export class Deque<T> {
  private items: (T | undefined)[] = new Array(16);
  private head = 0;
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(v: T): void {
    if (this.size === this.items.length) this.grow();
    this.items[(this.head + this.size) & (this.items.length - 1)] = v;
    this.size++;
  }

  unshift(v: T): void {
    if (this.size === this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    this.items[this.head] = v;
    this.size++;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const v = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.size--;
    return v;
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.items[this.head];
  }

  peekLast(): T | undefined {
    return this.size === 0 ? undefined : this.items[(this.head + this.size - 1) & (this.items.length - 1)];
  }

  /**
   * Removes the first item that is `v`, keeping the order of the rest; true if there was one.
   * Costs its distance from the nearer end (nothing for the head, as a shift).
   */
  remove(v: T): boolean {
    const mask = this.items.length - 1;
    let i = 0;
    while (i < this.size && this.items[(this.head + i) & mask] !== v) i++;
    if (i === this.size) return false;
    if (i < this.size >> 1) {
      // Close the gap from the front: the items before it move up one.
      for (let j = i; j > 0; j--) this.items[(this.head + j) & mask] = this.items[(this.head + j - 1) & mask];
      this.items[this.head] = undefined;
      this.head = (this.head + 1) & mask;
    } else {
      for (let j = i; j < this.size - 1; j++)
        this.items[(this.head + j) & mask] = this.items[(this.head + j + 1) & mask];
      this.items[(this.head + this.size - 1) & mask] = undefined;
    }
    this.size--;
    return true;
  }

  /** Removes every item for which `pred` holds, keeping the order of the rest; returns them. */
  removeWhere(pred: (v: T) => boolean): T[] {
    const kept: T[] = [];
    const removed: T[] = [];
    for (const v of this.drain()) (pred(v) ? removed : kept).push(v);
    for (const v of kept) this.push(v);
    return removed;
  }

  /** Empties the queue, returning its items in order. */
  drain(): T[] {
    const out: T[] = [];
    while (this.size > 0) out.push(this.shift() as T);
    return out;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.size; i++) yield this.items[(this.head + i) & (this.items.length - 1)] as T;
  }

  private grow(): void {
    const next: (T | undefined)[] = new Array(this.items.length * 2);
    for (let i = 0; i < this.size; i++) next[i] = this.items[(this.head + i) & (this.items.length - 1)];
    this.items = next;
    this.head = 0;
  }
}
