// circuit start: run a daemon in the foreground; its URL is the first line on stdout.

import { createRequire } from "node:module";
import type V8 from "node:v8";
import type { Command } from "commander";
import { DEFAULT_LIMITS } from "../daemon/limits.js";
import type { StartOptions } from "./start-run.js";

/** V8's interrupt budget for the daemon (its default is 66 KiB of bytecode run; README, Performance). */
const DAEMON_INTERRUPT_BUDGET = 8192;

/**
 * Lowers V8's interrupt budget for the daemon's own code once it is up, unless Node was started
 * with one. Much of a daemon's work runs once a batch of values rather than once a value (Node's
 * socket reads and writes, a frame's handler): with the default budget that code is called often
 * enough to be optimised only after hundreds of thousands of messages, and runs interpreted until
 * then. Set once the daemon listens, not before its code loads: start-up code that runs once then
 * stays unoptimised, which keeps about 1.5 MB off an idle daemon (README, Performance). The budget
 * decides when code is optimised, not what it does; code whose budget was set before counts down
 * the old one once.
 */
function tuneCompiler(): void {
  if (process.execArgv.some((a) => /^--interrupt[-_]budget=/.test(a))) return;
  // Loaded here, not with the command line: every other command would pay for node:v8 (about 0.6 ms).
  const v8 = createRequire(import.meta.url)("node:v8") as typeof V8;
  v8.setFlagsFromString(`--interrupt-budget=${DAEMON_INTERRUPT_BUDGET}`);
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

export function register(program: Command): void {
  program
    .command("start")
    .description("run a daemon (default 127.0.0.1:7711); the first stdout line is its URL")
    .option("--addr <host:port>", "address to listen on (port 0 picks a free port)", "127.0.0.1:7711")
    .option("--join <url>", "join the circuit of this server; repeatable (any one that answers suffices)", collect)
    .option(
      "--advertise <host[:port]>",
      "address other machines reach this server at (env CIRCUIT_ADVERTISE; default: worked out, never 0.0.0.0 or ::)",
    )
    .option("--data <dir>", "keep the server's ID in this directory across restarts (one daemon per directory)")
    .option("--max-value <bytes>", "largest encoded value accepted", String(16 * 1024 * 1024))
    .option("--accept-key <file>", "also accept this (old) key during a key rollover; repeatable", collect)
    .option("--insecure", "allow non-loopback addresses (the daemon's, its nameservers') without a cluster key")
    .option("--handshake-ms <ms>", "close connections that have not authenticated by then", "10000")
    .option("--idle-ms <ms>", "close client connections that send nothing for this long", "60000")
    .option(
      "--forget-clients-ms <ms>",
      "keep the send records of a client gone without its goodbye this long, for it to resend (at least its reconnection time)",
      "660000",
    )
    .option("--max-connections <n>", "most connections served at once", "4096")
    .option("--max-pending <n>", "blocked operations one connection may have", String(DEFAULT_LIMITS.pending))
    .option("--max-credits <n>", "receives one receiver may have outstanding", String(DEFAULT_LIMITS.credits))
    .option("--max-streams <n>", "byte streams one connection may have open", String(DEFAULT_LIMITS.streams))
    .option("--max-channels <n>", "channels one connection may have open", String(DEFAULT_LIMITS.handles))
    .option("--max-select-cases <n>", "cases in one select", String(DEFAULT_LIMITS.selectCases))
    .option("--max-depth <n>", "names in a path", String(DEFAULT_LIMITS.depth))
    .option("--max-name <n>", "characters in an anchor name (at most 128)", String(DEFAULT_LIMITS.nameLength))
    .option("--sub-buffer <n>", "events a subscription keeps", String(DEFAULT_LIMITS.subBuffer))
    .option("--max-unsent <bytes>", "bytes queued for a peer that does not read", String(DEFAULT_LIMITS.unsent))
    .option("--fs-root <dir>", "let clients read and write files under this directory (off by default)")
    .option(
      "--store <nats://host:port,...>",
      "share circuit-wide anchors (/@) through this NATS JetStream cluster (DESIGN §12)",
    )
    .option("--store-tls-ca <file>", "PEM CA file that signed the store's NATS server certificates (TLS)")
    .option("--store-creds <file>", "NATS credentials file for the store connection")
    .option("--log-level <level>", "least severe event logged: trace, debug, info, warn, error, fatal, silent", "info")
    .option("--http <host:port>", "serve /metrics and the dashboard here (loopback unless told otherwise)")
    .option("--no-cgroups", "do not put processes in cgroups (process groups only; mkproc limits fail)")
    .action(async (o: StartOptions, cmd: Command) => {
      // The daemon's code, loaded only here: every other command runs without it. start-run.js is
      // left out of the command line's bundle (scripts/bundle-cli.mjs) and reports its own errors,
      // so the daemon and its start-up share one copy of every module. The bundle runs compiled
      // from V8's code cache, where Node 20 gives import() no loader: its loader lends its own.
      const lent = (globalThis as Record<symbol, unknown>)[Symbol.for("circuit-ts.import")];
      const { runStart }: typeof import("./start-run.js") =
        typeof lent === "function" ? await lent("./start-run.js") : await import("./start-run.js");
      await runStart(o, cmd.optsWithGlobals(), tuneCompiler);
    });
}
