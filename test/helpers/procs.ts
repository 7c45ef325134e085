// Finding processes and cgroups from the outside, for the confinement and no-orphans tests: by a
// marker argument in /proc/PID/cmdline, and by the directories a daemon makes in each hierarchy.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { hostCgroups } from "../../src/daemon/cgroups.ts";
import { reapOwner } from "../../src/daemon/proc-guard.ts";

/** A number no other process on the machine has as an argument: `sleep 1000.<marker>`. */
export function marker(): string {
  return `1000.${process.pid}${Math.floor(Math.random() * 1e6)}`;
}

/** The argument vector of a live process, or undefined. */
export function argv(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw === "" ? undefined : raw.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/** Pids of the live processes with an argument exactly `arg` (zombies have no cmdline). */
export function pidsWithArg(arg: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    if (argv(Number(name))?.includes(arg)) out.push(Number(name));
  }
  return out;
}

/** Pids of processes whose arguments include all of `parts` as substrings of some argument. */
export function pidsMatching(...parts: string[]): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const a = argv(Number(name));
    if (a && parts.every((p) => a.some((x) => x.includes(p)))) out.push(Number(name));
  }
  return out;
}

export function killPids(pids: number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** The v1 hierarchies on this host that hold a server's directory `circuit/<id>`. */
export function ownerDirs(id: string): string[] {
  const roots = ["memory", "cpu", "cpuacct", "pids", "freezer"].map((h) => join("/sys/fs/cgroup", h, "circuit", id));
  return [...roots, join("/sys/fs/cgroup/unified/circuit", id)].filter((d) => existsSync(d));
}

/** The cgroup of `pid` in hierarchy `controller` ("/circuit/X…/3"), from /proc/PID/cgroup. */
export function cgroupOf(pid: number, controller: string): string | undefined {
  try {
    for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
      const [, ctrls, path] = line.split(":");
      if (ctrls?.split(",").includes(controller)) return path;
    }
  } catch {
    // gone
  }
  return undefined;
}

/** Kills and removes whatever the given servers left in the host's cgroups (test cleanup). */
export function removeCgroupsOf(ids: Iterable<string>): void {
  const cg = hostCgroups();
  if (!cg.backend) return;
  for (const id of ids) reapOwner(cg.backend, id);
}

/** Polls `check` every 50 ms until it is true; false if `ms` passed first. */
export async function within(ms: number, check: () => boolean): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
