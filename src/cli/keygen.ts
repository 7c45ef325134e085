// circuit keygen [FILE]: a new cluster key (64 hex digits), on stdout or into FILE (mode 0600).

import { writeFileSync } from "node:fs";
import type { Command } from "commander";

export function register(program: Command): void {
  program
    .command("keygen")
    .description("print a new cluster key (or write it to FILE, readable by its owner only)")
    .argument("[file]", "file to write the key to; it must not exist")
    .action(async (file: string | undefined) => {
      const { newKey } = await import("../client/keys.js");
      const key = `${newKey()}\n`;
      if (file) writeFileSync(file, key, { mode: 0o600, flag: "wx" });
      else process.stdout.write(key);
    });
}
