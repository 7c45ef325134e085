// The process element (DESIGN.md §3.2): an OS process this server started, leading its own process
// group, with its stdin fed by any number of client streams and each output fanned out to readers.
// It is reaped (and its waiters answered) when it exits, whatever its stdin and outputs are doing.

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants as fsc, statSync } from "node:fs";
import { constants as osc } from "node:os";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { BadSignal, SpawnFailed, StreamBroken, Unsupported } from "../errors.js";
import type { Logger } from "../util/log.js";
import { checkLimits, type ProcLimits } from "../wire/proc-limits.js";
import type { ProcPhase, ProcStat } from "../wire/shapes.js";
import { signalName } from "../wire/signals.js";
import type { CgroupSupport, ProcGroup } from "./cgroups.js";
import type { ProcGuard } from "./proc-guard.js";
import { ProcOutput } from "./proc-output.js";
import { CLK_TCK, groupTree, type ProcSample, readSample, startTime } from "./procfs.js";
import type { StreamPipe } from "./stream-pipe.js";

export type { ProcPhase, ProcStat };

/** A command as the client gave it (validated). */
export interface ProcCommand {
  path: string;
  args: string[];
  env?: Record<string, string>;
  dir?: string;
  inheritEnv: boolean;
  scrub: boolean;
  limits?: ProcLimits;
}

/** Bytes of stdin in flight to the child per writer before the writer must wait. */
const STDIN_WINDOW = 64 * 1024;
/** How often a running process's CPU and memory are sampled. */
const SAMPLE_MS = 1000;
/** Waits one process may have outstanding. */
const MAX_WAITERS = 10_000;
/** Readers one output may have attached. */
const MAX_READERS = 1024;

/** Checks the shape of a command from the wire; TypeError says what is wrong. */
export function parseCommand(raw: unknown): ProcCommand {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new TypeError("a command is an object");
  const c = raw as Record<string, unknown>;
  if (typeof c.path !== "string" || c.path === "" || c.path.includes("\0")) {
    throw new TypeError("command path must be a non-empty string");
  }
  const args = c.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string" && !a.includes("\0"))) {
    throw new TypeError("command args must be an array of strings");
  }
  let env: Record<string, string> | undefined;
  if (c.env !== undefined && c.env !== null) {
    if (typeof c.env !== "object" || Array.isArray(c.env)) throw new TypeError("command env must be an object");
    env = {};
    for (const [k, v] of Object.entries(c.env as object)) {
      if (typeof v !== "string" || k === "" || k.includes("=") || k.includes("\0") || v.includes("\0")) {
        throw new TypeError(`command env ${JSON.stringify(k)} must map a name to a string`);
      }
      env[k] = v;
    }
  }
  if (c.dir !== undefined && c.dir !== null && (typeof c.dir !== "string" || c.dir === "")) {
    throw new TypeError("command dir must be a non-empty string");
  }
  for (const k of ["inheritEnv", "scrub"] as const) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== "boolean") {
      throw new TypeError(`command ${k} must be a boolean`);
    }
  }
  const limits = checkLimits(c.limits);
  return {
    path: c.path,
    args: args as string[],
    ...(env ? { env } : {}),
    ...(typeof c.dir === "string" ? { dir: c.dir } : {}),
    inheritEnv: c.inheritEnv === true,
    scrub: c.scrub === true,
    ...(limits ? { limits } : {}),
  };
}

/** The file to execute: a name without a slash is looked up in this server's PATH. */
export function resolveProgram(path: string, dir: string | undefined, server: string): string {
  if (path.includes("/")) return isAbsolute(path) ? path : resolve(dir ?? process.cwd(), path);
  for (const d of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    if (!d) continue;
    const full = join(d, path);
    try {
      accessSync(full, fsc.X_OK);
      if (statSync(full).isFile()) return full;
    } catch {
      // not here
    }
  }
  throw new SpawnFailed(`cannot start ${path}: not found in the PATH of ${server}`);
}

