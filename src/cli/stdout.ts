// circuit stdout PATH: the process's stdout, live, until it ends.

import type { Command } from "commander";
import { registerOutput } from "./output.js";

export function register(program: Command): void {
  registerOutput(program, "stdout");
}
