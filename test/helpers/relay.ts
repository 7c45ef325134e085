// A TCP relay between a client and a daemon that can cut every connection through it, for tests
// of what a connection that breaks while its server lives carries over.
import { connect, createServer, type Server, type Socket } from "node:net";
import { FrameDecoder } from "../../src/wire/frame.ts";

export interface CuttingRelay {
  url: string;
  /** Destroys every connection through the relay so far (what they had not forwarded is lost). */
  cut(): void;
  /** Stops forwarding from clients: their bytes wait in the relay, and new connections wait to be joined. */
  pause(): void;
  /** Forwards again and joins the connections that waited. */
  resume(): void;
  /** From now on every connection joined is cut `ms` after it was joined (undefined: no more). */
  flap(ms: number | undefined): void;
  /** How many client connections have been joined to the daemon so far. */
  joined(): number;
  close(): void;
}

/** A TCP relay to 127.0.0.1:`port`. */
export async function cuttingRelay(port: number): Promise<CuttingRelay> {
  const pairs = new Set<[Socket, Socket]>();
  let waiting: Socket[] | undefined;
  let flapMs: number | undefined;
  let joined = 0;
  /** Resets both sides of one connection (what they had not forwarded is lost). */
  const sever = (pair: [Socket, Socket]) => {
    if (!pairs.delete(pair)) return;
    pair[0].resetAndDestroy();
    pair[1].resetAndDestroy();
  };
  const join = (down: Socket) => {
    const up = connect(port, "127.0.0.1");
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    joined++;
    if (flapMs !== undefined) setTimeout(() => sever(pair), flapMs).unref();
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
  };
  const server: Server = createServer((down) => {
    if (!waiting) return join(down);
    down.on("error", () => {});
    down.pause();
    waiting.push(down);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const cut = () => {
    for (const pair of pairs) sever(pair);
  };
  return {
    url: `circuit://127.0.0.1:${(server.address() as { port: number }).port}`,
    cut,
    pause: () => {
      waiting ??= [];
      for (const [down, up] of pairs) {
        down.unpipe(up);
        down.pause();
      }
    },
    resume: () => {
      const joining = waiting ?? [];
      waiting = undefined;
      for (const [down, up] of pairs) down.pipe(up);
      for (const down of joining) if (!down.destroyed) join(down);
    },
    flap: (ms) => {
      flapMs = ms;
    },
    joined: () => joined,
    close: () => {
      flapMs = undefined;
      cut();
      for (const down of waiting ?? []) down.destroy();
      waiting = undefined;
      server.close();
    },
  };
}

/**
 * A TCP relay to 127.0.0.1:`port`: each client connection (`down`) gets one to the daemon (`up`),
 * and `wire` says how bytes pass between them; either side closing closes both.
 */
async function pairRelay(
  port: number,
  wire: (down: Socket, up: Socket) => void,
): Promise<{ url: string; close(): void }> {
  const socks = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = connect(port, "127.0.0.1");
    wire(down, up);
    for (const s of [down, up]) {
      socks.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        down.destroy();
        up.destroy();
        socks.delete(s);
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `circuit://127.0.0.1:${(server.address() as { port: number }).port}`,
    close() {
      for (const s of socks) s.destroy();
      server.close();
    },
  };
}

/**
 * A TCP relay to 127.0.0.1:`port` that passes the daemon's bytes on to the client at about
 * `bytesPerSecond` (a slow link); the client's bytes pass at once.
 */
export function slowRelay(port: number, bytesPerSecond: number): Promise<{ url: string; close(): void }> {
  return pairRelay(port, (down, up) => {
    down.pipe(up);
    // A chunk from the daemon, then a pause as long as the link would take to carry it.
    up.on("data", (chunk: Buffer) => {
      down.write(chunk);
      up.pause();
      setTimeout(() => up.resume(), (chunk.length / bytesPerSecond) * 1000);
    });
  });
}

/** A TCP relay to 127.0.0.1:`port` that counts the frames clients send through it, by type (`sent`). */
export async function countingRelay(port: number): Promise<{ url: string; sent: Map<number, number>; close(): void }> {
  const sent = new Map<number, number>();
  const relay = await pairRelay(port, (down, up) => {
    const dec = new FrameDecoder(64 * 1024 * 1024, (type) => sent.set(type, (sent.get(type) ?? 0) + 1));
    down.on("data", (b: Buffer) => {
      dec.push(b);
      up.write(b);
    });
    up.pipe(down);
  });
  return { ...relay, sent };
}
