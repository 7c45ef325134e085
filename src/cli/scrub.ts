// circuit scrub PATH: remove the element (a channel is aborted).

import type { Command } from "commander";
import { type GlobalOptions, pathArg, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("scrub")
    .description("remove the element at PATH (aborting a channel)")
    .argument("<path>", "anchor path")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, (c) => c.walk(path).scrub());
    });
}
