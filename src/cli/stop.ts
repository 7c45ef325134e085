// circuit stop /XID: stop a server gracefully.

import type { Command } from "commander";
import { WrongKind } from "../errors.js";
import { type GlobalOptions, pathArg, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("stop")
    .description("stop the server at /XID")
    .argument("<path>", "server path, /XID")
    .action(async (path: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => {
        const el = await c.walk(path).get();
        if (el?.kind !== "server") throw new WrongKind(`${path} is not a server`);
        await el.stop();
      });
    });
}
