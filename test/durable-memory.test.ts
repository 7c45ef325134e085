// test-runner: heavy (memory bounds)
// A 2 GiB backlog through a durable channel (DESIGN §3.6): 2,048 values of 1 MiB go in while no one
// receives, then come out in order; the daemon's own memory (RssAnon: its heap and buffers, not the
// file pages it maps from the store, which the kernel may reclaim at will) stays under a bound the
// whole time, far below the backlog.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { type Daemon, killAll } from "./helpers/daemon.ts";
import { dataDir, startOn } from "./helpers/durable.ts";

const COUNT = 2048;
const SIZE = 1024 * 1024;
/** The bound asserted on the daemon's anonymous memory. */
const BOUND = 400 * 1024 * 1024;

const tmp = dataDir("memory");
after(async () => {
  await killAll();
  tmp.rm();
});

function memOf(pid: number): { anon: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { anon: kb("RssAnon"), rss: kb("VmRSS") };
}

test(`a ${(COUNT * SIZE) / 2 ** 30} GiB backlog keeps the daemon's memory under ${BOUND / 2 ** 20} MiB`, async () => {
  const d: Daemon = await startOn(tmp.dir);
  // Room for 32 values in flight (sends kept until acknowledged count against this bound).
  const c = await dial(d.url, { maxUnsentBytes: 32 * SIZE });
  let peak = { anon: 0, rss: 0 };
  const sample = () => {
    const m = memOf(d.pid);
    peak = { anon: Math.max(peak.anon, m.anon), rss: Math.max(peak.rss, m.rss) };
  };
  const sampler = setInterval(sample, 50);
  try {
    const ch = await c.walk(`/${d.id}/big`).makeChan<Uint8Array>(COUNT, { durable: true });
    const value = (i: number) => {
      const v = new Uint8Array(SIZE);
      new DataView(v.buffer).setUint32(0, i);
      v[SIZE - 1] = i & 0xff;
      return v;
    };
    const t0 = performance.now();
    const inflight = new Set<Promise<void>>();
    for (let i = 0; i < COUNT; i++) {
      const p: Promise<void> = ch.send(value(i)).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 32) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const filled = performance.now() - t0;
    sample();
    const st = await ch.stat();
    assert.equal(st.len, COUNT);
    assert.ok((st.bytes as number) >= COUNT * SIZE, `bytes ${st.bytes}`);
    const afterFill = { ...peak };

    await ch.close();
    let n = 0;
    for await (const v of ch.iterate({ prefetch: 16 })) {
      const b = v as Uint8Array;
      assert.equal(b.length, SIZE);
      assert.equal(new DataView(b.buffer, b.byteOffset).getUint32(0), n, "in order");
      assert.equal(b[SIZE - 1], n & 0xff);
      n++;
    }
    assert.equal(n, COUNT);
    sample();
    const total = performance.now() - t0;
    process.stdout.write(
      `# fill ${Math.round(filled)} ms, fill+drain ${Math.round(total)} ms; daemon peak RssAnon ${Math.round(afterFill.anon / 2 ** 20)} MiB while filling, ${Math.round(peak.anon / 2 ** 20)} MiB overall; VmRSS ${Math.round(afterFill.rss / 2 ** 20)} MiB while filling, ${Math.round(peak.rss / 2 ** 20)} MiB overall (with the store's file pages mapped while reading back)\n`,
    );
    assert.ok(peak.anon < BOUND, `daemon RssAnon peaked at ${Math.round(peak.anon / 2 ** 20)} MiB`);
    // While the backlog grows nothing is read back, so even the whole RSS stays bounded then.
    assert.ok(
      afterFill.rss < BOUND + 64 * 2 ** 20,
      `daemon VmRSS peaked at ${Math.round(afterFill.rss / 2 ** 20)} MiB while filling`,
    );
  } finally {
    clearInterval(sampler);
    await c.close();
    await d.stop();
  }
});
