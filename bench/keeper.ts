// `keeper.ts CMD ARGS...`, forked by Procs.spawn with an IPC channel: runs a server (nats-server,
// a circuit daemon) with this process's stdout and stderr, and takes it down with it. A server
// spawned directly would outlive an orchestrator killed with SIGKILL; the keeper notices the
// closed IPC channel instead and stops the server.
import { spawn } from "node:child_process";
import { constants } from "node:os";

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error("keeper: no command");
  process.exit(2);
}
const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit"] });
let stopping = false;

function stop(): void {
  if (stopping) return;
  stopping = true;
  child.kill("SIGTERM");
  // A server that ignores SIGTERM must still go.
  setTimeout(() => child.kill("SIGKILL"), 2000).unref();
}

child.on("error", (e) => {
  console.error(`keeper: ${cmd}: ${e.message}`);
  process.exit(127);
});
child.on("exit", (code, sig) => process.exit(code ?? 128 + (sig ? constants.signals[sig] : 0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.on("disconnect", stop);
