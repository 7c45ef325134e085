// circuit signal PATH SIG: send a signal (TERM, SIGKILL, INT, HUP, USR1, STOP, CONT, …) to a process.

import type { Command } from "commander";
import { BadSignal } from "../errors.js";
import { signalName } from "../wire/signals.js";
import { type GlobalOptions, pathArg, UsageError, withClient } from "./common.js";
import { procAt } from "./proc-handle.js";

export function register(program: Command): void {
  program
    .command("signal")
    .description("send a signal to the process at PATH (a POSIX name, with or without SIG)")
    .argument("<path>", "process path")
    .argument("<signal>", "TERM, KILL, INT, HUP, USR1, STOP, CONT, …")
    .action(async (path: string, sig: string, _o: unknown, cmd: Command) => {
      pathArg(path);
      // An unknown name is a usage error (exit 2), whether we or the hosting server notice.
      if (!signalName(sig)) throw new UsageError(`BadSignal: unknown signal ${JSON.stringify(sig)}`);
      try {
        await withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => (await procAt(c, path)).signal(sig));
      } catch (err) {
        if (err instanceof BadSignal) throw new UsageError(`BadSignal: ${err.message}`);
        throw err;
      }
    });
}
