// circuit keygen [FILE]: a new cluster key (64 hex digits), on stdout or into FILE (mode 0600).

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { type GlobalOptions, printJson } from "./common.js";

export function register(program: Command): void {
  program
    .command("keygen")
    .description("print a new cluster key (or write it to FILE, readable by its owner only)")
    .argument("[file]", "file to write the key to; it must not exist")
    .action(async (file: string | undefined, _o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const { newKey } = await import("../client/keys.js");
      const key = newKey();
      if (!file) {
        if (g.json) printJson({ key });
        else process.stdout.write(`${key}\n`);
        return;
      }
      try {
        writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
      } catch (err) {
        // A key file is never overwritten: a running circuit may depend on the old key.
        if ((err as NodeJS.ErrnoException).code === "EEXIST") {
          throw new Error(`keygen: ${file} already exists; not overwritten (remove it first, or name another file)`);
        }
        throw err;
      }
      if (g.json) printJson({ file });
    });
}
