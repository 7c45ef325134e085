// Scenario `chan-many`: traffic spread over many channels at once, the shape of a service with a
// queue per customer or per job type. CHANNELS buffered circuit channels on one daemon; PRODUCERS
// producer processes, each sending 100-byte values round-robin over its share of the channels
// (WINDOW sends in flight in all, so a few per channel: every write it makes carries values for
// many channels); CONSUMERS consumer processes, each iterating its share (one iterate per channel).
// Every channel is fed by one producer and drained by one consumer, and every producer feeds every
// consumer. Beside it NATS pub/sub over as many subjects, the publishers and subscribers sharing
// them out the same way. Run and measured as chan-2p2c is (its manyToMany, bench/marked.ts).
import { manyToMany, PAYLOAD_BYTES } from "./chan-2p2c.ts";
import { WINDOW } from "./chan-throughput.ts";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Scenario, ScenarioContext } from "./harness.ts";
import { counter, InFlight, produce, WARM_MS, WINDOW_MS } from "./marked.ts";
import { dialNats, ensureNatsServer, NATS_FLUSH_EVERY } from "./nats.ts";

export const CHANNELS = 64;
const PRODUCERS = 2;
const CONSUMERS = 2;
/** Each channel's capacity and each iterate's prefetch: a few windows' worth of one channel's share. */
const CAP = 256;
const PREFETCH = 64;

const indices = () => Array.from({ length: CHANNELS }, (_, i) => i);
/** The channels (by index) producer `p` sends on. */
const producerShare = (p: number) => indices().filter((i) => i % PRODUCERS === p);
/** The channels (by index) consumer `c` takes from: a block of consecutive ones, fed by every producer. */
const consumerShare = (c: number) => indices().filter((i) => Math.floor((i * CONSUMERS) / CHANNELS) === c);
const subject = (i: number) => `bench.many.${i}`;

async function chanProducerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const chans = await Promise.all(producerShare(Number(args.index)).map((i) => getChan(client, `${args.name}-${i}`)));
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const sends = new InFlight(WINDOW);
  await produce(ctx, (seq) => sends.add((chans[seq % chans.length] as (typeof chans)[number]).send(payload)));
}

async function chanConsumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const chans = await Promise.all(
    consumerShare(Number(args.index)).map((i) => openChan(client, `${args.name}-${i}`, CAP)),
  );
  const c = counter(ctx);
  let checked = false;
  for (const ch of chans) {
    void (async () => {
      for await (const v of ch.iterate({ prefetch: PREFETCH })) {
        if (!checked) checkPayload(v, PAYLOAD_BYTES);
        checked = true;
        c.arrive();
      }
    })();
  }
  ctx.report("ready");
}

async function natsPublisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const subjects = producerShare(Number(args.index)).map(subject);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  await produce(ctx, (seq) => {
    nc.publish(subjects[seq % subjects.length] as string, payload);
    return (seq + 1) % NATS_FLUSH_EVERY === 0 ? nc.flush() : undefined;
  });
}

async function natsSubscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port);
  const c = counter(ctx);
  for (const i of consumerShare(Number(args.index))) {
    nc.subscribe(subject(i), {
      callback: (err) => {
        if (!err) c.arrive();
      },
    });
  }
  await nc.flush();
  ctx.report("ready");
}

const shape = `${CHANNELS} channels, ${PRODUCERS} producers → ${CONSUMERS} consumers`;

export const scenario: Scenario = {
  name: "chan-many",
  description: `${shape} (each producer round-robin over its ${CHANNELS / PRODUCERS}, each consumer iterating its ${CHANNELS / CONSUMERS}), ${PAYLOAD_BYTES} B, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chans cap ${CAP} vs NATS pub/sub over ${CHANNELS} subjects`,
  budgetMs: 60_000,
  prepare: ensureNatsServer,
  run: async (ctx: ScenarioContext) => ({
    rows: await manyToMany(
      ctx,
      "chan-many",
      PRODUCERS,
      CONSUMERS,
      {
        id: "nats.many",
        label: `NATS pub/sub, ${CHANNELS} subjects, ${PRODUCERS} publishers → ${CONSUMERS} subscribers`,
      },
      {
        id: "chan.many",
        label: `circuit, ${CHANNELS} chans cap ${CAP}, ${PRODUCERS} producers (${WINDOW} in flight each) → ${CONSUMERS} consumers (iterate(${PREFETCH}) each chan)`,
      },
    ),
  }),
  roles: {
    chanProducer: chanProducerRole,
    chanConsumer: chanConsumerRole,
    natsPublisher: natsPublisherRole,
    natsSubscriber: natsSubscriberRole,
  },
};
