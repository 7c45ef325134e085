// A daemon keeps a record of the last send it stored from each client on each channel, so that a
// client back after a broken connection can resend and be stored once. A client gone without its
// goodbye keeps its records for --forget-clients-ms (by default longer than a client tries to
// reconnect), then they go — from a durable channel's store too — instead of staying for as long
// as the channel lives. Driven with raw frames: the test chooses the client id and the sequence
// numbers, as a client library resending after a reconnection would.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { decode, T } from "../src/wire/protocol.ts";
import { type Daemon, startDaemon } from "./helpers/daemon.ts";
import { Raw } from "./helpers/raw.ts";

const FORGET_MS = 3000;

/** A client `cid` connected to `d`: opens the channel at `name` (making it) and sends there. */
async function client(d: Daemon, cid: string, name: string, durable: boolean) {
  const r = new Raw(Number(new URL(d.url.replace("circuit://", "http://")).port));
  await r.hello(cid);
  let id = 0;
  const ask = async (req: Record<string, unknown>) => {
    r.request(++id, req);
    const f = await r.next();
    assert.equal(f?.type, T.RES, `answer to ${JSON.stringify(req)}: ${f && decode(f.body.subarray(4))}`);
    return decode((f as { body: Buffer }).body.subarray(4)) as Record<string, unknown>;
  };
  const { handle } = (await ask({ op: "openchan", path: [d.id, name], cap: 16, ...(durable ? { durable } : {}) })) as {
    handle: number;
  };
  return {
    /** Sends `value` as this client's send number `seq`; resolves once it is answered. */
    async send(seq: number, value: string): Promise<void> {
      r.frame(T.SEND, [++id, handle, 0, seq], Buffer.from(value));
      const f = await r.next();
      assert.equal(f?.type, T.RES);
    },
    async len(): Promise<number> {
      return (await ask({ op: "stat", handle })).len as number;
    },
    /** The connection breaks: no goodbye. */
    vanish: () => r.destroy(),
  };
}

test("a vanished client's resend is stored once while it may come back; its records go after --forget-clients-ms", async () => {
  const d = await startDaemon(["--forget-clients-ms", String(FORGET_MS)]);
  try {
    const a = await client(d, "client-a", "q", false);
    await a.send(1, "one");
    a.vanish();
    // Back at once: the resend of send 1 is recognised.
    const a2 = await client(d, "client-a", "q", false);
    await a2.send(1, "one");
    assert.equal(await a2.len(), 1, "stored once");
    await a2.send(2, "two");
    assert.equal(await a2.len(), 2);
    a2.vanish();
    // Away for longer than the window: its record is gone, so the same numbers are new sends.
    await sleep(FORGET_MS + 2000);
    const a3 = await client(d, "client-a", "q", false);
    await a3.send(2, "two again");
    assert.equal(await a3.len(), 3, "the record of client-a was forgotten");
    a3.vanish();
  } finally {
    await d.stop();
  }
});

test("a durable channel's records of a vanished client outlive a restart for the window, then leave the store", async () => {
  const data = mkdtempSync(join(tmpdir(), "circuit-forget-"));
  const start = () => startDaemon(["--data", data, "--forget-clients-ms", String(FORGET_MS)]);
  let d = await start();
  /** Client-d (back) on the durable channel: sends its send 1 and says how many the channel holds. */
  const sendOne = async (value: string) => {
    const c = await client(d, "client-d", "dq", true);
    await c.send(1, value);
    const n = await c.len();
    c.vanish();
    return n;
  };
  try {
    assert.equal(await sendOne("one"), 1);
    await d.stop();
    // Restarted: the record is back with the channel, and the window starts again.
    d = await start();
    assert.equal(await sendOne("one"), 1, "stored once across the restart");
    await sleep(FORGET_MS + 2000);
    await d.stop();
    // Forgotten in the store as well: after another restart the same number is a new send.
    d = await start();
    assert.equal(await sendOne("one again"), 2, "the stored record of client-d was dropped");
  } finally {
    await d.stop();
    rmSync(data, { recursive: true, force: true });
  }
});
