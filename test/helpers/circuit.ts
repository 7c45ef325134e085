// A circuit of several real daemons for tests.
import { dial } from "../../src/index.ts";
import { type Daemon, startDaemon } from "./daemon.ts";
import { until } from "./wait.ts";

/**
 * Starts n daemons on 127.0.0.1 port 0, each joining the one before (with `extra` added to every
 * one's arguments, or `extra(i)` to the i-th one's), and resolves once a client of each sees all n
 * servers.
 */
export async function circuit(n: number, extra: string[] | ((i: number) => string[]) = []): Promise<Daemon[]> {
  const args = typeof extra === "function" ? extra : () => extra;
  const ds = [await startDaemon(args(0))];
  for (let i = 1; i < n; i++) ds.push(await startDaemon(["--join", (ds[i - 1] as Daemon).url, ...args(i)]));
  const clients = await Promise.all(ds.map((d) => dial(d.url)));
  try {
    const want = ds
      .map((d) => d.id)
      .sort()
      .join();
    await until("every server sees every server", 10_000, async () => {
      for (const c of clients) {
        const seen = (await c.servers()).map((s) => s.id).sort();
        if (seen.join() !== want) return false;
      }
      return true;
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  return ds;
}
