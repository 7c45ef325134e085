// test-runner: heavy (a NATS cluster, leases with a 3 s TTL and timed takeovers)
// Fencing (DESIGN §12): a host that lost its lease while paused can change nothing when it wakes.
// Every record a host appends to a channel's log carries "expected last sequence" and the host's ID,
// so the log itself shows who wrote what: after the new host's takeover record, none by the old one.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "nats";
import { ReplicatedChan as HostedChan, Moved } from "../src/daemon/replicated-chan.ts";
import { keyOf } from "../src/daemon/store.ts";
import { dial, type ReplicatedChan } from "../src/index.ts";
import { within } from "./helpers/cli.ts";
import { killAll } from "./helpers/daemon.ts";
import { startNatsCluster } from "./helpers/nats-cluster.ts";
import { startStoreCircuit } from "./helpers/store.ts";

after(killAll);

interface Rec {
  seq: number;
  t: string;
  host: string;
  data: string;
}

/** Every record of a channel's log, read straight from JetStream. */
async function readLog(nc: NatsConnection, path: string[]): Promise<Rec[]> {
  const js = nc.jetstream();
  const kv = await js.views.kv("circuit_tree");
  const e = await kv.get(keyOf(path));
  assert.ok(e, "the tree has the channel");
  const stream = (JSON.parse(Buffer.from(e.value).toString()) as { stream: string }).stream;
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream);
  const out: Rec[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    out.push({ seq, t: m.header.get("C-T"), host: m.header.get("C-H"), data: Buffer.from(m.data).toString() });
  }
  return out;
}

test("two hosts of one log: the one that resumed first can append nothing once the other took over", async () => {
  const nats = await startNatsCluster(3);
  const nc = await connect({ servers: nats.nodes.map((x) => `127.0.0.1:${x.port}`) });
  try {
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    await HostedChan.createStream(jsm, "FENCE_T", 3);
    const old = await HostedChan.resume(js, jsm, "FENCE_T", 4, 3, "Xold");
    const owner = {};
    await new Promise<void>((res, rej) => old.send(owner, 1, Buffer.from("a"), "id-a", (e) => (e ? rej(e) : res())));
    const neu = await HostedChan.resume(js, jsm, "FENCE_T", 4, 3, "Xnew");
    assert.equal(neu.stat().len, 1, "the new host resumes the buffer from the log");
    const refused = await new Promise<unknown>((res) => old.send(owner, 2, Buffer.from("b"), "id-b", res));
    assert.ok(refused instanceof Moved, `the old host's send fails: ${refused}`);
    assert.ok(old.lost, "the old host knows it is fenced");
    await assert.rejects(old.close(), Moved);
    const info = await jsm.streams.info("FENCE_T");
    assert.equal(info.state.messages, 3, "h, v, h: nothing from the fenced host after the takeover");
    await new Promise<void>((res, rej) => neu.send(owner, 3, Buffer.from("c"), "id-c", (e) => (e ? rej(e) : res())));
    assert.equal(neu.stat().len, 2);
  } finally {
    await nc.close();
    await nats.stop();
  }
});

test("a SIGSTOPped host resumed after a takeover makes no change; the value its client sent is stored once", async () => {
  const sc = await startStoreCircuit(3);
  const nc = await connect({ servers: sc.nats.nodes.map((x) => `127.0.0.1:${x.port}`) });
  const [a, b] = sc.daemons as [(typeof sc.daemons)[0], (typeof sc.daemons)[0]];
  const ca = await dial(a.url);
  const cb = await dial(b.url);
  try {
    const ch = await ca.walk("/@/f").makeChan<string>(16, { replicas: 3 });
    await ch.send("v1");
    assert.equal((await ch.stat()).host, a.id, "the daemon asked first hosts the channel");
    const other = (await cb.walk("/@/f").get()) as ReplicatedChan<string>;
    a.kill("SIGSTOP");
    // A send issued while the host is paused: its bytes wait in the paused daemon's socket.
    const stale = ch.send("v2");
    stale.catch(() => {});
    await sleep(200);
    // Meanwhile the circuit moves on: the lease expires or membership declares the host dead.
    await within(15_000, other.send("v3"), "a send through another daemon after the pause");
    const newHost = (await other.stat()).host;
    assert.notEqual(newHost, a.id, "another daemon took over");
    a.kill("SIGCONT");
    await within(20_000, stale, "the send issued during the pause completes (through the new host)");
    await sleep(1500);
    const got: string[] = [];
    while ((await other.stat()).len > 0) got.push(await other.recv());
    assert.deepEqual(got.sort(), ["v1", "v2", "v3"], "every value once");
    const log = await readLog(nc, ["@", "f"]);
    const takeover = log.findIndex((r) => r.t === "h" && r.host === newHost);
    assert.ok(takeover > 0, `the new host's takeover record is in the log: ${JSON.stringify(log)}`);
    const byOld = log.slice(takeover).filter((r) => r.host === a.id);
    assert.deepEqual(byOld, [], "nothing written by the paused host after the takeover");
    assert.ok(a.stderr().includes("no longer hosting /@/f"), `the old host noticed: ${a.stderr()}`);
  } finally {
    a.kill("SIGCONT");
    await ca.close().catch(() => {});
    await cb.close().catch(() => {});
    await nc.close();
    await sc.stop();
  }
});
