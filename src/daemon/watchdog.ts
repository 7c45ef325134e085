// The process watchdog of one daemon (see src/daemon/proc-guard.ts): `node watchdog.js OWNER
// cgroups|none`. It reads the daemon's process record as JSON lines on stdin; at EOF the daemon is
// gone, and it kills every recorded process (cgroups as a whole, process groups with their
// descendants), sweeps the daemon's cgroup directories, and exits.

import { hostCgroups } from "./cgroups.js";
import { type GuardMessage, type ProcRecord, reapOwner, reapRecords } from "./proc-guard.js";

/** A process being spawned joins its cgroup a moment after the record names it: sweep twice. */
const SECOND_SWEEP_MS = 200;

const [owner, mode] = process.argv.slice(2);
const records = new Map<string, ProcRecord>();
let buf = "";

function take(line: string): void {
  try {
    const m = JSON.parse(line) as GuardMessage;
    if ("set" in m) records.set(m.set.key, m.set);
    else if ("del" in m) records.delete(m.del);
  } catch {
    // a torn last line from a dying daemon: nothing to learn from it
  }
}

function sweep(): void {
  reapRecords(records.values());
  if (mode === "cgroups" && owner) {
    const cg = hostCgroups();
    if (cg.backend) reapOwner(cg.backend, owner);
  }
}

// Nothing on stdout/stderr is read; a terminal's signals do not reach a detached process, but a
// stray SIGINT/SIGHUP must not stop the watchdog before the daemon is gone.
process.on("SIGINT", () => {});
process.on("SIGHUP", () => {});
process.stdin.setEncoding("utf8");
process.stdin.on("data", (s: string) => {
  buf += s;
  let nl = buf.indexOf("\n");
  while (nl >= 0) {
    take(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    nl = buf.indexOf("\n");
  }
});
let ended = false;
const onEnd = () => {
  if (ended) return;
  ended = true;
  sweep();
  setTimeout(() => {
    sweep();
    process.exit(0);
  }, SECOND_SWEEP_MS);
};
process.stdin.on("end", onEnd);
process.stdin.on("close", onEnd);
process.stdin.on("error", onEnd);
