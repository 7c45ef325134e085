// Scenario `chan-fanout`: one producer → many competing consumers, the shape of a work queue with
// a pool of workers. One producer process sends 100-byte values flat out into one buffered circuit
// channel that FANOUT consumer processes iterate, each value taken once, beside a NATS queue group
// of FANOUT subscribers and one publisher; chan-2p2c's roles and measurement (bench/marked.ts),
// with other counts.

import { manyToMany, PAYLOAD_BYTES, scenario as twoByTwo } from "./chan-2p2c.ts";
import { CAP, PREFETCH, WINDOW } from "./chan-throughput.ts";
import type { Scenario, ScenarioContext } from "./harness.ts";
import { WARM_MS, WINDOW_MS } from "./marked.ts";
import { ensureNatsServer } from "./nats.ts";

export const FANOUT = 8;

export const scenario: Scenario = {
  name: "chan-fanout",
  description: `1 producer → ${FANOUT} competing consumers, ${PAYLOAD_BYTES} B, ${WINDOW_MS / 1000} s measured after ${WARM_MS / 1000} s: circuit chan cap ${CAP} vs NATS queue group`,
  budgetMs: 60_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const rows = await manyToMany(
      ctx,
      "chan-fanout",
      1,
      FANOUT,
      { id: "nats.fanout", label: `NATS queue group, 1 publisher → ${FANOUT} subscribers` },
      {
        id: "chan.fanout",
        label: `circuit chan cap ${CAP}, 1 producer (${WINDOW} in flight) → ${FANOUT} iterate(${PREFETCH})`,
      },
    );
    return { rows };
  },
  roles: twoByTwo.roles,
};
