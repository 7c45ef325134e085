// For the examples: a circuit of N daemons inside this process on free loopback ports, for when no
// circuit URL is given. Real programs dial a circuit that is already running.
import { setTimeout as sleep } from "node:timers/promises";
import { Daemon, dial, serviceConnector } from "circuit-ts";

export interface LocalCircuit {
  url: string;
  daemons: Daemon[];
  stop(): Promise<void>;
}

export async function localCircuit(n: number): Promise<LocalCircuit> {
  // connect: how each daemon reaches the circuit for the services it supervises.
  const quiet = { addr: "127.0.0.1:0", log: () => {}, connect: serviceConnector() };
  const first = await Daemon.start(quiet);
  const daemons = [first];
  for (let i = 1; i < n; i++) daemons.push(await Daemon.start({ ...quiet, join: first.url }));
  const c = await dial(first.url);
  try {
    const deadline = Date.now() + 10_000;
    while ((await c.servers()).length < n) {
      if (Date.now() > deadline) throw new Error(`the ${n} local daemons did not find each other`);
      await sleep(50);
    }
  } finally {
    await c.close();
  }
  return { url: first.url, daemons, stop: async () => void (await Promise.all(daemons.map((d) => d.stop()))) };
}
