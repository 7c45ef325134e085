// Scenario `chan-fanin`: many producers → one consumer, the shape of workers reporting to one
// collector. FANIN producer processes send 100-byte values flat out into one buffered circuit
// channel that one consumer iterates, beside NATS pub/sub with FANIN publishers and one
// subscriber; chan-2p2c's roles and measurement (bench/marked.ts), with other counts.

import { manyToMany, PAYLOAD_BYTES, scenario as twoByTwo } from "./chan-2p2c.ts";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import type { Scenario, ScenarioContext } from "./harness.ts";
import { WARM_MS, WINDOW_MS } from "./marked.ts";
import { ensureNatsServer } from "./nats.ts";

export const FANIN = 8;

export const scenario: Scenario = {
  name: "chan-fanin",
  description: `${FANIN} producers → 1 consumer, ${PAYLOAD_BYTES} B, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chan cap ${CAP} vs NATS pub/sub`,
  budgetMs: 60_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const rows = await manyToMany(
      ctx,
      "chan-fanin",
      FANIN,
      1,
      { id: "nats.fanin", label: `NATS pub/sub, ${FANIN} publishers → 1 subscriber` },
      {
        id: "chan.fanin",
        label: `circuit chan cap ${CAP}, ${FANIN} producers (${WINDOW} in flight each) → 1 iterate(${PREFETCH})`,
      },
    );
    return { rows };
  },
  roles: twoByTwo.roles,
};
