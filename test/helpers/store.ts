// A circuit with a shared store for the store tests (DESIGN §12): a 3-node JetStream cluster and
// daemons started with --store, joined into one circuit. Everything is killed when the file ends.

import { type Daemon, startDaemon } from "./daemon.ts";
import { type NatsCluster, startNatsCluster } from "./nats-cluster.ts";

export interface StoreCircuit {
  nats: NatsCluster;
  daemons: Daemon[];
  /** Starts one more daemon with the store, joined to the first. */
  add(extra?: string[]): Promise<Daemon>;
  stop(): Promise<void>;
}

export async function startStoreCircuit(count: number, extra: string[] = []): Promise<StoreCircuit> {
  const nats = await startNatsCluster(3);
  const daemons: Daemon[] = [];
  const add = async (more: string[] = []): Promise<Daemon> => {
    const join = daemons[0] ? ["--join", daemons[0].url] : [];
    // The daemon keeps trying to open the buckets for the store's startMs (15 s) while JetStream
    // elects leaders (a NATS node killed by a chaos test): wait a little longer than that.
    const d = await startDaemon(["--store", nats.url, ...join, ...extra, ...more], 20_000);
    daemons.push(d);
    return d;
  };
  try {
    for (let i = 0; i < count; i++) await add();
  } catch (err) {
    await Promise.all(daemons.map((d) => d.stop()));
    await nats.stop();
    throw err;
  }
  return {
    nats,
    daemons,
    add,
    async stop() {
      for (const d of daemons) d.kill("SIGCONT");
      await Promise.all(daemons.map((d) => d.stop()));
      await nats.stop();
    },
  };
}
