// Scenario `chan-fanout`: one producer → many competing consumers, the shape of a work queue with
// a pool of workers. One producer process sends 100-byte values flat out into one buffered circuit
// channel that FANOUT consumer processes iterate, each value taken once, beside a NATS queue group
// of FANOUT subscribers and one publisher; chan-2p2c's roles and measurement (bench/marked.ts),
// with other counts.

import { manyToManyScenario } from "./chan-2p2c.ts";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";

export const FANOUT = 8;

export const scenario = manyToManyScenario(
  "chan-fanout",
  `1 producer → ${FANOUT} competing consumers`,
  "NATS queue group",
  1,
  FANOUT,
  { id: "nats.fanout", label: `NATS queue group, 1 publisher → ${FANOUT} subscribers` },
  {
    id: "chan.fanout",
    label: `circuit chan cap ${CAP}, 1 producer (${WINDOW} in flight) → ${FANOUT} iterate(${PREFETCH})`,
  },
);
