// circuit close PATH: close a channel.

import type { Command } from "commander";
import { chanAt } from "./chan-handle.js";
import { type GlobalOptions, pathArg, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("close")
    .description("close the channel at PATH")
    .argument("<path>", "channel path")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => (await chanAt(c, path)).close());
    });
}
