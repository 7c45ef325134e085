// Control groups: where the host has them, every process a daemon starts gets a group of its own,
// `<hierarchy>/circuit/<server id>/<element id>`, which holds it and every descendant (whatever
// process group or session they move to), carries its limits, counts its CPU and memory, and can be
// killed as a whole. Two backends behind one interface: cgroup v1 (one hierarchy per controller,
// e.g. /sys/fs/cgroup/memory) and cgroup v2 (one unified hierarchy). The daemon needs root (or a
// cgroupfs it may write); the groups live under the hierarchy's root, as Docker's cgroupfs driver
// puts its containers, not under the daemon's own group, so a v2 host needs no "no internal
// processes" dance.
//
// Every operation here is a few synchronous reads and writes of cgroupfs files: they never touch a
// disk, and keeping them synchronous keeps the spawn sequence free of interleavings.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ProcLimits } from "../wire/proc-limits.js";

/** The CFS period for `cpus`: 100 ms, the kernel's default. A quota is `cpus` times this. */
export const CPU_PERIOD_US = 100_000;
/** The directory under each hierarchy's root that holds every daemon's groups. */
export const TOP = "circuit";

/** What a group used: CPU time so far (ns) and resident memory now (bytes), where the host counts them. */
export interface GroupUsage {
  cpuNs?: number;
  rssBytes?: number;
}

/** One process's group (on v1: one directory per hierarchy). */
export interface ProcGroup {
  readonly version: 1 | 2;
  /** Its directories, absolute. */
  readonly dirs: readonly string[];
  /** The files a process writes its own pid into to join the group (every hierarchy's cgroup.procs). */
  readonly joinFiles: readonly string[];
  /** The processes in it now. */
  pids(): number[];
  /** Whether `pid` has joined it (on v1: every hierarchy). */
  holds(pid: number): boolean;
  usage(): GroupUsage;
  /** How many times the kernel's OOM killer has killed a process of this group. */
  oomKills(): number;
  /** Sends `sig` to every process in the group. */
  signal(sig: NodeJS.Signals): void;
  /** SIGKILLs every process in it, without a window for a fork to escape (cgroup.kill or freezer). */
  kill(): void;
  /** Removes its directories; false while processes are still in it. */
  remove(): boolean;
  /** Moves every process in it back to the hierarchy's root, then removes it (`scrub({ keep: true })`). */
  release(): void;
}

export interface CgroupBackend {
  readonly version: 1 | 2;
  /** Why `limits` cannot be enforced on this host (a controller it needs is missing), or undefined. */
  cannot(limits: ProcLimits): string | undefined;
  /** Creates group `name` of server `owner` with `limits`; throws (with the errno) where the host refuses. */
  create(owner: string, name: string, limits: ProcLimits | undefined): ProcGroup;
  /** The groups of server `owner` that exist now (a predecessor's leftovers, on a restart). */
  groupsOf(owner: string): ProcGroup[];
  /** Removes the (empty) directories of server `owner`, and the top one if no other daemon uses it. */
  removeOwner(owner: string): void;
}

export type CgroupSupport = { backend: CgroupBackend; reason?: undefined } | { backend?: undefined; reason: string };

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** Parses /proc/self/mountinfo (proc(5)): the fields after " - " are type, source, super options. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    const mp = left[4];
    if (!mp || !right[0]) continue;
    // Octal escapes for space, tab, newline and backslash.
    const mountPoint = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({ mountPoint, fsType: right[0], superOptions: (right[2] ?? "").split(",") });
  }
  return out;
}

const V1_CONTROLLERS = ["memory", "cpu", "cpuacct", "pids", "freezer"] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];
const V2_CONTROLLERS = ["memory", "cpu", "pids"] as const;

/**
 * Which backend this host offers, from its mount table: a cgroup2 hierarchy with the memory, cpu
 * and pids controllers wins; else the v1 hierarchies of those controllers (plus cpuacct and freezer);
 * else the reason there is none. `read` returns a file's text or undefined (a seam for tests).
 */
