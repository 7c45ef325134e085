// Scenario `chan-throughput`: a buffered circuit channel between two processes through a daemon
// in a third. A send completes once its bytes have left the producer's process (DESIGN.md §3.1),
// so a producer that wants the link's full rate keeps several sends in flight, as a NATS
// publisher does: the main run keeps WINDOW sends outstanding and awaits the oldest. A second run
// awaits every send before the next (one send per event-loop turn), shown beside it. The consumer
// iterates with a prefetch. Compared with NATS pub/sub, measured the same way: WARM_MESSAGES
// first (fresh processes), then MESSAGES measured. A fourth run is the main one with the consumer
// taking each value in a function (Chan.consume), as the NATS subscriber takes each message.
import { performance } from "node:perf_hooks";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { Message, RoleContext, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, Phases, phaseRows, startCircuitDaemon, WARM_MESSAGES } from "./harness.ts";

const PAYLOAD_BYTES = 100;
export const CAP = 1024;
export const PREFETCH = 256;
const MESSAGES = 500_000;
const SECONDS = 10;
/**
 * The run that awaits every send: a round trip a send, some 20–35 k a second here, so its first
 * WARM_MESSAGES alone can take SECONDS; it gets this long instead.
 */
const SERIAL_SECONDS = 25;
/** Sends the producer keeps in flight in the main run. */
export const WINDOW = 256;
/**
 * The wide run: a window and a prefetch four times the main run's, on a channel of four times the
 * capacity (400 KiB of 100-byte values), still far inside what the NATS run allows itself (its
 * publisher flushes every 10,000 messages, and its subscriber takes whatever the server sends,
 * with no window at all).
 */
export const WIDE = { window: 1024, prefetch: 1024, cap: 4096 } as const;
/** The consumer's side of the main run (and of every run that gives no other). */
const MAIN_SHAPE = { prefetch: PREFETCH, cap: CAP } as const;

/**
 * One run on a fresh daemon: the consumer, then the producer keeping `window` sends in flight, each
 * a process running `scenario`'s roles (this scenario's, or ones wrapping them) with `extra` args.
 * Resolves with the consumer's "done" report.
 */
export async function throughputRun(
  ctx: ScenarioContext,
  scenario: string,
  window: number,
  extra: Record<string, unknown> = {},
  shape: { prefetch: number; cap: number } = MAIN_SHAPE,
): Promise<Message> {
  const seconds = window === 1 ? SERIAL_SECONDS : SECONDS;
  const { url } = await startCircuitDaemon(ctx.procs);
  ctx.log(`${scenario} (window ${window}): daemon at ${url}`);
  const name = `${scenario}-${process.pid}-${Date.now().toString(36)}`;
  const common = { ...extra, url, name };
  const consumer = ctx.procs.role(scenario, "consumer", {
    ...common,
    warm: WARM_MESSAGES,
    count: MESSAGES,
    prefetch: shape.prefetch,
    cap: shape.cap,
    seconds,
  });
  await consumer.next("ready");
  ctx.procs.role(scenario, "producer", { ...common, count: WARM_MESSAGES + MESSAGES, seconds: seconds + 2, window });
  return consumer.next("done");
}

async function producerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url), args.key);
  // `server`: the channel is hosted by another server than the one dialled (bench/chan-cross.ts).
  const ch = await getChan(client, String(args.name), args.server === undefined ? undefined : String(args.server));
  const count = Number(args.count);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  // One payload for every send, as the NATS publisher does: a send takes the bytes when called.
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const window = Number(args.window);
  const ring: (Promise<void> | undefined)[] = new Array(window);
  let sent = 0;
  while (sent < count) {
    const i = sent % window;
    const older = ring[i];
    ring[i] = ch.send(payload);
    if (older) await older;
    sent++;
    if ((sent & 1023) === 0 && performance.now() > stopAt) break;
  }
  await Promise.all(ring);
  ctx.report("sent", { sent });
}

