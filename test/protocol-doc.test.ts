// docs/protocol.md is the wire contract for other clients: it must name every op the request
// schema (src/wire/requests.ts) has, so a new op cannot ship undocumented.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { OPS } from "../src/wire/requests.ts";

test("docs/protocol.md names every op of the request schema", () => {
  const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
  // As a table row's first cell (| `ls` |) or in a request literal ({op: "mkproc", …}).
  const named = (op: string) => doc.includes(`| \`${op}\` |`) || doc.includes(`op: "${op}"`);
  assert.deepEqual(
    OPS.filter((op) => !named(op)),
    [],
  );
  assert.ok(!named("launch-missiles"), "the check can fail");
});
