// What a daemon tells an observer about itself (DESIGN.md §13): the dashboard, `circuit top` and
// the metrics endpoint read these. Everything is computed when asked, from counters the hot path
// keeps anyway (a channel's send and receive counts, a socket's byte counts), so observing costs
// nothing per message.
//
//   {op: "obs", path: [XID], after?, limit?, tails?} → ObsSnapshot

import type { Element } from "./elements.js";

/** One element as an observer sees it. */
export interface ObsElement {
  path: string;
  kind: string;
  /** Channels and subscriptions. */
  cap?: number;
  len?: number;
  closed?: boolean;
  /** Values sent into and received from it so far (rates are differences over time). */
  sent?: number;
  recvd?: number;
  /** Blocked senders and receivers. */
  waiting?: number;
  /** Processes. */
  pid?: number;
  phase?: string;
  cpuPercent?: number;
  rssBytes?: number;
  cmd?: string;
  /** Bytes written to stdout and stderr so far. */
  outBytes?: number;
  /** Services: replicas wanted, replicas running, restarts so far (phase: running or stopped). */
  desired?: number;
  running?: number;
  restarts?: number;
}

export interface ObsProcTail {
  path: string;
  stdout: string;
  stderr: string;
}

export interface ObsSnapshot {
  /** The server's own stat (the same as `peek /XID`). */
  server: Record<string, unknown>;
  at: string;
  /** Elements in path order, at most `limit` of them. */
  elements: ObsElement[];
  /** How many elements the server hosts in all. */
  total: number;
  /** Recent output of processes (with `tails`), the first 50 processes. */
  tails: ObsProcTail[];
  /** Logged events with a seq above `after`, oldest first. */
  feed: { seq: number; at: string; level: string; msg: string; fields: Record<string, unknown> }[];
}

const TAIL_SHOWN = 4096;
const TAILS_MAX = 50;

export function observeElement(path: string, el: Element): ObsElement {
  if (el.kind === "proc") {
    const p = el.proc;
    const s = p.stat();
    return {
      path,
      kind: "proc",
      pid: s.pid,
      phase: s.phase,
      cpuPercent: s.cpuPercent,
      rssBytes: s.rssBytes,
      cmd: [s.cmd.path, ...s.cmd.args].join(" ").slice(0, 200),
      outBytes: p.stdout.written + p.stderr.written,
    };
  }
  if (el.kind === "dns") return { path, kind: "dns" };
  if (el.kind === "svc") {
    const s = el.svc.stat();
    const running = s.replicas.filter((r) => r.phase === "running").length;
    const restarts = s.replicas.reduce((n, r) => n + r.restarts, 0);
    return { path, kind: "svc", desired: s.desired, running, restarts, phase: s.state };
  }
  const s = el.chan.stat();
  return {
    path,
    kind: el.kind,
    cap: s.cap,
    len: s.len,
    closed: s.closed,
    sent: s.numSend,
    recvd: s.numRecv,
    waiting: s.waitingSenders + s.waitingReceivers,
  };
}

export function procTail(path: string, el: Element): ObsProcTail | undefined {
  if (el.kind !== "proc") return undefined;
  return {
    path,
    stdout: el.proc.stdout.recent(TAIL_SHOWN).toString("utf8"),
    stderr: el.proc.stderr.recent(TAIL_SHOWN).toString("utf8"),
  };
}

export { TAILS_MAX };
