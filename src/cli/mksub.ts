// circuit mk@join PATH, mk@leave PATH: subscriptions to servers joining and leaving; read them with recv.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, withClient } from "./common.js";

export function register(program: Command): void {
  for (const kind of ["@join", "@leave"] as const) {
    program
      .command(`mk${kind}`)
      .description(`create a subscription to servers ${kind === "@join" ? "joining" : "leaving"} the circuit`)
      .argument("<path>", "anchor path")
      .action(async (path: string, _o: unknown, cmd: Command) => {
        pathArg(path);
        await withClient(cmd.optsWithGlobals() as GlobalOptions, (c) =>
          kind === "@join" ? c.walk(path).makeOnJoin() : c.walk(path).makeOnLeave(),
        );
      });
  }
}
