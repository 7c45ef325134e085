// circuit mkchan [--durable] PATH CAP: create a channel.

import type { Command } from "commander";
import { MAX_DURABLE_CAP } from "../wire/protocol.js";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkchan")
    .description("create a channel with buffer capacity CAP at PATH")
    .argument("<path>", "anchor path")
    .argument("<cap>", `buffer capacity, 0 to 1000000 (durable: 1 to ${MAX_DURABLE_CAP})`)
    .option("--durable", "keep the buffer on the server's disk: it survives a crash (needs a server with --data)")
    .action(async (path: string, capArg: string, o: { durable?: boolean }, cmd: Command) => {
      pathArg(path);
      const cap = Number(capArg);
      const durable = o.durable === true;
      const [min, max] = durable ? [1, MAX_DURABLE_CAP] : [0, 1_000_000];
      if (!/^\d+$/.test(capArg) || cap < min || cap > max) {
        throw new UsageError(
          `capacity must be a whole number from ${min} to ${max}${durable ? " for a durable channel" : ""}, got ${JSON.stringify(capArg)}`,
        );
      }
      await withClient(cmd.optsWithGlobals() as GlobalOptions, (c) => c.walk(path).makeChan(cap, { durable }));
    });
}
