// Scenario `chan-sizes`: the sizes between the 100-byte rows and the 16 MiB ones. One producer →
// one consumer of byte values of 1 KiB, 16 KiB and 256 KiB, each value stamped with its sequence
// number and checked at the consumer (length, order, first and last bytes); circuit's channel beside
// NATS pub/sub of the same bytes, each role its own process, measured as chan-2p2c is (the producer
// runs flat out; the figure is what the consumer took between two marks: bench/marked.ts).
//
// What is in flight is bounded by bytes, not by count, so that the big sizes do not queue hundreds
// of MiB: circuit's producer keeps up to IN_FLIGHT_BYTES of sends outstanding (at most WINDOW), the
// channel holds up to BUFFER_BYTES (at most CAP values) and the consumer prefetches a quarter of
// that; the NATS publisher flushes (a round trip to the server) every FLUSH_BYTES, the bytes of
// NATS_FLUSH_EVERY 100-byte messages, the interval the 100-byte rows use.
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import { dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, startCircuitDaemon } from "./harness.ts";
import {
  InFlight,
  lostOf,
  type Marked,
  measureMarked,
  produce,
  sequenceChecker,
  WARM_MS,
  WINDOW_MS,
} from "./marked.ts";
import { dialNats, ensureNatsServer, NATS_FLUSH_EVERY, startNatsServer } from "./nats.ts";

export const SIZES = [1024, 16 * 1024, 256 * 1024];
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;
const BUFFER_BYTES = 16 * 1024 * 1024;
const FLUSH_BYTES = NATS_FLUSH_EVERY * 100;
const SUBJECT = "bench.sizes";

/** The circuit figures for values of `size` bytes. */
export function shape(size: number): { window: number; cap: number; prefetch: number; flushEvery: number } {
  const cap = Math.max(4, Math.min(CAP, Math.floor(BUFFER_BYTES / size)));
  return {
    window: Math.max(1, Math.min(WINDOW, Math.floor(IN_FLIGHT_BYTES / size))),
    cap,
    prefetch: Math.max(1, Math.min(PREFETCH, Math.floor(cap / 4))),
    flushEvery: Math.max(1, Math.floor(FLUSH_BYTES / size)),
  };
}

/** Stamps `b` as message `seq`: the number in its first four bytes, its low byte in the last. */
function stamp(b: Uint8Array, seq: number): void {
  b[0] = seq & 0xff;
  b[1] = (seq >>> 8) & 0xff;
  b[2] = (seq >>> 16) & 0xff;
  b[3] = seq >>> 24;
  b[b.length - 1] = seq & 0xff;
}

/** Value `v`'s sequence number, once it is `size` bytes stamped with it at both ends (sequenceChecker). */
function stampedSeq(v: unknown, size: number): number | string {
  if (!(v instanceof Uint8Array) || v.length !== size) {
    return `expected ${size} bytes, got ${v instanceof Uint8Array ? `${v.length} bytes` : typeof v}`;
  }
  const seq = ((v[0] as number) | ((v[1] as number) << 8) | ((v[2] as number) << 16) | ((v[3] as number) << 24)) >>> 0;
  return v[size - 1] === (seq & 0xff) ? seq : `stamped ${seq} but ending in ${v[size - 1]}`;
}

async function chanProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const size = Number(args.size);
  const { window } = shape(size);
  const client = await dialCircuit(String(args.url));
  const ch = await getChan(client, String(args.name));
  // A send's bytes must stay as they are until it completes. Once the producer has awaited send
  // seq - window (as it does right after making send seq), every send up to it is complete, so
  // with twice `window` buffers the one stamped for a send was last taken by a completed one.
  const bufs = Array.from({ length: 2 * window }, () => new Uint8Array(size));
  const sends = new InFlight(window);
  await produce(ctx, (seq) => {
    const b = bufs[seq % (2 * window)] as Uint8Array;
    stamp(b, seq);
    return sends.add(ch.send(b));
  });
  await sends.all();
}

async function chanConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const size = Number(args.size);
  const { cap, prefetch } = shape(size);
  const client = await dialCircuit(String(args.url));
  const ch = await openChan(client, String(args.name), cap);
  const c = sequenceChecker(ctx, (v) => stampedSeq(v, size));
  ctx.report("ready");
  for await (const v of ch.iterate({ prefetch })) c.arrive(v);
}

