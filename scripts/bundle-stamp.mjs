// The command line's bundle carries a stamp of its own contents on its last line, which the code
// cache of each command records (src/cli/circuit.cts): V8 checks a cache against its own version
// and flags and against the length of the source only, so a bundle changed at the same length (a
// new version string) would otherwise run the functions cached from the old one.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

/** The stamp line's start; 32 hex digits of the SHA-256 of everything before the line follow it. */
export const STAMP_PREFIX = "//# circuit-bundle ";

/** Writes the bundle at `file` again with its stamp as the last line (replacing one it has). */
export function stampBundle(file) {
  let source = readFileSync(file, "latin1");
  const at = source.lastIndexOf(`\n${STAMP_PREFIX}`);
  if (at >= 0) source = source.slice(0, at + 1);
  if (!source.endsWith("\n")) source += "\n";
  const stamp = createHash("sha256").update(source, "latin1").digest("hex").slice(0, 32);
  writeFileSync(file, `${source}${STAMP_PREFIX}${stamp}\n`, "latin1");
  return stamp;
}
