// circuit mkchan PATH CAP: create a channel.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkchan")
    .description("create a channel with buffer capacity CAP at PATH")
    .argument("<path>", "anchor path")
    .argument("<cap>", "buffer capacity, 0 to 1000000")
    .option("--replicas <n>", "a replicated channel under /@: NATS nodes keeping each value (1, 3 or 5)")
    .action(async (path: string, capArg: string, o: { replicas?: string }, cmd: Command) => {
      pathArg(path);
      const cap = Number(capArg);
      if (!/^\d+$/.test(capArg) || cap > 1_000_000) {
        throw new UsageError(`capacity must be a whole number from 0 to 1000000, got ${JSON.stringify(capArg)}`);
      }
      if (o.replicas !== undefined) {
        if (!["1", "3", "5"].includes(o.replicas)) throw new UsageError(`--replicas is 1, 3 or 5, got ${o.replicas}`);
        if (!path.startsWith("/@/")) throw new UsageError(`--replicas needs a path under /@, not ${path}`);
      }
      const replicas = (o.replicas === undefined ? undefined : Number(o.replicas)) as 1 | 3 | 5 | undefined;
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => {
        if (replicas) await c.walk(path).makeChan(cap, { replicas });
        else await c.walk(path).makeChan(cap);
      });
    });
}
