// circuit unset PATH NAME: remove every record of NAME from the nameserver at PATH.

import type { Command } from "commander";
import { parseName } from "../wire/zone-file.js";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";
import { nameserverAt } from "./dns-handle.js";

export function register(program: Command): void {
  program
    .command("unset")
    .description("remove every record of NAME from the nameserver at PATH")
    .argument("<path>", "nameserver path")
    .argument("<name>", "domain name, e.g. web.circuit.")
    .action(async (path: string, name: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      try {
        parseName(name);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => (await nameserverAt(c, path)).unset(name));
    });
}
