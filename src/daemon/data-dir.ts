// --data DIR: the server's identity survives restarts, and two daemons never share one directory.

import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isServerId } from "../wire/path.js";

export class DataDirBusy extends Error {}

export interface DataDir {
  id: string;
  /** Releases the lock (on stop). */
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Locks DIR for this process and returns the ID kept there (making one with `newId` the first time). */
export function openDataDir(dir: string, newId: () => string): DataDir {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, "lock");
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lock, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 2) throw err;
      const pid = Number.parseInt(readFileSync(lock, "utf8"), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new DataDirBusy(`data directory ${dir} is in use by process ${pid}`);
      }
      // A lock left by a daemon that died: take it over.
      rmSync(lock, { force: true });
    }
  }
  const idFile = join(dir, "id");
  let id = existsSync(idFile) ? readFileSync(idFile, "utf8").trim() : "";
  if (!isServerId(id)) {
    id = newId();
    writeFileSync(idFile, `${id}\n`, { mode: 0o600 });
  }
  return {
    id,
    release: () => {
      try {
        if (Number.parseInt(readFileSync(lock, "utf8"), 10) === process.pid) rmSync(lock, { force: true });
      } catch {
        // already gone
      }
    },
  };
}
