// Scenario `chan-large`: 16 MiB values from one process to another through a daemon in a third,
// as whole values (`send` of a Uint8Array) and as byte-stream messages (`sendStream`), beside the
// ceiling for moving the same bytes through a middle Node process: a relay that pipes a TCP
// connection to another with no framing at all. Each figure is bytes per second at the consumer,
// from the first byte to the last, over VALUES values after WARM_VALUES unmeasured ones.
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, startCircuitDaemon } from "./harness.ts";

const VALUE_BYTES = 16 * 1024 * 1024;
/** The largest byte value a send takes: 16 MiB encoded, MessagePack's 5-byte bin header included. */
const SEND_BYTES = VALUE_BYTES - 5;
const WARM_VALUES = 4;
const VALUES = 24;
const CHUNK_BYTES = 1024 * 1024;

interface StreamChan {
  send(value: unknown): Promise<void>;
  sendStream(): NodeJS.WritableStream & { sent: Promise<void> };
  recv(): Promise<unknown>;
}

/** Counts bytes until `total` and reports the rate over the bytes after `warmBytes`. */
class ByteMeter {
  private n = 0;
  private t1 = 0;
  constructor(
    private readonly warmBytes: number,
    private readonly total: number,
  ) {}
  /** True once every byte has come. */
  add(bytes: number): boolean {
    const before = this.n;
    this.n += bytes;
    if (before < this.warmBytes && this.n >= this.warmBytes) this.t1 = performance.now();
    return this.n >= this.total;
  }
  report(ctx: RoleContext): void {
    const seconds = (performance.now() - this.t1) / 1000;
    const measured = this.n - this.warmBytes;
    ctx.report("done", { bytes: measured, seconds, rate: measured / seconds });
  }
}

function payload(): Buffer {
  const b = Buffer.allocUnsafe(VALUE_BYTES);
  for (let i = 0; i < b.length; i += 4096) b[i] = i & 0xff;
  return b;
}

// --- the raw pipe: producer → relay → consumer, bytes only

async function relayRole(_args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    // The consumer connects first, then the producer; bytes flow producer → consumer with
    // backpressure (pipe pauses the producer's socket while the consumer's is full).
    if (sockets.length === 2) (sockets[1] as Socket).pipe(sockets[0] as Socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  ctx.report("ready", { port: (server.address() as { port: number }).port });
  await new Promise(() => {});
}

async function pipeConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const s = connect(Number(args.port), "127.0.0.1");
  await once(s, "connect");
  ctx.report("ready");
  const meter = new ByteMeter(WARM_VALUES * VALUE_BYTES, (WARM_VALUES + VALUES) * VALUE_BYTES);
  for await (const chunk of s) {
    if (meter.add((chunk as Buffer).length)) break;
  }
  meter.report(ctx);
}

async function pipeProducerRole(args: Record<string, unknown>, _ctx: RoleContext): Promise<void> {
  const s = connect(Number(args.port), "127.0.0.1");
  await once(s, "connect");
  const value = payload();
  for (let i = 0; i < WARM_VALUES + VALUES; i++) {
    if (!s.write(value)) await once(s, "drain");
  }
  await new Promise(() => {});
}

// --- circuit: whole values and stream messages

async function chanConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = (await openChan(client, String(args.name), 1)) as unknown as StreamChan;
  ctx.report("ready");
  const size = args.stream ? VALUE_BYTES : SEND_BYTES;
  const meter = new ByteMeter(WARM_VALUES * size, (WARM_VALUES + VALUES) * size);
  for (;;) {
    const v = await ch.recv();
    if (v instanceof Uint8Array) {
      if (v.length !== SEND_BYTES) throw new Error(`a value of ${v.length} bytes`);
      if (meter.add(v.length)) break;
    } else {
      let n = 0;
      for await (const chunk of v as Readable) {
        n += (chunk as Buffer).length;
        if (meter.add((chunk as Buffer).length)) break;
      }
      if (n !== VALUE_BYTES) throw new Error(`a stream message of ${n} bytes`);
      if (meter.add(0)) break;
    }
  }
  meter.report(ctx);
}

async function chanProducerRole(args: Record<string, unknown>, _ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = (await getChan(client, String(args.name))) as unknown as StreamChan;
  const value = payload();
  const count = WARM_VALUES + VALUES;
  if (args.stream) {
    for (let i = 0; i < count; i++) {
      const w = ch.sendStream();
      for (let off = 0; off < VALUE_BYTES; off += CHUNK_BYTES) {
        if (!w.write(value.subarray(off, off + CHUNK_BYTES))) await once(w as never, "drain");
      }
      w.end();
      await w.sent;
    }
  } else {
    // Two sends in flight, as the pipe producer keeps the socket's buffer full.
    let prev: Promise<void> | undefined;
    const whole = value.subarray(0, SEND_BYTES);
    for (let i = 0; i < count; i++) {
      const p = ch.send(whole);
      if (prev) await prev;
      prev = p;
    }
    await prev;
  }
  await new Promise(() => {});
}

function bandwidthRow(id: string, label: string, done: Record<string, unknown> | { error: string }): Row {
  if ("error" in done) return { id, label, kind: "bandwidth", error: String(done.error) };
  return {
    id,
    label,
    kind: "bandwidth",
    bytesPerSec: Number(done.rate),
    messages: VALUES,
    seconds: Number(done.seconds),
  };
}

export const scenario: Scenario = {
  name: "chan-large",
  description: `${VALUE_BYTES / 1024 / 1024} MiB values, ${WARM_VALUES} + ${VALUES} per run: raw pipe relay, chan send, chan sendStream`,
  budgetMs: 120_000,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    const pipe = { id: "pipe.large", label: "raw TCP byte pipe through a Node relay" };
    try {
      const relay = ctx.procs.role("chan-large", "relay");
      const { port } = await relay.next("ready");
      const consumer = ctx.procs.role("chan-large", "pipeConsumer", { port });
      await consumer.next("ready");
      const producer = ctx.procs.role("chan-large", "pipeProducer", { port });
      rows.push(bandwidthRow(pipe.id, pipe.label, await Promise.race([consumer.next("done"), producer.next("never")])));
    } catch (e) {
      rows.push(bandwidthRow(pipe.id, pipe.label, { error: errorText(e) }));
    }
    for (const [id, label, stream] of [
      ["chan.large", "circuit chan cap 1, send(Uint8Array, 16 MiB − 5 B), 2 in flight", false],
      ["chan.large.stream", "circuit chan cap 1, sendStream of 16 MiB in 1 MiB writes", true],
    ] as const) {
      try {
        const { url } = await startCircuitDaemon(ctx.procs);
        const name = `large-${process.pid}-${Date.now().toString(36)}`;
        const consumer = ctx.procs.role("chan-large", "chanConsumer", { url, name, stream });
        await consumer.next("ready");
        const producer = ctx.procs.role("chan-large", "chanProducer", { url, name, stream });
        // A producer that fails (rather than the consumer waiting out its deadline) says why.
        const done = await Promise.race([consumer.next("done"), producer.next("never")]);
        rows.push(bandwidthRow(id, label, done));
      } catch (e) {
        rows.push(bandwidthRow(id, label, { error: errorText(e) }));
      }
    }
    return { rows };
  },
  roles: {
    relay: relayRole,
    pipeConsumer: pipeConsumerRole,
    pipeProducer: pipeProducerRole,
    chanConsumer: chanConsumerRole,
    chanProducer: chanProducerRole,
  },
};
