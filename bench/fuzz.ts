// Fuzzing as a benchmark-sized run: `node --import tsx bench/fuzz.ts [inputs]` (default 100,000
// frames against a live daemon, and as many byte strings against the frame decoder).
import { fuzzDaemon, fuzzDecoder } from "../test/helpers/fuzz.ts";

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
