// What `circuit stdout` and `circuit stderr` share: the kept tail, then live output, until it ends.

import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { type GlobalOptions, pathArg, withClient } from "./common.js";
import { procAt } from "./proc-handle.js";

export function registerOutput(program: Command, name: "stdout" | "stderr"): void {
  program
    .command(name)
    .description(`write the ${name} of the process at PATH (its last 64 KiB, then live) until it ends`)
    .argument("<path>", "process path")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => {
        const p = await procAt(c, path);
        await pipeline(p.output(name === "stdout" ? 1 : 2), process.stdout, { end: false });
      });
    });
}