/**
 * Joins the cgroup, then becomes the command: `sh -c WRAPPER circuit-proc PWD N FILE… PROGRAM ARGS…`.
 * Node cannot run code between fork and exec (no CLONE_INTO_CGROUP, no stopped spawn), and moving
 * the child after spawn() returns is a race: by then it has exec'd and may have forked already. So
 * the child moves itself: the shell writes its own pid ($$) into each cgroup.procs and only then
 * execs the program, keeping the pid. Nothing of the user's runs before the process is confined,
 * and every descendant is born inside the group. dash exports PWD on its own: the wrapper restores
 * the caller's choice ("-" for none, "=VALUE" for that value). The program's argv[0] is its full path.
 */
const WRAPPER = `p=$1; n=$2; shift 2
while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done
if [ "$p" = - ]; then unset PWD; else PWD=\${p#=}; export PWD; fi
exec "$@"`;

/**
 * Starts the command (in `group` when given). Throws SpawnFailed for what can be told at once;
 * otherwise returns the child, whose `pid` is undefined if the exec failed (its 'error' event then
 * says why, on the next tick).
 */
export function spawnChild(cmd: ProcCommand, server: string, group?: ProcGroup): ChildProcess {
  if (cmd.dir !== undefined) {
    let ok = false;
    try {
      ok = statSync(cmd.dir).isDirectory();
    } catch {
      // reported below
    }
    if (!ok) throw new SpawnFailed(`cannot start ${cmd.path}: no directory ${cmd.dir} on ${server}`);
  }
  const file = resolveProgram(cmd.path, cmd.dir, server);
  const env = cmd.env === undefined ? process.env : cmd.inheritEnv ? { ...process.env, ...cmd.env } : cmd.env;
  if (group) {
    // The wrapper would report an exec failure as exit 126/127: tell what can be told beforehand.
    try {
      accessSync(file, fsc.X_OK);
      if (!statSync(file).isFile()) throw Object.assign(new Error("not a file"), { code: "EACCES" });
    } catch (err) {
      throw new SpawnFailed(`cannot start ${cmd.path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
  }
  try {
    // detached: the child calls setsid(), so it leads its own process group and a scrub can kill
    // everything it started.
    if (!group) return spawn(file, cmd.args, { argv0: cmd.path, cwd: cmd.dir, env, detached: true, stdio: "pipe" });
    const pwd = env.PWD === undefined ? "-" : `=${env.PWD}`;
    const wrapped = ["-c", WRAPPER, "circuit-proc", pwd, String(group.joinFiles.length), ...group.joinFiles];
    return spawn("/bin/sh", [...wrapped, file, ...cmd.args], { cwd: cmd.dir, env, detached: true, stdio: "pipe" });
  } catch (err) {
    throw new SpawnFailed(`cannot start ${cmd.path}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
  }
}

/** Something a wait belongs to (a session): waits of a closed one are dropped. */
export interface WaitOwner {
  readonly conn: { readonly closed: boolean };
}

interface Waiter {
  owner: WaitOwner;
  token: number;
  done(stat: ProcStat): void;
}

export class HostedProc {
  readonly pid: number;
  readonly startedAt = new Date();
  readonly stdout: ProcOutput;
  readonly stderr: ProcOutput;
  /** Resolves with the final stat once the process has exited and been reaped. */
  readonly exited: Promise<ProcStat>;
  private resolveExited!: (s: ProcStat) => void;
  private end: { code: number | null; signal: string | null; at: Date } | undefined;
  private stdinOpen = true;
  private readonly writers = new Set<StreamPipe>();
  private readonly waiters = new Set<Waiter>();
  /** CPU so far in ns (of the cgroup, or of the process group from /proc) at the last sample. */
  private last: { ns: number; at: number } | undefined;
  private cpuPercent = 0;
  private rssBytes = 0;
  private phase: "running" | "stopped" = "running";
  private readonly sampler: NodeJS.Timeout;
  private oomKilled = false;
  private detached = false;
  private readonly gone: () => void;
  /** The leader's start time (ticks after boot): members of its group started no earlier. */
  readonly start: number;
  /** Watches a group whose leader has exited until the rest of it is gone. */
  private lingering: NodeJS.Timeout | undefined;

  constructor(
    /** Tells this process from a later one at the same anchor. */
    readonly eid: number,
    readonly cmd: ProcCommand,
    private readonly child: ChildProcess,
    /** Its cgroup, if the host gave it one. */
    private readonly group?: ProcGroup,
    /** Called once nothing of the group is left (or it was detached): drop its record. */
    onGone: () => void = () => {},
  ) {
    let called = false;
    this.gone = () => {
      if (!called) onGone();
      called = true;
    };
    this.pid = child.pid as number;
    this.start = startTime(this.pid) ?? 0;
    this.exited = new Promise((r) => {
      this.resolveExited = r;
    });
    this.stdout = new ProcOutput(child.stdout as NonNullable<ChildProcess["stdout"]>);
    this.stderr = new ProcOutput(child.stderr as NonNullable<ChildProcess["stderr"]>);
    // Writes after the child has gone fail with EPIPE; the writers hear of it through their pipes.
    child.stdin?.on("error", () => {});
    child.on("error", () => {});
    child.once("exit", (code, signal) => this.onExit(code, signal));
    this.last = { ns: 0, at: this.startedAt.getTime() };
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.sampler.unref();
  }

  get hasExited(): boolean {
    return this.end !== undefined;
  }

  /** The state now: phase, CPU over the last second, memory (fresh from /proc while it runs). */
  stat(): ProcStat {
    if (!this.end) {
      const s = readSample(this.pid);
      if (s) {
        this.phase = stoppedState(s) ? "stopped" : "running";
        this.rssBytes = this.usage()?.rssBytes ?? s.rssBytes;
      }
      if (this.group && this.group.oomKills() > 0) this.oomKilled = true;
    }
    const e = this.end;
    return {
      cmd: this.cmd,
      pid: this.pid,
      phase: e ? (e.signal ? "signaled" : "exited") : this.phase,
      exitCode: e ? e.code : null,
      signal: e ? e.signal : null,
      startedAt: this.startedAt.toISOString(),
      exitedAt: e ? e.at.toISOString() : null,
      cpuPercent: e ? 0 : this.cpuPercent,
      rssBytes: e ? 0 : this.rssBytes,
      limits: this.cmd.limits ?? null,
      oomKilled: this.oomKilled,
    };
  }

  /** The last sample of the group's use (no /proc read): for the server's load figures. */
  get lastUsage(): { cpuPercent: number; rssBytes: number } {
    return this.end ? { cpuPercent: 0, rssBytes: 0 } : { cpuPercent: this.cpuPercent, rssBytes: this.rssBytes };
  }

  /** For `ls -l`. */
  shortState(): string {
    const e = this.end;
    if (!e) return `pid=${this.pid} ${this.phase}`;
    return e.signal ? `pid=${this.pid} signaled ${e.signal}` : `pid=${this.pid} exited ${e.code}`;
  }

  /** Sends a signal to the process (not its group). After the exit there is nobody to signal: a no-op. */
  signal(name: unknown): void {
    const sig = signalName(name);
    if (!sig) throw new BadSignal(`unknown signal ${JSON.stringify(name)}`);
    if (!(sig in osc.signals)) throw new BadSignal(`${sig} is not a signal on this host`);
    if (this.end) return;
    try {
      process.kill(this.pid, sig as NodeJS.Signals);
    } catch {
      // exited between the check and the kill; 'exit' is on its way
    }
  }

  /** Adds a wait; `done` gets the final stat (at once if it has exited). */
  wait(owner: WaitOwner, token: number, done: (stat: ProcStat) => void): void {
    if (this.end) return done(this.stat());
    for (const w of this.waiters) if (w.owner.conn.closed) this.waiters.delete(w);
    if (this.waiters.size >= MAX_WAITERS) throw new RangeError("too many waits on one process");
    this.waiters.add({ owner, token, done });
  }

  /** Withdraws a wait that its client gave up on. */
  unwait(owner: WaitOwner, token: number): void {
    for (const w of this.waiters) if (w.owner === owner && w.token === token) this.waiters.delete(w);
  }

  /** A new reader of fd 1 or 2, as a stream message with id `pipeId`. */
  read(fd: 1 | 2, pipeId: number): StreamPipe {
    const out = fd === 1 ? this.stdout : this.stderr;
    if (out.readerCount >= MAX_READERS) throw new RangeError("too many readers of one output");
    return out.attach(pipeId);
  }

  /**
   * A client stream into stdin. Bytes go to the child as it takes them (at most STDIN_WINDOW in
   * flight per writer); the writer's end marker closes stdin; a writer that breaks off leaves stdin
   * open for the next one.
   */
  writeStdin(pipe: StreamPipe): void {
    if (!this.stdinOpen) throw new StreamBroken(this.end ? "the process has exited" : "the process's stdin is closed");
    const stdin = this.child.stdin as NonNullable<ChildProcess["stdin"]>;
    this.writers.add(pipe);
    pipe.attach({
      data: (c) => {
        stdin.write(c, () => pipe.grant(c.length));
      },
      fin: () => {
        this.writers.delete(pipe);
        this.closeStdin("another writer closed the process's stdin");
      },
      broken: () => {
        this.writers.delete(pipe);
      },
    });
    pipe.grant(STDIN_WINDOW);
  }

  private closeStdin(why: string): void {
    if (!this.stdinOpen) return;
    this.stdinOpen = false;
    this.child.stdin?.end();
    for (const w of this.writers) w.drop(why);
    this.writers.clear();
  }

  /**
   * Kills the process group: TERM (and CONT, so that a stopped group hears it), then KILL after
   * `graceMs` if any member is left. Resolves when the leader has exited.
   */
  terminate(graceMs: number): Promise<void> {
    // The process group, and with a cgroup every member wherever it went (setsid included).
    const group = (sig: NodeJS.Signals | 0): boolean => {
      let any = false;
      try {
        process.kill(-this.pid, sig);
        any = true;
      } catch {
        // no member left in the process group
      }
      if (this.group && this.group.pids().length > 0) {
        if (sig === "SIGKILL") this.group.kill();
        else if (sig !== 0) this.group.signal(sig);
        any = true;
      }
      return any;
    };
    if (group(0)) {
      group("SIGTERM");
      group("SIGCONT");
      const t0 = Date.now();
      const poll = setInterval(() => {
        if (!group(0)) clearInterval(poll);
        else if (Date.now() - t0 >= graceMs) {
          group("SIGKILL");
          clearInterval(poll);
        }
      }, 100);
    }
    return this.exited.then(() => undefined);
  }

  /**
   * Resolves once the process is in its cgroup (the wrapper moves itself a moment after the spawn),
   * or has exited, or after `ms`; at once without a cgroup. A client that hears of the process
   * after this sees it confined, and a `scrub --keep` cannot release the group before it is joined.
   */
  async joined(ms = 5000): Promise<void> {
    const g = this.group;
    if (!g) return;
    const until = Date.now() + ms;
    while (!this.end && !g.holds(this.pid) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** SIGKILLs what is left of the group (the leader has exited, descendants live on). */
  kill(): void {
    this.group?.kill();
    for (const e of groupTree(this.pid, this.start)) {
      try {
        process.kill(e.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    if (this.end) this.settleNow();
  }

  /** Lets the process run on without this server watching it (`scrub({ keep: true })`). */
  detach(): void {
    this.detached = true;
    clearInterval(this.sampler);
    clearInterval(this.lingering);
    // Out of its cgroup too: a detached process is no longer this server's to confine or kill.
    this.group?.release();
    this.gone();
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) {
      (s as unknown as { unref?: () => void } | null)?.unref?.();
    }
  }

  /**
   * CPU so far and memory now of the whole group: from the cgroup's accounting where there is one,
   * else summed over the process group and its descendants from /proc.
   */
  private usage(): { ns: number; rssBytes: number } | undefined {
    const u = this.group?.usage() ?? {};
    if (u.cpuNs !== undefined && u.rssBytes !== undefined) return { ns: u.cpuNs, rssBytes: u.rssBytes };
    let ticks = 0;
    let rssBytes = 0;
    for (const e of groupTree(this.pid, this.start)) {
      const s = readSample(e.pid);
      if (!s) continue;
      ticks += e.ticks;
      rssBytes += s.rssBytes;
    }
    return { ns: u.cpuNs ?? (ticks / CLK_TCK) * 1e9, rssBytes: u.rssBytes ?? rssBytes };
  }

  private sample(): void {
    const s = readSample(this.pid);
    if (!s || this.end) return;
    const u = this.usage();
    if (!u) return;
    const now = Date.now();
    const prev = this.last;
    if (prev && now > prev.at) {
      const pct = ((u.ns - prev.ns) / 1e9 / ((now - prev.at) / 1000)) * 100;
      this.cpuPercent = Math.max(0, Math.round(pct * 10) / 10);
    }
    this.last = { ns: u.ns, at: now };
    this.rssBytes = u.rssBytes;
    this.phase = stoppedState(s) ? "stopped" : "running";
  }

  /** After the leader's exit: the record goes once nothing of the group is left. */
  private settle(): void {
    if (!this.groupLeft()) return this.gone();
    this.lingering = setInterval(() => this.settleNow(), SAMPLE_MS);
    this.lingering.unref();
  }

  private settleNow(): void {
    if (this.groupLeft()) return;
    clearInterval(this.lingering);
    this.gone();
  }

  private groupLeft(): boolean {
    if (this.group) return this.group.pids().length > 0 || !this.group.remove();
    try {
      process.kill(-this.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.group && this.group.oomKills() > 0) this.oomKilled = true;
    this.end = { code, signal, at: new Date() };
    clearInterval(this.sampler);
    if (!this.detached) this.settle();
    this.stdinOpen = false;
    for (const w of this.writers) w.drop("the process has exited");
    this.writers.clear();
    this.child.stdin?.destroy();
    const stat = this.stat();
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w.done(stat);
    this.resolveExited(stat);
  }
}

function stoppedState(s: ProcSample): boolean {
  return s.state === "T" || s.state === "t";
}

/** The processes of one server: element ids, the live set (killed when the server stops), and the recently gone. */
export interface ProcTableOptions {
  /** The server ID: cgroups are `circuit/<owner>/<element id>`. */
  owner: string;
  /** The host's cgroups, or why there are none. */
  cgroups: CgroupSupport;
  /** Keeps the record that lets the processes die with the daemon (none: in-memory tests). */
  guard?: ProcGuard;
  log?: Logger;
}

/** The processes of one server: element ids, the live set (killed when the server stops), and the recently gone. */
export class ProcTable {
  private nextEid = 1;
  private readonly live = new Set<HostedProc>();
  /** Processes whose record is kept: running, or exited with members of their group still alive. */
  private readonly held = new Set<HostedProc>();
  /** Final stats of processes whose element is gone, so that a handle can still wait on them. */
  private readonly graves = new Map<number, { stat: ProcStat; until: number }>();
  private cgroupsNoted = false;

  constructor(private readonly opts: ProcTableOptions = { owner: "", cgroups: { reason: "not configured" } }) {}

  /** What the running processes use (last samples) and reserve through their limits. */
  load(): { procs: number; cpuPercent: number; rssBytes: number; resCpu: number; resMem: number } {
    let cpuPercent = 0;
    let rssBytes = 0;
    let resCpu = 0;
    let resMem = 0;
    for (const p of this.live) {
      const u = p.lastUsage;
      cpuPercent += u.cpuPercent;
      rssBytes += u.rssBytes;
      resCpu += p.cmd.limits?.cpus ?? 0;
      resMem += p.cmd.limits?.memoryBytes ?? 0;
    }
    return { procs: this.live.size, cpuPercent, rssBytes, resCpu, resMem };
  }

  /**
   * Starts a command; see spawnChild. With cgroups it gets a group of its own (and its limits);
   * limits that this host cannot enforce fail with Unsupported before anything starts.
   */
  start(cmd: ProcCommand, server: string): { proc: HostedProc } | { failed: Promise<SpawnFailed> } {
    const eid = this.nextEid++;
    const group = this.makeGroup(eid, cmd.limits);
    const key = String(eid);
    const guard = this.opts.guard;
    if (group) guard?.set({ key, cgroup: { version: group.version, dirs: [...group.dirs] } });
    const undo = () => {
      group?.remove();
      guard?.delete(key);
    };
    let child: ChildProcess;
    try {
      child = spawnChild(cmd, server, group);
    } catch (err) {
      undo();
      throw err;
    }
    if (child.pid === undefined) {
      undo();
      return {
        failed: new Promise((r) =>
          child.once("error", (err: NodeJS.ErrnoException) =>
            r(new SpawnFailed(`cannot start ${cmd.path}: ${err.code ?? err.message}`, { cause: err })),
          ),
        ),
      };
    }
    const proc: HostedProc = new HostedProc(eid, cmd, child, group, () => {
      this.held.delete(proc);
      guard?.delete(key);
    });
    guard?.set({
      key,
      ...(group ? { cgroup: { version: group.version, dirs: [...group.dirs] } } : {}),
      pgid: proc.pid,
      start: proc.start,
    });
    this.live.add(proc);
    this.held.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    return { proc };
  }

  private makeGroup(eid: number, limits: ProcLimits | undefined): ProcGroup | undefined {
    const cg = this.opts.cgroups;
    const refuse = (why: string) => new Unsupported(`cannot enforce limits on this server: ${why}`);
    if (!cg.backend) {
      if (limits) throw refuse(cg.reason);
      return undefined;
    }
    const why = limits && cg.backend.cannot(limits);
    if (why) throw refuse(why);
    try {
      return cg.backend.create(this.opts.owner, String(eid), limits);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const reason = `cannot create a cgroup: ${e.code ?? e.message}${e.path ? ` on ${e.path}` : ""}${
        e.code === "EACCES" || e.code === "EPERM" || e.code === "EROFS"
          ? " (the daemon needs root, or a writable cgroupfs)"
          : ""
      }`;
      if (limits) throw refuse(reason);
      if (!this.cgroupsNoted) {
        this.cgroupsNoted = true;
        this.opts.log?.warn({ event: "cgroups", reason }, `processes run without cgroups: ${reason}`);
      }
      return undefined;
    }
  }

  /** The element of `proc` is gone; its final stat stays reachable by element id for a minute. */
  bury(proc: HostedProc): void {
    void proc.exited.then((stat) => {
      const now = Date.now();
      for (const [k, g] of this.graves) {
        if (g.until > now && this.graves.size < 1024) break;
        this.graves.delete(k);
      }
      this.graves.set(proc.eid, { stat, until: now + 60_000 });
    });
  }

  grave(eid: number): ProcStat | undefined {
    const g = this.graves.get(eid);
    return g && g.until > Date.now() ? g.stat : undefined;
  }

  /** A detached process is no longer this server's to kill. */
  forget(proc: HostedProc): void {
    this.live.delete(proc);
  }

  /**
   * Kills every process still hosted (the server is stopping): TERM, KILL after `graceMs`; then
   * whatever is left of their groups; removes the cgroups and lets the watchdog go.
   */
  async shutdown(graceMs: number): Promise<void> {
    await Promise.all([...this.live].map((p) => p.terminate(graceMs)));
    const until = Date.now() + 2000;
    while (this.held.size > 0 && Date.now() < until) {
      for (const p of this.held) p.kill();
      await new Promise((r) => setTimeout(r, 50));
    }
    this.opts.guard?.close();
    this.opts.cgroups.backend?.removeOwner(this.opts.owner);
  }
}
