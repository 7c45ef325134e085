// What a daemon needs to supervise services — a client of its own circuit — built on `dial`. The
// daemon layer cannot import the client, so whoever starts a daemon passes this in
// (`Daemon.start({ connect: serviceConnector({ key }) })`; the CLI's `start` does).

import { NotFound } from "../errors.js";
import type { ChanStat } from "../wire/shapes.js";
import { type Client, dial } from "./client.js";
import type { Nameserver } from "./nameserver.js";
import type { Proc, ProcCommand, ProcStat } from "./proc.js";

export interface ServiceConnection {
  makeProc(path: string, cmd: ProcCommand, tiedTo?: string): Promise<Pick<Proc, "wait" | "peek" | "scrub">>;
  replicasAt(dir: string): Promise<{ n: number; proc: Pick<Proc, "wait" | "peek" | "scrub"> }[]>;
  chanLen(path: string): Promise<number>;
  dnsSet(nsPath: string, rr: string): Promise<void>;
  dnsUnset(nsPath: string, name: string): Promise<void>;
  close(): Promise<void>;
}

function wrap(p: Proc): Pick<Proc, "wait" | "peek" | "scrub"> {
  return {
    wait: () => p.wait() as Promise<ProcStat>,
    peek: () => p.peek() as Promise<ProcStat>,
    scrub: () => p.scrub(),
  };
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
      makeProc: async (path, cmd, tiedTo) => wrap(await c.walk(path).makeProc(cmd, tiedTo ? { tiedTo } : {})),
      replicasAt: async (dir) => {
        let list: { path: string; kind?: string }[];
        try {
          list = await c.walk(dir).list();
        } catch (err) {
          if (err instanceof NotFound) return [];
          throw err;
        }
        const out: { n: number; proc: ReturnType<typeof wrap> }[] = [];
        for (const e of list) {
          const m = /\/r([1-9]\d{0,8})$/.exec(e.path);
          if (!m || e.kind !== "proc") continue;
          // One that has exited (or gone) meanwhile is no replica to adopt.
          const p = await c
            .walk(e.path)
            .get()
            .catch(() => null);
          if (p?.kind !== "proc") continue;
          const st = await p.peek().catch(() => null);
          if (st?.phase === "running") out.push({ n: Number(m[1]), proc: wrap(p) });
        }
        return out;
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
