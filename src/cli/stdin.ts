// circuit stdin PATH: copy stdin to the process's stdin; EOF closes the process's stdin.

import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { type GlobalOptions, pathArg, withClient } from "./common.js";
import { procAt } from "./proc-handle.js";

export function register(program: Command): void {
  program
    .command("stdin")
    .description("copy stdin to the stdin of the process at PATH; end of input closes it")
    .argument("<path>", "process path")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => {
        const p = await procAt(c, path);
        await pipeline(process.stdin, p.stdin);
      });
    });
}
