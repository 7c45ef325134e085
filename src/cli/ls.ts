// circuit ls [-l] PATH: children of PATH, one full path a line; PATH/... lists recursively.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, printJson, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("ls")
    .description("list the children of PATH (PATH/... lists recursively)")
    .argument("[path]", "anchor path", "/")
    .option("-l, --long", "add kind and state")
    .action(async (path: string, o: { long?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      let recursive = false;
      if (path === "/..." || path.endsWith("/...")) {
        recursive = true;
        path = path.slice(0, -4) || "/";
      }
      pathArg(path);
      const entries = await withClient(g, (c) => c.walk(path).list({ recursive, long: o.long === true }));
      if (g.json) return printJson(entries);
      const width = Math.max(0, ...entries.map((e) => e.path.length));
      for (const e of entries) {
        if (o.long)
          process.stdout.write(
            `${`${e.path.padEnd(width)}  ${(e.kind ?? "-").padEnd(6)}  ${e.state ?? ""}`.trimEnd()}\n`,
          );
        else process.stdout.write(`${e.path}\n`);
      }
    });
}
