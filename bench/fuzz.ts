// Fuzzing as a benchmark-sized run: `node --import tsx bench/fuzz.ts [inputs]` (default 100,000
// frames against a live daemon, and as many byte strings against the frame decoder).
import { fuzzDaemon, fuzzDecoder } from "../test/helpers/fuzz.ts";
import type { Scenario } from "./harness.ts";

/** In `npm run bench`: 100,000 inputs each; the results go in the JSON and on stderr. */
export const scenario: Scenario = {
  name: "fuzz",
  description:
    "fuzz: 100,000 random byte strings into the frame decoder, 100,000 random/mutated frames into a live daemon",
  budgetMs: 120_000,
  once: true,
  roles: {},
  async run({ log }) {
    const t0 = performance.now();
    fuzzDecoder(100_000);
    const t1 = performance.now();
    const r = await fuzzDaemon(100_000);
    const t2 = performance.now();
    log(`decoder: 100000 inputs in ${((t1 - t0) / 1000).toFixed(1)} s, nothing escaped`);
    log(
      `daemon: ${r.frames} frames, ${r.closes} connections closed for bad input, ${((t2 - t1) / 1000).toFixed(1)} s, still serving`,
    );
    return { rows: [], info: { decoderInputs: 100_000, daemonFrames: r.frames, closedForBadInput: r.closes } };
  },
};

export async function main(runs = Number(process.argv[2] ?? 100_000)): Promise<void> {
  const t0 = performance.now();
  fuzzDecoder(runs);
  const t1 = performance.now();
  const r = await fuzzDaemon(runs);
  const t2 = performance.now();
  console.log(`fuzz: frame decoder ${runs} inputs in ${((t1 - t0) / 1000).toFixed(1)} s, no escape`);
  console.log(
    `fuzz: daemon ${r.frames} frames, ${r.closes} connections closed for bad input, in ${((t2 - t1) / 1000).toFixed(1)} s; still serving`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
