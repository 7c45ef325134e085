// circuit set PATH 'RR': add a record in zone-file syntax to the nameserver at PATH.

import type { Command } from "commander";
import { parseRecord } from "../wire/zone-file.js";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";
import { nameserverAt } from "./dns-handle.js";

export function register(program: Command): void {
  program
    .command("set")
    .description("add a DNS record to the nameserver at PATH, e.g. 'web.circuit. 60 IN A 10.0.0.5'")
    .argument("<path>", "nameserver path")
    .argument("<rr>", "one record: OWNER [TTL] [IN] TYPE DATA (A, AAAA, CNAME, TXT, SRV, MX, NS, PTR)")
    .action(async (path: string, rr: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      try {
        parseRecord(rr);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => (await nameserverAt(c, path)).set(rr));
    });
}
