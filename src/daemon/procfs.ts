// What Linux's /proc says about a process and about the host's listening sockets. The parsers are
// pure (tested with literal text); the readers return nothing on hosts without /proc.

import { readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** Clock ticks per second of utime/stime. USER_HZ is 100 on every mainstream Linux architecture. */
export const CLK_TCK = 100;

export interface ProcSample {
  /** One letter: R running, S sleeping, D disk wait, T stopped, t traced, Z zombie, … */
  state: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
  rssBytes: number;
}

/** Parses /proc/PID/stat. The command name is in parentheses and may itself hold spaces and parens. */
export function parseStat(text: string): { state: string; ticks: number } | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  // Fields after the name, starting with field 3 (state); utime and stime are fields 14 and 15.
  const f = text
    .slice(close + 2)
    .trim()
    .split(" ");
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  if (!f[0] || !Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return { state: f[0], ticks: utime + stime };
}

/** VmRSS from /proc/PID/status, in bytes (0 when absent, as for a zombie). */
export function parseStatusRss(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** A fresh sample of a live process, or undefined if it is gone (or this host has no /proc). */
export function readSample(pid: number): ProcSample | undefined {
  try {
    // procfs reads never block on a disk; synchronous is cheaper than a round trip through the pool.
    const st = parseStat(readFileSync(`/proc/${pid}/stat`, "latin1"));
    if (!st) return undefined;
    const rssBytes = parseStatusRss(readFileSync(`/proc/${pid}/status`, "latin1"));
    return { ...st, rssBytes };
  } catch {
    return undefined;
  }
}

/** One process in the host's table, as much as finding a group's members and descendants needs. */
export interface ProcEntry {
  pid: number;
  ppid: number;
  pgid: number;
  /** Start time in clock ticks after boot: with the pid, it tells a process from a later one. */
  start: number;
  /** utime + stime + cutime + cstime: its own CPU and that of its reaped children, in ticks. */
  ticks: number;
}

/** Parses /proc/PID/stat into a ProcEntry. */
export function parseStatEntry(pid: number, text: string): ProcEntry | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const f = text
    .slice(close + 2)
    .trim()
    .split(" ");
  // f[0] is field 3 (state): ppid 4, pgrp 5, utime 14, stime 15, cutime 16, cstime 17, starttime 22.
  const n = (i: number) => Number(f[i]);
  const e = { pid, ppid: n(1), pgid: n(2), start: n(19), ticks: n(11) + n(12) + n(13) + n(14) };
  return Object.values(e).every(Number.isFinite) ? e : undefined;
}

/** Every process on the host now (empty without /proc). */
export function listProcesses(): ProcEntry[] {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return [];
  }
  const out: ProcEntry[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const e = parseStatEntry(pid, readFileSync(`/proc/${name}/stat`, "latin1"));
      if (e) out.push(e);
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** The start time of a live process (ticks after boot), or undefined. */
export function startTime(pid: number): number | undefined {
  try {
    return parseStatEntry(pid, readFileSync(`/proc/${pid}/stat`, "latin1"))?.start;
  } catch {
    return undefined;
  }
}

/**
 * The members of process group `pgid` that started no earlier than `since`, and every descendant
 * of them (by parent pid) that did too — which finds children that moved to another process group
 * or session while their parent lives. A descendant whose parent has exited was re-parented to init
 * and can no longer be told apart: that is the limit of a host without cgroups.
 */
export function groupTree(pgid: number, since: number, all: ProcEntry[] = listProcesses()): ProcEntry[] {
  const fresh = all.filter((e) => e.start >= since);
  const found = new Map(fresh.filter((e) => e.pgid === pgid).map((e) => [e.pid, e]));
  for (let grew = true; grew; ) {
    grew = false;
    for (const e of fresh) {
      if (!found.has(e.pid) && found.has(e.ppid)) {
        found.set(e.pid, e);
        grew = true;
      }
    }
  }
  return [...found.values()];
}

export interface ListeningPort {
  port: number;
  /** The local address it listens on: "0.0.0.0", "127.0.0.1", "::", "::1", … */
  address: string;
  family: 4 | 6;
}

/** Parses /proc/net/tcp or /proc/net/tcp6, keeping the sockets in state 0A (LISTEN). */
export function parseNetTcp(text: string, family: 4 | 6): ListeningPort[] {
  const out: ListeningPort[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== "0A") continue;
    const [hex, portHex] = (f[1] ?? "").split(":");
    if (!hex || !portHex) continue;
    const address = family === 4 ? ipv4(hex) : ipv6(hex);
    if (address === undefined) continue;
    out.push({ port: Number.parseInt(portHex, 16), address, family });
  }
  return out;
}

/** The kernel prints each 32-bit word of the address in host byte order (little-endian here). */
function words(hex: string): Buffer {
  const b = Buffer.from(hex, "hex");
  for (let i = 0; i + 4 <= b.length; i += 4) b.subarray(i, i + 4).reverse();
  return b;
}

function ipv4(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return undefined;
  return [...words(hex)].join(".");
}

function ipv6(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return undefined;
  const b = words(hex);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  // The longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const txt = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best < 0) return txt(groups);
  return `${txt(groups.slice(0, best))}::${txt(groups.slice(best + bestLen))}`;
}

/** The host's listening TCP sockets, by port then address; empty without /proc. */
export async function listeningPorts(): Promise<ListeningPort[]> {
  const read = (f: string) => readFile(f, "latin1").catch(() => "");
  const [v4, v6] = await Promise.all([read("/proc/net/tcp"), read("/proc/net/tcp6")]);
  const seen = new Set<string>();
  const all = [...parseNetTcp(v4, 4), ...parseNetTcp(v6, 6)].filter((p) => {
    const k = `${p.address} ${p.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return all.sort((a, b) => a.port - b.port || a.family - b.family || (a.address < b.address ? -1 : 1));
}
