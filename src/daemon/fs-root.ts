// The one directory of a server whose files the circuit may read and write (`--fs-root DIR`).
// A client names files relative to it; absolute paths and ".." are refused outright, and every path
// is resolved with realpath and checked to lie inside the root, so a symlink cannot lead out.
// (A local user racing to swap a checked directory for a symlink could still win; the root is for
// trusted circuit users, not a sandbox against the host's own users.)

import { realpathSync, statSync } from "node:fs";
import { lstat, mkdir, realpath } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import { AccessDenied, CircuitError, NotFound, WrongKind } from "../errors.js";

/** Checks a --fs-root argument; TypeError if it is not a directory. Returns its real path. */
export function resolveFsRoot(dir: string): string {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    throw new TypeError(`--fs-root ${dir}: no such directory`);
  }
  if (!statSync(real).isDirectory()) throw new TypeError(`--fs-root ${dir}: not a directory`);
  return real;
}

/** An fs error as the circuit error a caller branches on. */
export function fsError(err: unknown, rel: string): CircuitError {
  if (err instanceof CircuitError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  const what = JSON.stringify(rel);
  switch (code) {
    case "ENOENT":
      return new NotFound(`no file ${what}`);
    case "ENOTDIR":
      return new NotFound(`no file ${what}: a parent is not a directory`);
    case "EISDIR":
      return new WrongKind(`${what} is a directory`);
    case "EACCES":
    case "EPERM":
      return new AccessDenied(`${what}: permission denied on the server`);
    default:
      return new CircuitError("Internal", `${what}: ${code ?? (err as Error)?.message ?? err}`);
  }
}

export class FsRoot {
  constructor(readonly root: string) {}

  /** The path under the root that `rel` names, without touching the disk. */
  lexical(rel: unknown): string {
    if (typeof rel !== "string" || rel.length > 4096) throw new TypeError("a file path is a string");
    if (rel.includes("\0")) throw new AccessDenied("a file path cannot hold NUL");
    if (rel.startsWith("/"))
      throw new AccessDenied(
        `${JSON.stringify(rel)}: absolute paths are refused; name files relative to the server's file root`,
      );
    const parts = rel.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) throw new AccessDenied(`${JSON.stringify(rel)}: ".." is refused`);
    return parts.length === 0 ? this.root : join(this.root, ...parts);
  }

  inside(real: string): boolean {
    return real === this.root || real.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep);
  }

  /** The real path of an existing entry, which must lie inside the root. */
  async existing(rel: string): Promise<string> {
    const p = this.lexical(rel);
    let real: string;
    try {
      real = await realpath(p);
    } catch (err) {
      // A symlink that points nowhere (or somewhere unreadable) is refused like any other escape.
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && (await isLink(p))) {
        throw new AccessDenied(`${JSON.stringify(rel)} is a symlink that leads nowhere inside the file root`);
      }
      throw fsError(err, rel);
    }
    if (!this.inside(real)) throw new AccessDenied(`${JSON.stringify(rel)} leads outside the server's file root`);
    return real;
  }

  /**
   * Where to write `rel`: its real path, after creating missing parent directories inside the root.
   * An existing target (or a symlink) must resolve inside the root.
   */
  async forWrite(rel: string): Promise<string> {
    const p = this.lexical(rel);
    if (p === this.root) throw new WrongKind("the file root itself is a directory");
    if (await exists(p)) return this.existing(rel);
    if (await isLink(p))
      throw new AccessDenied(`${JSON.stringify(rel)} is a symlink that leads nowhere inside the file root`);
    // The deepest ancestor that exists decides where new directories would go.
    let anc = dirname(p);
    while (!(await exists(anc))) anc = dirname(anc);
    const realAnc = await realpath(anc).catch((err) => {
      throw fsError(err, rel);
    });
    if (!this.inside(realAnc)) throw new AccessDenied(`${JSON.stringify(rel)} leads outside the server's file root`);
    const rest = p.slice(anc.length);
    const target = join(realAnc, rest);
    await mkdir(dirname(target), { recursive: true }).catch((err) => {
      throw fsError(err, rel);
    });
    const realParent = await realpath(dirname(target));
    if (!this.inside(realParent)) throw new AccessDenied(`${JSON.stringify(rel)} leads outside the server's file root`);
    return join(realParent, target.slice(dirname(target).length + 1));
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await realpath(p);
    return true;
  } catch {
    return false;
  }
}

async function isLink(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isSymbolicLink();
  } catch {
    return false;
  }
}
