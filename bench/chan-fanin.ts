// Scenario `chan-fanin`: many producers → one consumer, the shape of workers reporting to one
// collector. FANIN producer processes send 100-byte values flat out into one buffered circuit
// channel that one consumer iterates, beside NATS pub/sub with FANIN publishers and one
// subscriber; chan-2p2c's roles and measurement (bench/marked.ts), with other counts.

import { manyToManyScenario } from "./chan-2p2c.ts";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";

export const FANIN = 8;

export const scenario = manyToManyScenario(
  "chan-fanin",
  `${FANIN} producers → 1 consumer`,
  "NATS pub/sub",
  FANIN,
  1,
  { id: "nats.fanin", label: `NATS pub/sub, ${FANIN} publishers → 1 subscriber` },
  {
    id: "chan.fanin",
    label: `circuit chan cap ${CAP}, ${FANIN} producers (${WINDOW} in flight each) → 1 iterate(${PREFETCH})`,
  },
);
