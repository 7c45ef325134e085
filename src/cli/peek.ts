// circuit peek PATH: the element's state as JSON.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, printJson, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("peek")
    .description("print the state of the element at PATH as JSON")
    .argument("<path>", "anchor path")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      printJson(await withClient(cmd.optsWithGlobals() as GlobalOptions, (c) => c.walk(path).peek()));
    });
}
