// `node --import ./scripts/test-loader/register.mjs`: the hooks of hooks.mjs, with stack traces
// mapped back to the TypeScript source.
import { register } from "node:module";

process.setSourceMapsEnabled(true);
register(new URL("./hooks.mjs", import.meta.url));
