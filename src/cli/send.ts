// circuit send PATH: send stdin as one byte value (with --json, as one JSON value).

import type { Command } from "commander";
import { chanAt } from "./chan-handle.js";
import {
  type GlobalOptions,
  pathArg,
  readStdin,
  timeoutSignal,
  UsageError,
  withClient,
  withTimeout,
} from "./common.js";
import { Progress } from "./progress.js";

export function register(program: Command): void {
  program
    .command("send")
    .description("send stdin as one message (a byte value, or a JSON value with --json)")
    .argument("<path>", "channel path")
    .option("--timeout <ms>", "give up after this many milliseconds (exit 1)")
    .action(async (path: string, o: { timeout?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      timeoutSignal(o.timeout);
      const progress = new Progress("reading stdin", Progress.stdinSize());
      const input = await readStdin((n) => progress.add(n));
      progress.phase("sending");
      let value: unknown = input;
      if (g.json) {
        try {
          value = JSON.parse(input.toString("utf8"));
        } catch (err) {
          throw new UsageError(`stdin is not valid JSON: ${(err as Error).message}`);
        }
      }
      try {
        await withClient(g, async (c) => {
          const ch = await chanAt(c, path);
          await withTimeout(o.timeout, ch.sendCase(value), (signal) => ch.send(value, { signal }));
        });
      } finally {
        progress.done();
      }
    });
}
