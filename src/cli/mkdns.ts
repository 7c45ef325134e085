// circuit mkdns PATH [HOST:PORT]: start a nameserver; prints the address it listens on.

import type { Command } from "commander";
import { checkNameserverAddr } from "../client/nameserver.js";
import { type GlobalOptions, pathArg, printJson, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkdns")
    .description("start a nameserver (DNS over UDP and TCP) at PATH; prints HOST:PORT")
    .argument("<path>", "anchor path")
    .argument("[addr]", "HOST:PORT to listen on (default 127.0.0.1 and a free port)")
    .action(async (path: string, addr: string | undefined, _o: unknown, cmd: Command) => {
      pathArg(path);
      if (addr !== undefined) {
        try {
          checkNameserverAddr(addr);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
      }
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const ns = await withClient(g, (c) => c.walk(path).makeNameserver(addr));
      if (g.json) printJson({ path: ns.path, address: ns.address });
      else process.stdout.write(`${ns.address}\n`);
    });
}