export function detectCgroups(mountinfo: string, read: (path: string) => string | undefined = readText): CgroupSupport {
  const mounts = parseMountinfo(mountinfo);
  const notes: string[] = [];
  for (const m of mounts.filter((m) => m.fsType === "cgroup2")) {
    const have = (read(join(m.mountPoint, "cgroup.controllers")) ?? "").trim().split(/\s+/);
    const missing = V2_CONTROLLERS.filter((c) => !have.includes(c));
    if (missing.length === 0) return { backend: new V2Backend(m.mountPoint) };
    notes.push(`cgroup2 at ${m.mountPoint} lacks ${missing.join(", ")}`);
  }
  const v1 = new Map<V1Controller, string>();
  for (const m of mounts.filter((m) => m.fsType === "cgroup")) {
    for (const c of V1_CONTROLLERS) if (m.superOptions.includes(c) && !v1.has(c)) v1.set(c, m.mountPoint);
  }
  if (v1.size > 0) return { backend: new V1Backend(v1) };
  notes.push("no cgroup v1 controller is mounted");
  return { reason: `this host offers no usable cgroups (${notes.join("; ")})` };
}

/** The host's backend, from /proc/self/mountinfo. */
export function hostCgroups(): CgroupSupport {
  const text = readText("/proc/self/mountinfo");
  if (text === undefined) return { reason: "this host has no /proc/self/mountinfo (not Linux?)" };
  return detectCgroups(text);
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function write(path: string, value: string): void {
  writeFileSync(path, value);
}

function mkdirP(dir: string): void {
  // Another daemon may remove an empty TOP between our mkdirs: try again.
  for (let i = 0; ; i++) {
    try {
      mkdirSync(dir, { recursive: true });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || i >= 3) throw err;
    }
  }
}

function rmdirQuiet(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT";
  }
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** A key's number from a "key value" file (memory.stat, cpu.stat, memory.events, memory.oom_control). */
export function statValue(text: string | undefined, key: string): number | undefined {
  if (text === undefined) return undefined;
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

function pidsIn(file: string): number[] {
  const t = readText(file);
  if (t === undefined) return [];
  return t
    .split("\n")
    .filter((l) => l !== "")
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

function killEach(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // gone already
    }
  }
}

/** A synchronous pause, for the few milliseconds a freezer takes to settle. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- v1 ----

class V1Backend implements CgroupBackend {
  readonly version = 1;
  /** One root per hierarchy (cpu and cpuacct are often mounted together). */
  private readonly roots: string[];

  constructor(private readonly mounts: Map<V1Controller, string>) {
    this.roots = [...new Set(mounts.values())];
  }

  cannot(l: ProcLimits): string | undefined {
    const need: [boolean, V1Controller][] = [
      [l.memoryBytes !== undefined, "memory"],
      [l.cpus !== undefined, "cpu"],
      [l.pids !== undefined, "pids"],
    ];
    for (const [wanted, c] of need) {
      if (wanted && !this.mounts.has(c)) return `the cgroup v1 ${c} controller is not mounted on this host`;
    }
    return undefined;
  }

  create(owner: string, name: string, limits: ProcLimits | undefined): ProcGroup {
    // A group in the cpu hierarchy is a scheduling entity of its own, which competes with each
    // process outside it as one: on a busy host an unlimited process would get less CPU than if
    // it were not in a group. So the cpu hierarchy is joined only for a `cpus` limit (where cpuacct
    // is mounted with cpu, CPU use then comes from /proc instead).
    const cpu = this.mounts.get("cpu");
    const roots = this.roots.filter((r) => r !== cpu || limits?.cpus !== undefined);
    const dirs = roots.map((r) => join(r, TOP, owner, name));
    let g = new V1Group([]);
    try {
      for (const d of dirs) mkdirP(d);
      g = new V1Group(dirs);
      const at = (c: V1Controller) => join(this.mounts.get(c) as string, TOP, owner, name);
      if (limits?.memoryBytes !== undefined) {
        write(join(at("memory"), "memory.limit_in_bytes"), String(limits.memoryBytes));
        // With swap accounting, memory+swap gets the same bound: the limit kills rather than swaps.
        const memsw = join(at("memory"), "memory.memsw.limit_in_bytes");
        if (existsSync(memsw)) write(memsw, String(limits.memoryBytes));
      }
      if (limits?.cpus !== undefined) {
        write(join(at("cpu"), "cpu.cfs_period_us"), String(CPU_PERIOD_US));
        write(join(at("cpu"), "cpu.cfs_quota_us"), String(Math.round(limits.cpus * CPU_PERIOD_US)));
      }
      if (limits?.pids !== undefined) write(join(at("pids"), "pids.max"), String(limits.pids));
    } catch (err) {
      // Also the directories made before a later hierarchy refused.
      for (const d of dirs) rmdirQuiet(d);
      throw err;
    }
    return g;
  }

  groupsOf(owner: string): ProcGroup[] {
    const names = new Set(this.roots.flatMap((r) => subdirs(join(r, TOP, owner))));
    return [...names].map((n) => new V1Group(this.roots.map((r) => join(r, TOP, owner, n)).filter(existsSync)));
  }

  removeOwner(owner: string): void {
    for (const r of this.roots) {
      rmdirQuiet(join(r, TOP, owner));
      rmdirQuiet(join(r, TOP));
    }
  }
}

