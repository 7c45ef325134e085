// Requests on process elements (session.ts delegates here).
//
//   {op: "mkproc", path, cmd, rid1?, rid2?, tied?}
//                                             → {kind: "proc", eid, pid}; SpawnFailed leaves the anchor empty.
//                                             tied: a server id; the process is scrubbed when that
//                                             server leaves (ServerGone at once if it is not live)
//                                             rid1/rid2: readers of stdout/stderr attached before the
//                                             child's first byte can arrive (SATTACH precedes the RES)
//   {op: "proc", path, eid?, do, ...}         eid: the element id from mkproc/open; a handle whose
//                                             process was replaced at the same anchor gets NotFound
//     do "peek"                               → ProcStat
//     do "wait", token                        → ProcStat once it has exited
//     do "unwait", token                      → null; the wait with that token is withdrawn
//     do "signal", signal                     → null
//     do "scrub", keep?                       → null once the leader has exited (at once with keep)
//     do "read", fd (1|2), rid                → SATTACH [rid, pid]: the tail, then live output; then RES
//     do "write", sid                         → null; the client streams stdin on sid
//
// A process whose element is gone (scrubbed, or `scrub: true` and exited) still answers peek and
// wait by element id for a minute, so a handle never misses the exit it was about to wait for.

import { AnchorBusy, BadSignal, NotFound, ProtocolError, ServerGone, WrongKind } from "../errors.js";
import type { Logger } from "../util/log.js";
import { formatPath } from "../wire/path.js";
import type { Received } from "../wire/requests.js";
import { signalName } from "../wire/signals.js";
import type { Element, ProcElement } from "./elements.js";
import { type ProcStat, type ProcTable, parseCommand } from "./proc.js";
import type { StreamSession } from "./session-streams.js";

/** TERM, then KILL after this long (DESIGN.md §3.2). */
export const SCRUB_GRACE_MS = 5000;

/** What process requests need of the daemon (and nothing more). */
export interface ProcHost {
  readonly id: string;
  readonly procs: ProcTable;
  log: Logger;
  element(names: string[]): Element | { kind: "server" } | null;
  place(names: string[], el: Element): void;
  unplace(el: Element): void;
  /** Whether the server with this id is a live member of the circuit. */
  isLive(id: string): boolean;
  /** Scrubs `el` when server `id` leaves. */
  tie(el: ProcElement, id: string): void;
  nextPipeId(): number;
}

type Reply = (v: unknown) => void;
type Fail = (err: unknown) => void;

export function procInfo(el: ProcElement): { kind: "proc"; eid: number; pid: number } {
  return { kind: "proc", eid: el.proc.eid, pid: el.proc.pid };
}

/** Removes a process element: kills its group (TERM, KILL after 5 s), or lets it run on with `keep`. */
export function scrubProc(d: ProcHost, el: ProcElement, keep: boolean, done: () => void): void {
  d.unplace(el);
  d.procs.bury(el.proc);
  if (keep) {
    el.proc.detach();
    d.procs.forget(el.proc);
    done();
    return;
  }
  void el.proc.terminate(SCRUB_GRACE_MS).then(done);
}

export function procRequest(
  d: ProcHost,
  s: StreamSession,
  names: string[],
  r: Received<"mkproc" | "proc">,
  reply: Reply,
  fail: Fail,
): void {
  if (r.op === "mkproc") return makeProc(d, s, names, r, reply, fail);
  const eid = typeof r.eid === "number" ? r.eid : undefined;
  const { el, grave } = lookup(d, names, eid);
  const proc = el?.proc;
  switch (r.do) {
    case "peek":
      return reply(proc ? proc.stat() : grave);
    case "wait": {
      const token = int(r.token);
      if (!proc) return reply(grave);
      proc.wait(s, token, reply);
      return;
    }
    case "unwait":
      proc?.unwait(s, int(r.token));
      return reply(null);
    case "signal":
      // After the exit there is nobody to signal; the name is still checked.
      if (proc) proc.signal(r.signal);
      else if (!signalName(r.signal)) throw new BadSignal(`unknown signal ${JSON.stringify(r.signal)}`);
      return reply(null);
    case "scrub":
      if (!el) return reply(null);
      return scrubProc(d, el, r.keep === true, () => reply(null));
    case "read": {
      if (r.fd !== 1 && r.fd !== 2) throw new ProtocolError("read takes fd 1 or 2");
      const rid = int(r.rid);
      if (!proc) throw new NotFound(`${formatPath(names)}: the process has exited and its element is gone`);
      s.roomForOutput(1);
      s.attachStream(rid, proc.read(r.fd, d.nextPipeId()));
      return reply(null);
    }
    case "write": {
      const sid = int(r.sid);
      if (!proc) throw new NotFound(`${formatPath(names)}: the process has exited and its element is gone`);
      const pipe = s.acceptStream(sid);
      try {
        proc.writeStdin(pipe);
      } catch (err) {
        pipe.drop((err as Error).message);
        throw err;
      }
      return reply(null);
    }
    default:
      fail(new ProtocolError(`unknown process operation ${JSON.stringify(r.do)}`));
  }
}

