// A durable channel on a full disk (DESIGN §3.6): the data directory is on a small tmpfs the test
// mounts (root only) and fills with a ballast file; a send then fails with StorageFull, nothing
// already stored is lost (also across a kill -9), and sends work again once the ballast is gone; a
// stream message on the full disk fails with StorageFull too, leaving nothing.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, test } from "node:test";
import { type Chan, dial, StorageFull } from "../src/index.ts";
import { type Daemon, killAll } from "./helpers/daemon.ts";
import { crashAndRestart, dataDir, startOn } from "./helpers/durable.ts";
import { readAll } from "./helpers/streams.ts";

const root = process.getuid?.() === 0;
const mnt = dataDir("full");
let mounted = false;
after(async () => {
  await killAll();
  if (mounted) execFileSync("umount", ["-l", mnt.dir]);
  mnt.rm();
});

/** Writes zeros to `file` until the file system is full; returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  let n = 0;
  try {
    for (;;) n += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  return n;
}

test("full disk: StorageFull, nothing stored is lost, sends work again when space returns", {
  skip: root ? false : "mounting a tmpfs needs root",
}, async () => {
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt.dir]);
  mounted = true;
  const dir = join(mnt.dir, "data");
  mkdirSync(dir);
  let d: Daemon = await startOn(dir);
  let c = await dial(d.url);
  try {
    const ch = await c.walk(`/${d.id}/q`).makeChan<Uint8Array>(100_000, { durable: true });
    const value = (i: number) => new Uint8Array(16 * 1024).fill(i & 0xff);
    const sent: number[] = [];
    for (let i = 0; i < 20; i++) {
      await ch.send(value(i));
      sent.push(i);
    }
    const ballast = join(mnt.dir, "ballast");
    assert.ok(fill(ballast) > 0);
    let failure: unknown;
    for (let i = 20; i < 2000; i++) {
      try {
        await ch.send(value(i));
        sent.push(i);
      } catch (err) {
        failure = err;
        break;
      }
    }
    let stored = sent.length;
    assert.ok(failure instanceof StorageFull, `expected StorageFull, got ${failure}`);
    assert.match((failure as Error).message, /chans\.mdb/);
    // The failed send left nothing behind; everything before it is there.
    assert.equal((await ch.stat()).len, stored);
    // Credited sends (several at once) fail the same way, and the channel stays usable.
    const many = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => ch.send(value(500 + i))));
    for (const [i, r] of many.entries()) {
      if (r.status === "rejected") assert.ok(r.reason instanceof StorageFull, String(r.reason));
      else sent.push(500 + i);
    }
    stored = sent.length;
    assert.equal((await ch.stat()).len, stored);
    // A stream message fails the same way, leaving nothing in the channel.
    const w = ch.sendStream();
    w.on("error", () => {});
    w.end(Buffer.alloc(4 * 1024 * 1024, 7));
    await assert.rejects(w.sent, StorageFull);
    assert.equal((await ch.stat()).len, stored);

    rmSync(ballast);
    await ch.send(value(1000));
    sent.push(1000);
    stored++;
    assert.equal((await ch.stat()).len, stored);
    // Once space returns, big values and a stream message are stored too, and the daemon lives
    // (lmdb 3.5 died with `malloc(): corrupted top size` on such writes after commits had failed
    // for a full disk; writes are now refused before LMDB sees them, see DurableStore.hasRoom).
    const big = new Uint8Array(1024 * 1024).fill(9);
    for (let i = 0; i < 6; i++) await ch.send(big);
    const w2 = ch.sendStream();
    w2.end(Buffer.alloc(1024 * 1024, 8));
    await w2.sent;
    stored += 7;
    assert.equal((await ch.stat()).len, stored);

    await c.close();
    d = await crashAndRestart(d, dir);
    c = await dial(d.url);
    const again = (await c.walk(`/${d.id}/q`).get()) as Chan<Uint8Array>;
    assert.equal((await again.stat()).len, stored);
    // Everything that was stored, in order.
    for (const i of sent) assert.deepEqual(await again.recv(), Buffer.from(value(i)), `value ${i}`);
    for (let i = 0; i < 6; i++) assert.deepEqual(await again.recv(), Buffer.from(big), `big value ${i}`);
    const msg = (await again.recv()) as unknown as Readable;
    assert.deepEqual(await readAll(msg), Buffer.alloc(1024 * 1024, 8));
  } catch (e) {
    // The daemon's own words (lmdb prints its write errors there) help tell a store failure apart.
    console.error("daemon stderr:", d.stderr());
    throw e;
  } finally {
    await c.close().catch(() => {});
    await d.stop();
  }
});