/** A v1 group: one directory per hierarchy; what each does is told by the files it holds. */
export class V1Group implements ProcGroup {
  readonly version = 1;
  readonly joinFiles: string[];
  private readonly freezer?: string;
  private readonly memory?: string;
  private readonly cpuacct?: string;

  constructor(readonly dirs: string[]) {
    this.joinFiles = dirs.map((d) => join(d, "cgroup.procs"));
    for (const d of dirs) {
      if (existsSync(join(d, "freezer.state"))) this.freezer = d;
      if (existsSync(join(d, "memory.stat"))) this.memory = d;
      if (existsSync(join(d, "cpuacct.usage"))) this.cpuacct = d;
    }
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const f of this.joinFiles) for (const p of pidsIn(f)) all.add(p);
    return [...all];
  }

  holds(pid: number): boolean {
    return this.joinFiles.every((f) => pidsIn(f).includes(pid));
  }

  usage(): GroupUsage {
    const u: GroupUsage = {};
    if (this.cpuacct) {
      const ns = Number(readText(join(this.cpuacct, "cpuacct.usage")));
      if (Number.isFinite(ns)) u.cpuNs = ns;
    }
    if (this.memory) {
      const st = readText(join(this.memory, "memory.stat"));
      const rss = statValue(st, "total_rss");
      if (rss !== undefined) u.rssBytes = rss + (statValue(st, "total_mapped_file") ?? 0);
    }
    return u;
  }

  oomKills(): number {
    if (!this.memory) return 0;
    return statValue(readText(join(this.memory, "memory.oom_control")), "oom_kill") ?? 0;
  }

  signal(sig: NodeJS.Signals): void {
    killEach(this.pids(), sig);
  }

  kill(): void {
    if (!this.freezer) {
      // Without a freezer a fork may slip between reading the list and the kills: go round again.
      for (let i = 0; i < 20 && this.pids().length > 0; i++) {
        killEach(this.pids(), "SIGKILL");
        pause(5);
      }
      return;
    }
    const state = join(this.freezer, "freezer.state");
    try {
      // Frozen, nobody in the group can fork; the SIGKILLs are delivered as it thaws.
      write(state, "FROZEN");
      for (let i = 0; i < 100 && readText(state)?.trim() !== "FROZEN"; i++) pause(2);
      killEach(this.pids(), "SIGKILL");
    } finally {
      try {
        write(state, "THAWED");
      } catch {
        // removed meanwhile
      }
    }
  }

  remove(): boolean {
    let all = true;
    for (const d of this.dirs) all = rmdirQuiet(d) && all;
    return all;
  }

  release(): void {
    for (const d of this.dirs) {
      // <root>/circuit/<owner>/<name>: the root is three levels up.
      const root = dirname(dirname(dirname(d)));
      for (const p of pidsIn(join(d, "cgroup.procs"))) {
        try {
          write(join(root, "cgroup.procs"), String(p));
        } catch {
          // exited meanwhile
        }
      }
    }
    this.remove();
  }
}

// ---- v2 ----

export class V2Backend implements CgroupBackend {
  readonly version = 2;

  constructor(private readonly root: string) {}

  cannot(): string | undefined {
    return undefined;
  }

