// circuit scale PATH N: set the desired replica count of a service.

import type { Command } from "commander";
import { WrongKind } from "../errors.js";
import { type GlobalOptions, pathArg, printJson, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("scale")
    .description("set the number of replicas of the service at PATH (within its min…max)")
    .argument("<path>", "anchor path of the service")
    .argument("<n>", "replicas wanted")
    .action(async (path: string, nArg: string, _o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      if (!/^\d{1,10}$/.test(nArg)) throw new UsageError(`N must be a whole number, got ${JSON.stringify(nArg)}`);
      const stat = await withClient(g, async (c) => {
        const el = await c.walk(path).get();
        if (el?.kind !== "svc")
          throw new WrongKind(`${path} holds ${el ? `a ${el.kind}` : "no element"}, not a service`);
        return el.scale(Number(nArg));
      });
      if (g.json) printJson(stat);
    });
}