async function natsPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const size = Number(args.size);
  const { flushEvery } = shape(size);
  const nc = await dialNats(args.port);
  // nats.js keeps a reference to a published payload until it is written, which a flush (a round
  // trip to the server behind everything published before it) guarantees; so, as for circuit's
  // producer, twice `flushEvery` buffers: the one stamped for a message was last published before
  // the flush that has completed.
  const bufs = Array.from({ length: 2 * flushEvery }, () => new Uint8Array(size));
  await produce(ctx, (seq) => {
    const b = bufs[seq % (2 * flushEvery)] as Uint8Array;
    stamp(b, seq);
    nc.publish(SUBJECT, b);
    return (seq + 1) % flushEvery === 0 ? nc.flush() : undefined;
  });
}

async function natsSubscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const size = Number(args.size);
  const c = sequenceChecker(ctx, (v) => stampedSeq(v, size));
  nc.subscribe(SUBJECT, {
    callback: (err, msg) => {
      if (!err) c.arrive(msg.data);
    },
  });
  await nc.flush();
  ctx.report("ready");
}

export function sizeText(size: number): string {
  return `${size / 1024} KiB`;
}

/** A bandwidth row (bytes at the consumer per second, messages per second in the note). */
function sizeRow(id: string, label: string, size: number, r: Marked | { error: string }, note?: string): Row {
  if ("error" in r) return { id, label, kind: "bandwidth", error: r.error };
  const rate = `${Math.round(r.rate).toLocaleString("en-US")} values/s`;
  return {
    id,
    label,
    kind: "bandwidth",
    bytesPerSec: r.rate * size,
    msgsPerSec: r.rate,
    messages: r.messages,
    seconds: r.seconds,
    note: note ? `${rate}; ${note}` : rate,
  };
}

export const scenario: Scenario = {
  name: "chan-sizes",
  description: `1 producer → 1 consumer of ${SIZES.map(sizeText).join(", ")} values, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s each: circuit chan vs NATS pub/sub`,
  budgetMs: 90_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    for (const size of SIZES) {
      const k = size / 1024;
      const natsLabel = `NATS pub/sub, ${sizeText(size)} values`;
      try {
        const port = await startNatsServer(ctx.procs);
        const sub = ctx.procs.role("chan-sizes", "natsSubscriber", { port, size });
        await sub.next("ready");
        const r = await measureMarked(ctx, [sub], () => [
          ctx.procs.role("chan-sizes", "natsPublisher", { port, size }),
        ]);
        rows.push(
          sizeRow(
            `nats.size.${k}k`,
            natsLabel,
            size,
            r,
            lostOf(r) > 0 ? `${lostOf(r)} messages never arrived` : undefined,
          ),
        );
      } catch (e) {
        rows.push(sizeRow(`nats.size.${k}k`, natsLabel, size, { error: errorText(e) }));
      }
      await ctx.procs.closeAll();
      const { window, cap, prefetch } = shape(size);
      const chanLabel = `circuit chan cap ${cap}, ${sizeText(size)} values, ${window} sends in flight → iterate(${prefetch})`;
      try {
        const { url } = await startCircuitDaemon(ctx.procs);
        const name = `sizes-${k}k-${process.pid}-${Date.now().toString(36)}`;
        const consumer = ctx.procs.role("chan-sizes", "chanConsumer", { url, name, size });
        await consumer.next("ready");
        const r = await measureMarked(ctx, [consumer], () => [
          ctx.procs.role("chan-sizes", "chanProducer", { url, name, size }),
        ]);
        // A channel loses nothing: a gap is a failure here, not a note.
        if (lostOf(r) > 0) throw new Error(`${lostOf(r)} messages never arrived`);
        rows.push(sizeRow(`chan.size.${k}k`, chanLabel, size, r));
      } catch (e) {
        rows.push(sizeRow(`chan.size.${k}k`, chanLabel, size, { error: errorText(e) }));
      }
      await ctx.procs.closeAll();
    }
    return { rows };
  },
  roles: {
    chanProducer: chanProducerRole,
    chanConsumer: chanConsumerRole,
    natsPublisher: natsPublisherRole,
    natsSubscriber: natsSubscriberRole,
  },
};
