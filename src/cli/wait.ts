// circuit wait PATH: wait for the process to end and print its final stat; exit 0 whatever its exit code.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, printJson, timeoutSignal, withClient } from "./common.js";
import { procAt } from "./proc-handle.js";

export function register(program: Command): void {
  program
    .command("wait")
    .description("wait until the process at PATH has ended; print its final state as JSON")
    .argument("<path>", "process path")
    .option("--timeout <ms>", "give up after this many milliseconds (exit 1)")
    .action(async (path: string, o: { timeout?: string }, cmd: Command) => {
      pathArg(path);
      const deadline = timeoutSignal(o.timeout);
      const stat = await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) =>
        (await procAt(c, path)).wait({ signal: deadline() }),
      );
      printJson(stat);
    });
}
