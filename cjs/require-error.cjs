// circuit-ts is an ES module package. This file answers require() with a clear message instead of
// Node's ERR_REQUIRE_ESM (or, on Node versions that can require ES modules, a half-working load).
"use strict";
const err = new Error(
  'circuit-ts is an ES module: use `import { dial } from "circuit-ts"` (or "circuit-ts/client"), ' +
    'or from CommonJS `const { dial } = await import("circuit-ts")`.',
);
err.code = "ERR_REQUIRE_ESM";
throw err;
