// circuit join URL: merge the daemon named by -d into the circuit of the server at URL.

import type { Command } from "commander";
import { parseUrl } from "../wire/url.js";
import { type GlobalOptions, printJson, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("join")
    .description("merge the dialled daemon (-d) into the circuit of the server at URL")
    .argument("<url>", "circuit://HOST:PORT[/XID] of any member of the other circuit")
    .action(async (url: string, _o: unknown, cmd: Command) => {
      try {
        parseUrl(url);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const r = await withClient(g, async (c) => {
        const server = await c.walk(`/${c.serverId}`).get();
        if (server?.kind !== "server") throw new Error(`/${c.serverId} holds no server element`);
        return server.join(url);
      });
      if (g.json) printJson(r);
      else process.stdout.write(`joined ${r.url} (${r.members} member${r.members === 1 ? "" : "s"})\n`);
    });
}
