// No orphans (DESIGN.md §3.2): the processes of a daemon die with it, even with `kill -9`.
//
// Node has no PR_SET_PDEATHSIG, and a process that calls setsid() leaves its process group anyway,
// so the daemon keeps a record of what it started — each process's cgroup where the host has them
// (src/daemon/cgroups.ts), its process group and the leader's start time — in two places:
//   - a watchdog: a small detached process (src/daemon/watchdog.ts) started with the first process,
//     which reads the record as JSON lines on a pipe from the daemon. The daemon never closes that
//     pipe while it lives (and no child inherits its end: libuv opens pipes close-on-exec), so EOF
//     means the daemon is gone, however it went; the watchdog then kills everything recorded,
//     removes the cgroups and exits. If the watchdog itself dies, the daemon starts a new one.
//   - with `--data DIR`, the file DIR/procs.json, so that a daemon restarted on DIR kills what its
//     predecessor left (say the watchdog was killed too) before it serves.
// The record of a process is written before it is spawned (its cgroup) and completed right after
// (its process group), and dropped when its group is empty or it is detached (`scrub --keep`).

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../util/log.js";
import { type CgroupBackend, destroyGroup, openGroup } from "./cgroups.js";
import { groupTree, listProcesses, type ProcEntry } from "./procfs.js";

export interface ProcRecord {
  /** The element id, as text. */
  key: string;
  /** The process's cgroup, where it has one. */
  cgroup?: { version: 1 | 2; dirs: string[] };
  /** Its process group (the leader's pid) and the leader's start time, once it has been spawned. */
  pgid?: number;
  start?: number;
}

/** What the watchdog reads, one JSON object a line. */
export type GuardMessage = { set: ProcRecord } | { del: string };

/** Restart the watchdog at most this often if it keeps dying. */
const WATCHDOG_RESPAWN_MS = 1000;

/** This boot of the host: records from an earlier boot name processes that no longer exist. */
export function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

/**
 * Kills everything the records name: each cgroup as a whole (and removes it), and each process
 * group without a cgroup with its descendants, counting only processes that started no earlier
 * than the recorded leader (so a reused pid or pgid is left alone). Returns how many it signalled.
 */
export function reapRecords(records: Iterable<ProcRecord>): number {
  let n = 0;
  let table: ProcEntry[] | undefined;
  for (const r of records) {
    if (r.cgroup) {
      const g = openGroup(r.cgroup.version, r.cgroup.dirs);
      n += g.pids().length;
      destroyGroup(g);
    }
    if (r.pgid !== undefined && r.start !== undefined) {
      table ??= listProcesses();
      for (const e of groupTree(r.pgid, r.start, table)) {
        try {
          process.kill(e.pid, "SIGKILL");
          n++;
        } catch {
          // gone
        }
      }
    }
  }
  return n;
}

/** Kills and removes every group of server `owner` under the backend's hierarchy. */
export function reapOwner(backend: CgroupBackend, owner: string): number {
  let n = 0;
  for (const g of backend.groupsOf(owner)) {
    n += g.pids().length;
    destroyGroup(g);
  }
  backend.removeOwner(owner);
  return n;
}

interface RecordFile {
  bootId: string;
  records: ProcRecord[];
}

/**
 * On a restart with `--data DIR`: kills what the predecessor's record names (and what is left in
 * this server's cgroups), then clears the record. Returns how many processes it killed.
 */
export function reapPredecessor(dir: string, owner: string, backend: CgroupBackend | undefined): number {
  const file = join(dir, "procs.json");
  let n = 0;
  try {
    const f = JSON.parse(readFileSync(file, "utf8")) as RecordFile;
    if (f.bootId === bootId() && Array.isArray(f.records)) n += reapRecords(f.records);
  } catch {
    // no record, or not ours to read
  }
  if (backend) n += reapOwner(backend, owner);
  writeRecords(file, []);
  return n;
}

