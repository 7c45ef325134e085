// The anchor tree of one server: nodes exist while they hold an element or have descendants that
// do. Reading never creates a node; removing the last element under a node removes the now-empty
// ancestors.

import { AnchorBusy } from "../errors.js";

const formatPath = (names: readonly string[]): string => `/${names.join("/")}`;

interface Node<E> {
  element?: E;
  children: Map<string, Node<E>>;
}

export class AnchorTree<E> {
  private readonly root: Node<E> = { children: new Map() };
  private count = 0;

  /** Number of elements in the tree. */
  get size(): number {
    return this.count;
  }

  get(names: readonly string[]): E | undefined {
    return this.find(names)?.element;
  }

  /** Whether the anchor exists (holds an element or has descendants that do). */
  has(names: readonly string[]): boolean {
    return names.length === 0 || this.find(names) !== undefined;
  }

  /** Child names of an anchor in sorted order; [] when it does not exist. */
  children(names: readonly string[]): string[] {
    const n = this.find(names);
    return n ? [...n.children.keys()].sort() : [];
  }

  /** Places an element; throws AnchorBusy (naming `display`) if the anchor already holds one. */
  set(names: readonly string[], element: E, display = formatPath(names)): void {
    let node = this.root;
    for (const name of names) {
      let next = node.children.get(name);
      if (!next) {
        next = { children: new Map() };
        node.children.set(name, next);
      }
      node = next;
    }
    if (node.element !== undefined) {
      this.prune(names);
      throw new AnchorBusy(`${display} already holds an element`);
    }
    node.element = element;
    this.count++;
  }

  /** Removes the element at names if it is `element` (or any, without it); prunes empty ancestors. */
  remove(names: readonly string[], element?: E): boolean {
    const node = this.find(names);
    if (!node || node.element === undefined) return false;
    if (element !== undefined && node.element !== element) return false;
    node.element = undefined;
    this.count--;
    this.prune(names);
    return true;
  }

  /** Every element at or below names, depth first, with its names. */
  *walk(names: readonly string[]): Generator<[string[], E]> {
    const start = this.find(names);
    if (!start) return;
    const stack: [string[], Node<E>][] = [[[...names], start]];
    while (stack.length > 0) {
      const [p, node] = stack.pop() as [string[], Node<E>];
      if (node.element !== undefined) yield [p, node.element];
      const kids = [...node.children.keys()].sort().reverse();
      for (const k of kids) stack.push([[...p, k], node.children.get(k) as Node<E>]);
    }
  }

  private find(names: readonly string[]): Node<E> | undefined {
    let node: Node<E> | undefined = this.root;
    for (const name of names) {
      node = node.children.get(name);
      if (!node) return undefined;
    }
    return node;
  }

  private prune(names: readonly string[]): void {
    const trail: Node<E>[] = [this.root];
    for (const name of names) {
      const next = trail[trail.length - 1]?.children.get(name);
      if (!next) return;
      trail.push(next);
    }
    for (let i = names.length; i > 0; i--) {
      const node = trail[i] as Node<E>;
      if (node.element !== undefined || node.children.size > 0) return;
      trail[i - 1]?.children.delete(names[i - 1] as string);
    }
  }
}
