// circuit scrub PATH: remove the element (a channel is aborted).

import type { Command } from "commander";
import { type GlobalOptions, pathArg, withClient } from "./common.js";
import { procAt } from "./proc-handle.js";

export function register(program: Command): void {
  program
    .command("scrub")
    .description("remove the element at PATH (aborting a channel)")
    .argument("<path>", "anchor path")
    .option("--keep", "for a process: remove the element but let the process run on")
    .action(async (path: string, o: { keep?: boolean }, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => {
        if (!o.keep) return c.walk(path).scrub();
        return (await procAt(c, path)).scrub({ keep: true });
      });
    });
}