function writeRecords(file: string, records: ProcRecord[]): void {
  const body: RecordFile = { bootId: bootId(), records };
  // A crash mid-write must leave the old record whole: write aside, then rename over it.
  writeFileSync(`${file}.tmp`, JSON.stringify(body), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export interface ProcGuardOptions {
  /** The server ID: its cgroups are `circuit/<owner>/…`. */
  owner: string;
  /** The data directory, if the daemon has one. */
  dataDir?: string;
  /** Whether the watchdog should also sweep `circuit/<owner>` in the host's cgroups. */
  cgroups: boolean;
  log: Logger;
}

/** The daemon's side: keeps the record, in the watchdog and (with `--data`) on disk. */
export class ProcGuard {
  private readonly records = new Map<string, ProcRecord>();
  private watchdog: ChildProcess | undefined;
  private lastSpawn = 0;
  private closed = false;

  constructor(private readonly opts: ProcGuardOptions) {}

  /** The watchdog's pid while it runs (for `peek` of the server and for tests). */
  get watchdogPid(): number | undefined {
    return this.watchdog?.pid;
  }

  set(rec: ProcRecord): void {
    this.records.set(rec.key, rec);
    this.persist();
    this.send({ set: rec });
  }

  delete(key: string): void {
    if (!this.records.delete(key)) return;
    this.persist();
    this.send({ del: key });
  }

  /** The daemon is stopping and has ended its processes: the watchdog sweeps up and exits. */
  close(): void {
    this.closed = true;
    this.watchdog?.stdin?.end();
  }

  private persist(): void {
    if (this.opts.dataDir === undefined) return;
    try {
      writeRecords(join(this.opts.dataDir, "procs.json"), [...this.records.values()]);
    } catch (err) {
      this.opts.log.error(
        { event: "proc-record", data: this.opts.dataDir, reason: (err as Error).message },
        `cannot write the process record in ${this.opts.dataDir}: ${(err as Error).message}`,
      );
    }
  }

  private send(m: GuardMessage): void {
    if (this.closed) return;
    if (!this.watchdog) this.startWatchdog();
    this.watchdog?.stdin?.write(`${JSON.stringify(m)}\n`);
  }

  private startWatchdog(): void {
    const now = Date.now();
    if (now - this.lastSpawn < WATCHDOG_RESPAWN_MS) {
      setTimeout(() => {
        if (!this.watchdog && !this.closed && this.records.size > 0) this.startWatchdog();
      }, WATCHDOG_RESPAWN_MS).unref();
      return;
    }
    this.lastSpawn = now;
    const self = fileURLToPath(import.meta.url);
    // Under tsx (tests, examples) this file is the .ts source and so is the watchdog.
    const ts = self.endsWith(".ts");
    // Through "../daemon/": the same from dist/daemon/ and from `circuit start`'s bundle in dist/cli/.
    const script = join(self, "..", "..", "daemon", ts ? "watchdog.ts" : "watchdog.js");
    // tsx resolved from here, not from the daemon's working directory.
    const args = [
      ...(ts ? ["--import", import.meta.resolve("tsx")] : []),
      script,
      this.opts.owner,
      this.opts.cgroups ? "cgroups" : "none",
    ];
    let w: ChildProcess;
    try {
      // Detached: its own session, so a signal to the daemon's process group or terminal spares it.
      w = spawn(process.execPath, args, { detached: true, stdio: ["pipe", "ignore", "ignore"] });
    } catch (err) {
      this.opts.log.error(
        { event: "watchdog", reason: (err as Error).message },
        `cannot start the process watchdog: ${(err as Error).message}`,
      );
      return;
    }
    this.watchdog = w;
    w.on("error", () => {});
    w.stdin?.on("error", () => {});
    w.once("exit", () => {
      if (this.watchdog === w) this.watchdog = undefined;
      if (!this.closed) {
        this.opts.log.warn({ event: "watchdog" }, "the process watchdog exited; starting another");
        if (this.records.size > 0) this.startWatchdog();
      }
    });
    // The watchdog must not keep the daemon's event loop alive.
    w.unref();
    (w.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    for (const rec of this.records.values()) w.stdin?.write(`${JSON.stringify({ set: rec })}\n`);
  }
}