function makeProc(
  d: ProcHost,
  s: StreamSession,
  names: string[],
  r: Received<"mkproc">,
  reply: Reply,
  fail: Fail,
): void {
  if (names.length < 2) throw new WrongKind(`${formatPath(names)} cannot hold a process`);
  const cmd = parseCommand(r.cmd);
  const rid1 = r.rid1 === undefined || r.rid1 === null ? undefined : int(r.rid1);
  const rid2 = r.rid2 === undefined || r.rid2 === null ? undefined : int(r.rid2);
  if (d.element(names)) throw new AnchorBusy(`${formatPath(names)} already holds an element`);
  const tied = r.tied === undefined || r.tied === null ? undefined : r.tied;
  if (tied !== undefined && (typeof tied !== "string" || !d.isLive(tied)))
    throw new ServerGone(`server ${String(tied)} is not in this circuit`);
  // Room for the outputs it is to stream before anything starts (attached below, this same turn).
  s.roomForOutput((rid1 === undefined ? 0 : 1) + (rid2 === undefined ? 0 : 1));
  const started = d.procs.start(cmd, d.id);
  if ("failed" in started) {
    void started.failed.then(fail);
    return;
  }
  const el: ProcElement = { kind: "proc", proc: started.proc, names };
  // Checked above in this same turn: the anchor is still free.
  d.place(names, el);
  if (tied !== undefined) d.tie(el, tied);
  const path = formatPath(names);
  const pid = el.proc.pid;
  d.log.info({ event: "proc-start", path, pid, cmd: cmd.path }, `started ${path} (pid ${pid}): ${cmd.path}`);
  void el.proc.exited.then((st) => {
    const how = st.signal ? `signal ${st.signal}` : `exit ${st.exitCode}`;
    d.log.info(
      { event: "proc-exit", path, pid, code: st.exitCode, signal: st.signal, ...(st.oomKilled ? { oom: true } : {}) },
      `${path} (pid ${pid}) ended: ${how}`,
    );
  });
  if (cmd.scrub) {
    void el.proc.exited.then(() => {
      d.unplace(el);
      d.procs.bury(el.proc);
    });
  }
  // Output arrives in later turns of the event loop: readers attached now miss nothing.
  if (rid1 !== undefined) s.attachStream(rid1, el.proc.read(1, d.nextPipeId()));
  if (rid2 !== undefined) s.attachStream(rid2, el.proc.read(2, d.nextPipeId()));
  void el.proc.joined().then(() => reply(procInfo(el)));
}

function lookup(d: ProcHost, names: string[], eid: number | undefined): { el?: ProcElement; grave?: ProcStat } {
  const el = d.element(names);
  if (el?.kind === "proc" && (eid === undefined || el.proc.eid === eid)) return { el };
  const grave = eid === undefined ? undefined : d.procs.grave(eid);
  if (grave) return { grave };
  const path = formatPath(names);
  if (eid !== undefined && el?.kind === "proc")
    throw new NotFound(`${path}: that process is gone (another one is there now)`);
  if (!el) throw new NotFound(eid === undefined ? `${path} holds no element` : `${path}: that process is gone`);
  throw new WrongKind(`${path} holds a ${el.kind}, not a process`);
}

function int(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new ProtocolError("expected a whole number");
  return v;
}
