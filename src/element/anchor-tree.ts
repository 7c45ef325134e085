// The anchor tree of one server: nodes exist while they hold an element or have descendants that
// do. Reading never creates a node; removing the last element under a node removes the now-empty
// ancestors.

import { AnchorBusy } from "../errors.js";

const NAME = /^[A-Za-z0-9._@-]{1,128}$/;
const SERVER_ID = /^X[0-9a-f]{16}$/;

/** Checks one anchor name; returns a reason when it is not valid. */
export function badName(name: string): string | undefined {
  if (!NAME.test(name)) return `bad anchor name ${JSON.stringify(name)}: use 1 to 128 of A-Z a-z 0-9 . _ - @`;
  if (/^\.+$/.test(name)) return `bad anchor name ${JSON.stringify(name)}: dots alone are not a name`;
  return undefined;
}

export function isServerId(s: string): boolean {
  return SERVER_ID.test(s);
}

/**
 * Splits an absolute path into names: "/" → [], "/X…/a/b" → ["X…", "a", "b"]. The first name must be
 * a server ID. Throws TypeError with the reason for anything else.
 */
export function parsePath(path: string | readonly string[]): string[] {
  let names: string[];
  if (typeof path === "string") {
    if (!path.startsWith("/")) throw new TypeError(`bad path ${JSON.stringify(path)}: it must start with /`);
    const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
    names = trimmed === "/" ? [] : trimmed.slice(1).split("/");
  } else if (Array.isArray(path)) {
    names = [...path];
  } else {
    throw new TypeError("a path is a string or an array of names");
  }
  for (const n of names) {
    if (typeof n !== "string") throw new TypeError("a path is a string or an array of names");
    const why = badName(n);
    if (why) throw new TypeError(`bad path ${JSON.stringify(formatPath(names))}: ${why}`);
  }
  if (names.length > 0 && !isServerId(names[0] as string)) {
    throw new TypeError(
      `bad path ${JSON.stringify(formatPath(names))}: it must start with a server ID like /X3f9c0a1be2d47780`,
    );
  }
  if (names.length > 64) throw new TypeError("bad path: more than 64 names deep");
  return names;
}

export function formatPath(names: readonly string[]): string {
  return `/${names.join("/")}`;
}

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