  create(owner: string, name: string, limits: ProcLimits | undefined): ProcGroup {
    // A controller works in a group only if every ancestor enables it for its children. cpu is
    // enabled only once a process asks for `cpus`: with it every group becomes a scheduling entity
    // (see V1Backend.create); cpu.stat's usage is counted without it.
    // Written on every create, not remembered: another daemon may have removed and remade TOP.
    const want = V2_CONTROLLERS.filter((c) => c !== "cpu" || limits?.cpus !== undefined);
    for (const d of [this.root, join(this.root, TOP), join(this.root, TOP, owner)]) {
      if (d !== this.root) mkdirP(d);
      write(join(d, "cgroup.subtree_control"), want.map((c) => `+${c}`).join(" "));
    }
    const dir = join(this.root, TOP, owner, name);
    mkdirP(dir);
    const g = new V2Group(dir);
    try {
      if (limits?.memoryBytes !== undefined) {
        write(join(dir, "memory.max"), String(limits.memoryBytes));
        // No swap beyond the limit: the limit kills rather than swaps.
        if (existsSync(join(dir, "memory.swap.max"))) write(join(dir, "memory.swap.max"), "0");
      }
      if (limits?.cpus !== undefined) {
        write(join(dir, "cpu.max"), `${Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
      }
      if (limits?.pids !== undefined) write(join(dir, "pids.max"), String(limits.pids));
    } catch (err) {
      g.remove();
      throw err;
    }
    return g;
  }

  groupsOf(owner: string): ProcGroup[] {
    return subdirs(join(this.root, TOP, owner)).map((n) => new V2Group(join(this.root, TOP, owner, n)));
  }

  removeOwner(owner: string): void {
    rmdirQuiet(join(this.root, TOP, owner));
    rmdirQuiet(join(this.root, TOP));
  }
}

export class V2Group implements ProcGroup {
  readonly version = 2;
  readonly dirs: string[];
  readonly joinFiles: string[];

  constructor(private readonly dir: string) {
    this.dirs = [dir];
    this.joinFiles = [join(dir, "cgroup.procs")];
  }

  pids(): number[] {
    return pidsIn(join(this.dir, "cgroup.procs"));
  }

  holds(pid: number): boolean {
    return this.pids().includes(pid);
  }

  usage(): GroupUsage {
    const u: GroupUsage = {};
    const us = statValue(readText(join(this.dir, "cpu.stat")), "usage_usec");
    if (us !== undefined) u.cpuNs = us * 1000;
    const st = readText(join(this.dir, "memory.stat"));
    const anon = statValue(st, "anon");
    if (anon !== undefined) u.rssBytes = anon + (statValue(st, "file_mapped") ?? 0);
    return u;
  }

  oomKills(): number {
    return statValue(readText(join(this.dir, "memory.events")), "oom_kill") ?? 0;
  }

  signal(sig: NodeJS.Signals): void {
    killEach(this.pids(), sig);
  }

  kill(): void {
    // cgroup.kill (Linux 5.14+) kills the whole subtree atomically; before it, freeze and kill.
    const k = join(this.dir, "cgroup.kill");
    if (existsSync(k)) {
      write(k, "1");
      return;
    }
    const freeze = join(this.dir, "cgroup.freeze");
    try {
      write(freeze, "1");
      killEach(this.pids(), "SIGKILL");
    } finally {
      try {
        write(freeze, "0");
      } catch {
        // removed meanwhile
      }
    }
  }

  remove(): boolean {
    return rmdirQuiet(this.dir);
  }

  release(): void {
    const root = dirname(dirname(dirname(this.dir)));
    for (const p of this.pids()) {
      try {
        write(join(root, "cgroup.procs"), String(p));
      } catch {
        // exited meanwhile
      }
    }
    this.remove();
  }
}

/** Rebuilds a group from the directories a record kept (a predecessor's, or the watchdog's). */
export function openGroup(version: 1 | 2, dirs: string[]): ProcGroup {
  return version === 2 ? new V2Group(dirs[0] as string) : new V1Group(dirs.filter(existsSync));
}

/** Kills a group and waits (up to `ms`) until it is empty, then removes it. True if it is gone. */
export function destroyGroup(g: ProcGroup, ms = 2000): boolean {
  const until = Date.now() + ms;
  for (;;) {
    if (g.pids().length > 0) g.kill();
    if (g.remove()) return true;
    if (Date.now() >= until) return false;
    pause(10);
  }
}
