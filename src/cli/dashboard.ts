// circuit dashboard: the URL of the dialled daemon's dashboard (`start --http`), with the token
// a keyed circuit requires.

import type { Command } from "commander";
import { NotFound } from "../errors.js";
import { type GlobalOptions, keyOption, printJson, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("dashboard")
    .description("print the dashboard URL of the dialled daemon (with its token on a keyed circuit)")
    .action(async (_o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const key = await keyOption(g);
      const stat = await withClient(g, (c) => c.walk(`/${c.serverId}`).peek());
      const http = (stat as { http?: string }).http;
      if (!http) {
        throw new NotFound(`${(stat as { id: string }).id} serves no dashboard (start it with --http HOST:PORT)`);
      }
      const { dashboardToken } = await import("../client/keys.js");
      const url = key ? `${http}?token=${dashboardToken(key)}` : http;
      if (g.json) printJson({ url, metrics: key ? `${http}metrics?token=${dashboardToken(key)}` : `${http}metrics` });
      else process.stdout.write(`${url}\n`);
    });
}
