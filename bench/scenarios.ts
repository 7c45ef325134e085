// The scenarios `npm run bench` knows, in the order it runs them. Loaded lazily so that a scenario
// whose dependencies are missing (e.g. the circuit library mid-rewrite) cannot break the others.
import type { Scenario } from "./harness.ts";

export const scenarioModules: Record<string, () => Promise<Scenario>> = {
  relay: async () => (await import("./relay.ts")).scenario,
  nats: async () => (await import("./nats.ts")).scenario,
  "chan-throughput": async () => (await import("./chan-throughput.ts")).scenario,
  "chan-cold": async () => (await import("./chan-cold.ts")).scenario,
  "chan-cross": async () => (await import("./chan-cross.ts")).scenario,
  "chan-far": async () => (await import("./chan-far.ts")).scenario,
  "chan-2p2c": async () => (await import("./chan-2p2c.ts")).scenario,
  "chan-fanin": async () => (await import("./chan-fanin.ts")).scenario,
  "chan-fanout": async () => (await import("./chan-fanout.ts")).scenario,
  "chan-many": async () => (await import("./chan-many.ts")).scenario,
  "chan-objects": async () => (await import("./chan-objects.ts")).scenario,
  "chan-sizes": async () => (await import("./chan-sizes.ts")).scenario,
  "chan-large": async () => (await import("./chan-large.ts")).scenario,
  "chan-obs": async () => (await import("./chan-obs.ts")).scenario,
  "chan-pingpong": async () => (await import("./chan-pingpong.ts")).scenario,
  "pingpong-load": async () => (await import("./pingpong-load.ts")).scenario,
  scale: async () => (await import("./scale.ts")).scenario,
  select: async () => (await import("./select.ts")).scenario,
  "chan-replicated": async () => (await import("./chan-replicated.ts")).scenario,
  "select-replicated": async () => (await import("./select-replicated.ts")).scenario,
  "chan-durable": async () => (await import("./chan-durable.ts")).scenario,
  fuzz: async () => (await import("./fuzz.ts")).scenario,
};
