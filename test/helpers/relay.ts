// A TCP relay between a client and a daemon that can cut every connection through it, for tests
// of what a connection that breaks while its server lives carries over.
import { connect, createServer, type Server, type Socket } from "node:net";

/** A TCP relay to 127.0.0.1:`port`; cut() destroys every connection through it so far. */
export async function cuttingRelay(port: number): Promise<{ url: string; cut(): void; close(): void }> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((down) => {
    const up = connect(port, "127.0.0.1");
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    for (const s of pair) {
      s.on("error", () => {});
      s.on("close", () => {
        down.destroy();
        up.destroy();
        pairs.delete(pair);
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const cut = () => {
    for (const [a, b] of pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    pairs.clear();
  };
  return {
    url: `circuit://127.0.0.1:${(server.address() as { port: number }).port}`,
    cut,
    close: () => {
      cut();
      server.close();
    },
  };
}