async function consumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url), args.key);
  const ch = await openChan(client, String(args.name), Number(args.cap ?? CAP));
  const phases = new Phases(Number(args.warm), Number(args.count), Number(args.seconds) * 1000, ctx);
  ctx.report("ready");
  if (args.consume) {
    // The consume() run: each value handed to a function, as NATS's subscriber takes each message
    // in its callback; stopped by an abort once the count is reached.
    const stop = new AbortController();
    const run = ch.consume(
      (v) => {
        if (phases.finished) return stop.abort();
        if (phases.received === 0) checkPayload(v, PAYLOAD_BYTES);
        if (phases.arrive()) stop.abort();
      },
      { prefetch: Number(args.prefetch), signal: stop.signal },
    );
    await run.catch((e: unknown) => {
      if (!stop.signal.aborted) throw e;
    });
  } else {
    for await (const v of ch.iterate({ prefetch: Number(args.prefetch) })) {
      if (phases.finished) break;
      if (phases.received === 0) checkPayload(v, PAYLOAD_BYTES);
      if (phases.arrive()) break;
    }
  }
  phases.finish("channel closed");
}

export const scenario: Scenario = {
  name: "chan-throughput",
  description: `circuit chan cap ${CAP}, ${WARM_MESSAGES} + ${MESSAGES} × ${PAYLOAD_BYTES} B sends, iterate prefetch ${PREFETCH}, ≤ ${SECONDS} s; the same into consume(); the same with ${WIDE.window} in flight, prefetch ${WIDE.prefetch}, cap ${WIDE.cap}; awaiting each send: ${SERIAL_SECONDS} s`,
  budgetMs: 90_000,
  async run(ctx: ScenarioContext) {
    const main = {
      id: "chan.throughput",
      label: `circuit chan cap ${CAP}, ${WINDOW} sends in flight → iterate(${PREFETCH})`,
    };
    const cold = { id: "chan.throughput.cold", label: `circuit chan, first ${WARM_MESSAGES / 1000}k messages` };
    const serial = { id: "chan.throughput.serial", label: "circuit chan, await each send before the next" };
    const serialCold = { id: "chan.throughput.serial.cold", label: "circuit chan, await each send, first 200k" };
    const wide = {
      id: "chan.throughput.wide",
      label: `circuit chan cap ${WIDE.cap}, ${WIDE.window} sends in flight → iterate(${WIDE.prefetch})`,
    };
    const wideCold = {
      id: "chan.throughput.wide.cold",
      label: `circuit chan, ${WIDE.window} in flight → iterate(${WIDE.prefetch}), first ${WARM_MESSAGES / 1000}k`,
    };
    const viaConsume = {
      id: "chan.throughput.consume",
      label: `circuit chan cap ${CAP}, ${WINDOW} sends in flight → consume(prefetch ${PREFETCH})`,
    };
    const viaConsumeCold = {
      id: "chan.throughput.consume.cold",
      label: `circuit chan → consume(prefetch ${PREFETCH}), first ${WARM_MESSAGES / 1000}k`,
    };
    const rows = [];
    for (const [m, c, window, shape, extra] of [
      [main, cold, WINDOW, MAIN_SHAPE, {}],
      [viaConsume, viaConsumeCold, WINDOW, MAIN_SHAPE, { consume: true }],
      [wide, wideCold, WIDE.window, WIDE, {}],
      [serial, serialCold, 1, MAIN_SHAPE, {}],
    ] as const) {
      try {
        rows.push(...phaseRows(m, c, MESSAGES, await throughputRun(ctx, "chan-throughput", window, extra, shape)));
      } catch (e) {
        rows.push(...phaseRows(m, c, MESSAGES, { error: errorText(e) }));
      }
    }
    return { rows };
  },
  roles: { producer: producerRole, consumer: consumerRole },
};
