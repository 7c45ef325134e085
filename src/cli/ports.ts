// circuit ports /XID: the host's listening TCP ports; --reserve prints a free port kept for 60 s.

import type { Command } from "commander";
import { type GlobalOptions, pathArg, printJson, withClient } from "./common.js";
import { serverAt } from "./proc-handle.js";

export function register(program: Command): void {
  program
    .command("ports")
    .description("list the listening TCP ports of the host of server /XID (ADDRESS:PORT a line)")
    .argument("<path>", "server path, /XID")
    .option("--reserve", "instead, reserve a free port on that host and print it")
    .option("--address <ip>", "with --reserve: the address the port must be free on (default 0.0.0.0)")
    .action(async (path: string, o: { reserve?: boolean; address?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      await withClient(g, async (c) => {
        const srv = await serverAt(c, path);
        if (o.reserve) {
          const port = await srv.reservePort({ address: o.address });
          if (g.json) printJson({ port });
          else process.stdout.write(`${port}\n`);
          return;
        }
        const ports = await srv.ports();
        if (g.json) return printJson(ports);
        for (const p of ports) {
          process.stdout.write(`${p.family === 6 ? `[${p.address}]` : p.address}:${p.port}\n`);
        }
      });
    });
}
