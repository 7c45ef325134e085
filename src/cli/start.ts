// circuit start: run a daemon in the foreground; its URL is the first line on stdout.

import type { Command } from "commander";
import { Daemon } from "../daemon/daemon.js";
import { UsageError } from "./common.js";

export function register(program: Command): void {
  program
    .command("start")
    .description("run a daemon (default 127.0.0.1:7711); the first stdout line is its URL")
    .option("--addr <host:port>", "address to listen on (port 0 picks a free port)", "127.0.0.1:7711")
    .option("--join <url>", "join the circuit of this server")
    .option("--data <dir>", "keep the server's identity in this directory")
    .option("--max-value <bytes>", "largest encoded value accepted", String(16 * 1024 * 1024))
    .action(async (o: { addr: string; join?: string; data?: string; maxValue: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { key?: string; discover?: string };
      for (const [flag, v] of [
        ["--join", o.join],
        ["--data", o.data],
        ["--key", g.key],
        ["--discover", g.discover],
      ] as const) {
        if (v !== undefined) throw new UsageError(`${flag} is not supported by this build yet`);
      }
      const maxValue = Number(o.maxValue);
      if (!Number.isInteger(maxValue) || maxValue < 1)
        throw new UsageError("--max-value takes a positive whole number");
      const host = o.addr.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
      if (!["127.0.0.1", "localhost", "::1"].includes(host) && !host.startsWith("127.")) {
        throw new UsageError(`refusing to listen on ${o.addr} without a cluster key: this build serves loopback only`);
      }
      let d: Daemon;
      try {
        d = await Daemon.start({ addr: o.addr, maxValue });
      } catch (err) {
        if (err instanceof TypeError) throw new UsageError(err.message);
        throw err;
      }
      process.stdout.write(`${d.url}\n`);
      const stop = () => void d.stop();
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      await d.done;
    });
}
