// What a daemon needs to supervise services — a client of its own circuit — built on `dial`. The
// daemon layer cannot import the client, so whoever starts a daemon passes this in
// (`Daemon.start({ connect: serviceConnector({ key }) })`; the CLI's `start` does).

import { NotFound } from "../errors.js";
import type { ChanStat } from "../wire/shapes.js";
import { type Client, dial } from "./client.js";
import type { Nameserver } from "./nameserver.js";
import type { Proc, ProcCommand, ProcStat } from "./proc.js";

export interface ServiceConnection {
  makeProc(path: string, cmd: ProcCommand, tiedTo: string): Promise<Pick<Proc, "wait" | "peek" | "scrub">>;
  chanLen(path: string): Promise<number>;
  dnsSet(nsPath: string, rr: string): Promise<void>;
  dnsUnset(nsPath: string, name: string): Promise<void>;
  close(): Promise<void>;
}

export function serviceConnector(
  opts: { key?: string | Uint8Array } = {},
): (url: string) => Promise<ServiceConnection> {
  return async (url) => {
    const c: Client = await dial(url, opts.key === undefined ? {} : { key: opts.key });
    const nameserver = async (path: string): Promise<Nameserver> => {
      const ns = await c.walk(path).get();
      if (ns?.kind !== "dns") throw new NotFound(`${path} holds no nameserver`);
      return ns;
    };
    return {
      makeProc: async (path, cmd, tiedTo) => {
        const p = await c.walk(path).makeProc(cmd, { tiedTo });
        return {
          wait: () => p.wait() as Promise<ProcStat>,
          peek: () => p.peek() as Promise<ProcStat>,
          scrub: () => p.scrub(),
        };
      },
      chanLen: async (path) => {
        // A peek, not a handle: reading the backlog every second must not hold anything open.
        const st = (await c.walk(path).peek()) as Partial<ChanStat> | null;
        if (typeof st?.len !== "number" || typeof st.cap !== "number") throw new Error(`${path} holds no channel`);
        return st.len;
      },
      dnsSet: async (nsPath, rr) => {
        await (await nameserver(nsPath)).set(rr);
      },
      dnsUnset: async (nsPath, name) => {
        try {
          await (await nameserver(nsPath)).unset(name);
        } catch (err) {
          if (!(err instanceof NotFound)) throw err;
        }
      },
      close: () => c.close(),
    };
  };
}
