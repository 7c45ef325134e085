// circuit mkchan [--open] [--durable] PATH CAP: create a channel (or, with --open, use the one there).

import type { Command } from "commander";
import { MAX_DURABLE_CAP } from "../wire/caps.js";
import { type GlobalOptions, pathArg, printJson, UsageError, withClient } from "./common.js";

export function register(program: Command): void {
  program
    .command("mkchan")
    .description("create a channel with buffer capacity CAP at PATH")
    .argument("<path>", "anchor path")
    .argument("<cap>", `buffer capacity, 0 to 1000000 (durable: 0 to ${MAX_DURABLE_CAP})`)
    .option("-o, --open", "use the channel already there (whatever its capacity) instead of failing with AnchorBusy")
    .option("--durable", "keep the buffer on the server's disk: it survives a crash (needs a server with --data)")
    .option("--replicas <n>", "a replicated channel under /@: NATS nodes keeping each value (1, 3 or 5)")
    .action(
      async (
        path: string,
        capArg: string,
        o: { open?: boolean; durable?: boolean; replicas?: string },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals() as GlobalOptions;
        pathArg(path);
        const cap = Number(capArg);
        const durable = o.durable === true;
        const [min, max] = durable ? [0, MAX_DURABLE_CAP] : [0, 1_000_000];
        if (!/^\d+$/.test(capArg) || cap < min || cap > max) {
          throw new UsageError(
            `capacity must be a whole number from ${min} to ${max}${durable ? " for a durable channel" : ""}, got ${JSON.stringify(capArg)}`,
          );
        }
        if (o.replicas !== undefined || path.startsWith("/@/")) {
          if (o.replicas !== undefined && !["1", "3", "5"].includes(o.replicas))
            throw new UsageError(`--replicas is 1, 3 or 5, got ${o.replicas}`);
          if (!path.startsWith("/@/")) throw new UsageError(`--replicas needs a path under /@, not ${path}`);
          if (durable) throw new UsageError("--durable does not apply to /@ channels: they are replicated");
          const replicas = Number(o.replicas ?? "1") as 1 | 3 | 5;
          const rc = await withClient(g, (c) =>
            o.open ? c.walk(path).openChan(cap, { replicas }) : c.walk(path).makeChan(cap, { replicas }),
          );
          if (g.json) printJson({ path: rc.path, cap: rc.cap, replicas: rc.replicas });
          return;
        }
        const ch = await withClient(g, (c) =>
          o.open ? c.walk(path).openChan(cap, { durable }) : c.walk(path).makeChan(cap, { durable }),
        );
        if (g.json) printJson({ path: ch.path, cap: ch.cap, ...(durable ? { durable: true } : {}) });
      },
    );
}
