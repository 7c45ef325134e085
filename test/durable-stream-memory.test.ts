// test-runner: heavy (memory bounds)
// A 1 GiB stream message through a durable channel (DESIGN §3.1 streams, §3.6): it is stored chunk
// by chunk as it arrives, `sent` resolves once all of it is synced, and it is read back whole from
// the store; the daemon's own memory (RssAnon: heap and buffers, not the store's file pages it maps)
// stays under a bound far below the message the whole time.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { type Daemon, killAll } from "./helpers/daemon.ts";
import { dataDir, startOn } from "./helpers/durable.ts";

const SIZE = Number(process.env.DURABLE_STREAM_MIB ?? 1024) * 2 ** 20;
const PIECE = 2 ** 20;
/** The bound asserted on the daemon's anonymous memory. */
const BOUND = 256 * 1024 * 1024;

const tmp = dataDir("stream-memory");
after(async () => {
  await killAll();
  tmp.rm();
});

function anonOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^RssAnon:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

/** SIZE bytes: 1 MiB pieces, each stamped with its number (so a reordered piece changes the hash). */
function* pieces(): Generator<Buffer> {
  const base = Buffer.alloc(PIECE, 0x5a);
  for (let i = 0; i * PIECE < SIZE; i++) {
    const p = Buffer.from(base);
    p.writeUInt32BE(i, 0);
    p.writeUInt32BE(i, PIECE - 4);
    yield p.subarray(0, Math.min(PIECE, SIZE - i * PIECE));
  }
}

test(`a ${SIZE / 2 ** 20} MiB stream message keeps the daemon's memory under ${BOUND / 2 ** 20} MiB`, async () => {
  const d: Daemon = await startOn(tmp.dir);
  const c = await dial(d.url);
  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, anonOf(d.pid));
  };
  const sampler = setInterval(sample, 50);
  try {
    const ch = await c.walk(`/${d.id}/big`).makeChan<unknown>(1, { durable: true });
    const want = createHash("sha256");
    for (const p of pieces()) want.update(p);
    const t0 = performance.now();
    const w = ch.sendStream();
    await pipeline(Readable.from(pieces()), w);
    await w.sent;
    const stored = performance.now() - t0;
    sample();
    const afterWrite = peak;
    const st = await ch.stat();
    assert.deepEqual([st.len, st.bytes], [1, SIZE]);

    const r = await ch.recvStream();
    const got = createHash("sha256");
    let n = 0;
    for await (const chunk of r) {
      got.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    assert.equal(n, SIZE);
    assert.equal(got.digest("hex"), want.digest("hex"), "the same bytes in the same order");
    sample();
    const total = performance.now() - t0;
    process.stdout.write(
      `# stored in ${Math.round(stored)} ms (${Math.round(SIZE / 2 ** 20 / (stored / 1000))} MiB/s), stored+read ${Math.round(total)} ms; daemon peak RssAnon ${Math.round(afterWrite / 2 ** 20)} MiB while storing, ${Math.round(peak / 2 ** 20)} MiB overall\n`,
    );
    assert.ok(peak < BOUND, `daemon RssAnon peaked at ${Math.round(peak / 2 ** 20)} MiB`);
  } finally {
    clearInterval(sampler);
    await c.close();
    await d.stop();
  }
});
