// A process that moves frames keeps the memory it frees for reuse (src/util/malloc-hint.ts): once
// it has made a connection, glibc's malloc serves blocks of a few MiB from its heap and keeps them
// when they are freed, so a block allocated after another was freed lands on pages already there
// instead of fresh ones, each a page fault. Measured in fresh processes (the allocator's state is
// per process), one that makes a FrameConn and one that does not, with the minor page faults of
// writing a 4 MiB block that follows another one written, dropped and collected.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const frameConn = fileURLToPath(new URL("../dist/transport/frame-conn.js", import.meta.url));
const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
const glibc = process.platform === "linux" && Boolean(report.header?.glibcVersionRuntime);

/**
 * Faults of writing each of 4 rounds of `perRound` blocks of `mib` MiB, each round's blocks dropped
 * and collected together before the next round (the sum over a round's blocks).
 */
function faultsPerBlock(makeConn: boolean, env: NodeJS.ProcessEnv = process.env, mib = 4, perRound = 1): number[] {
  const script = `
    if (${makeConn}) {
      const { FrameConn } = await import(${JSON.stringify(frameConn)});
      const { Duplex } = await import("node:stream");
      new FrameConn(new Duplex({ read() {}, write(c, e, cb) { cb(); } }), { maxFrame: 1024 });
    }
    // The collector frees ArrayBuffer memory on a thread of its own: give it time to finish.
    const collect = async () => {
      for (let i = 0; i < 2; i++) {
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await collect();
    const faults = () => process.resourceUsage().minorPageFault;
    const out = [];
    for (let round = 0; round < 4; round++) {
      let bs = [];
      const f0 = faults();
      for (let i = 0; i < ${perRound}; i++) bs.push(Buffer.allocUnsafe(${mib} * 1024 * 1024).fill(round));
      out.push(faults() - f0);
      bs = null;
      await collect();
    }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
    env,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as number[];
}

const PAGES = (4 * 1024 * 1024) / 4096;

test("after a connection, a freed block's pages are reused by the next one", { skip: !glibc && "glibc only" }, () => {
  const withConn = faultsPerBlock(true);
  const without = faultsPerBlock(false);
  // Without the hint glibc maps the first block apart and unmaps it when freed, and the second
  // is fresh memory again (glibc adapts only then); with it the second reuses the first's pages.
  assert.ok((without[1] as number) > PAGES / 2, `without a connection: ${without.join(", ")} faults per block`);
  assert.ok((withConn[1] as number) < PAGES / 10, `with a connection: ${withConn.join(", ")} faults per block`);
});

test("three 16 MiB values freed by one collection are kept for the next ones", { skip: !glibc && "glibc only" }, () => {
  // The largest values a channel carries, freed together as the collector frees them: the heap
  // keeps them (the block makes glibc keep up to twice its size free, 64 MiB) and the next three
  // land on the same pages. With a 16 MiB block it kept 32 MiB and handed the rest back.
  const withConn = faultsPerBlock(true, process.env, 16, 3);
  const pages = (3 * 16 * 1024 * 1024) / 4096;
  assert.ok((withConn[0] as number) > pages / 2, `the first three are fresh memory: ${withConn.join(", ")}`);
  for (const f of withConn.slice(1))
    assert.ok(f < pages / 10, `with a connection: ${withConn.join(", ")} faults per round`);
});

test("malloc thresholds the user has set are left as they are", { skip: !glibc && "glibc only" }, () => {
  // Setting a threshold stops glibc adapting, so the block dropped at the start changes nothing:
  // with blocks of 4 MiB mapped apart each time, every one is fresh.
  const env = { ...process.env, MALLOC_MMAP_THRESHOLD_: String(1024 * 1024) };
  const withConn = faultsPerBlock(true, env);
  for (const f of withConn) assert.ok(f > PAGES / 2, `with MALLOC_MMAP_THRESHOLD_ set: ${withConn.join(", ")}`);
});
