// circuit mkchan PATH CAP: create a channel.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkchan")
    .description("create a channel with buffer capacity CAP at PATH")
    .argument("<path>", "anchor path")
    .argument("<cap>", "buffer capacity, 0 to 1000000")
    .action(async (path: string, capArg: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      const cap = Number(capArg);
      if (!/^\d+$/.test(capArg) || cap > 1_000_000) {
        throw new UsageError(`capacity must be a whole number from 0 to 1000000, got ${JSON.stringify(capArg)}`);
      }
      await withClient(cmd.optsWithGlobals() as GlobalOptions, (c) => c.walk(path).makeChan(cap));
    });
}
