// circuit mkchan [--open] PATH CAP: create a channel (or, with --open, use the one there).

import type { Command } from "commander";
import { type GlobalOptions, pathArg, printJson, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkchan")
    .description("create a channel with buffer capacity CAP at PATH")
    .argument("<path>", "anchor path")
    .argument("<cap>", "buffer capacity, 0 to 1000000")
    .option("-o, --open", "use the channel already there (whatever its capacity) instead of failing with AnchorBusy")
    .action(async (path: string, capArg: string, o: { open?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      const cap = Number(capArg);
      if (!/^\d+$/.test(capArg) || cap > 1_000_000) {
        throw new UsageError(`capacity must be a whole number from 0 to 1000000, got ${JSON.stringify(capArg)}`);
      }
      const ch = await withClient(g, (c) => (o.open ? c.walk(path).openChan(cap) : c.walk(path).makeChan(cap)));
      if (g.json) printJson({ path: ch.path, cap: ch.cap });
    });
}
