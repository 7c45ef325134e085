// Requests about circuit-wide anchors (/@/…, DESIGN §12), from a client session. The element may be
// hosted here, or elsewhere: then the answer is `{ moved: XID }` and the client asks that server.

import { ProtocolError, StoreUnavailable, Unsupported, WrongKind } from "../errors.js";
import { badName } from "../wire/path.js";
import { MAX_CAP } from "../wire/protocol.js";
import type { Owner } from "./replicated-chan.js";
import type { StoreHost } from "./store-host.js";
import type { StoreServices } from "./store-svc.js";

export const NO_STORE = "/@ needs a shared store: this circuit's daemons were started without --store";

/** True for a request path under /@. */
export function isStorePath(p: unknown): boolean {
  return Array.isArray(p) && p[0] === "@";
}

function names(p: unknown, depth: number): string[] {
  if (!Array.isArray(p) || !p.every((x) => typeof x === "string"))
    throw new ProtocolError("path must be an array of names");
  if (p.length > depth) throw new TypeError(`path deeper than ${depth} names`);
  for (const n of p as string[]) {
    const why = badName(n);
    if (why) throw new TypeError(why);
  }
  return p as string[];
}

function bytes(v: unknown): Buffer {
  if (!(v instanceof Uint8Array)) throw new ProtocolError("a value is bytes");
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A select's id, if the request names one (a whole number below 2^53). */
function selector(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new ProtocolError("sel is a whole number");
  return v;
}

function int(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new ProtocolError("expected a whole number");
  return v;
}

function checkCap(cap: unknown): number {
  if (typeof cap !== "number" || !Number.isInteger(cap) || cap < 0 || cap > MAX_CAP)
    throw new RangeError(`channel capacity must be an integer from 0 to ${MAX_CAP}`);
  return cap;
}

function checkReplicas(r: unknown): 1 | 3 | 5 {
  const replicas = r ?? 1;
  if (replicas !== 1 && replicas !== 3 && replicas !== 5) throw new RangeError("replicas is 1, 3 or 5");
  return replicas;
}

export interface StoreSession {
  owner: Owner;
  maxValue: number;
  depth: number;
  /** Services under /@ (store-svc.ts). */
  svcs?: StoreServices;
}

/** A service's requests: {op: "mksvc", path, spec}, {op: "svc", path, do: "peek" | "scale" | "scrub", n?}. */
async function svcRequest(
  svcs: StoreServices | undefined,
  path: string[],
  r: Record<string, unknown>,
): Promise<unknown> {
  if (!svcs) throw new Unsupported("this daemon was started without a client connection for services");
  if (r.op === "mksvc") {
    await svcs.make(path, r.spec);
    return { kind: "svc" };
  }
  if (r.do !== "peek" && r.do !== "scale" && r.do !== "scrub")
    throw new ProtocolError(`unknown service operation ${JSON.stringify(r.do)}`);
  const n = r.n;
  if (r.do === "scale" && (typeof n !== "number" || !Number.isInteger(n) || n < 0))
    throw new RangeError("scale takes a whole number");
  const w = await svcs.where(path);
  if ("moved" in w) return { moved: w.moved };
  if (r.do === "scrub") {
    await svcs.scrub(path, w.svc);
    return null;
  }
  if (r.do === "scale") svcs.scale(w.svc, n as number);
  return w.svc.stat();
}

/** Serves one request under /@; every outcome goes to reply or fail. */
export function storeRequest(
  host: StoreHost | undefined,
  s: StoreSession,
  r: Record<string, unknown>,
  reply: (v: unknown) => void,
  fail: (err: unknown) => void,
): void {
  if (!host) return fail(new Unsupported(NO_STORE));
  const path = names(r.path, s.depth);
  const run = async (): Promise<unknown> => {
    switch (r.op) {
      case "ls": {
        const all = await host.store.paths();
        const out = new Map<string, { path: string; kind?: string; state?: string }>();
        for (const { names: n, entry } of all) {
          if (n.length <= path.length || !path.every((x, i) => n[i] === x)) continue;
          const upto = r.recursive === true ? n.length : path.length + 1;
          for (let i = path.length + 1; i <= upto; i++) {
            const p = `/${n.slice(0, i).join("/")}`;
            if (out.has(p)) continue;
            const e: { path: string; kind?: string; state?: string } = { path: p };
            if (i === n.length) {
              e.kind = entry.kind;
              if (r.long === true)
                e.state =
                  entry.kind === "chan" ? `cap=${entry.cap} replicas=${entry.replicas}` : `desired=${entry.desired}`;
            }
            out.set(p, e);
          }
        }
        return [...out.values()];
      }
      case "openchan": {
        // Atomic get-or-create: whoever loses the race to create it gets the one the winner made.
        for (let i = 0; i < 3; i++) {
          const e = await host.store.entry(path);
          if (e?.kind === "svc") throw new WrongKind(`/${path.join("/")} holds a service, not a channel`);
          if (e) return { kind: e.kind, cap: e.cap, replicas: e.replicas };
          try {
            const made = await host.makeChan(path, checkCap(r.cap), checkReplicas(r.replicas));
            return { kind: "chan", cap: made.cap, replicas: made.replicas };
          } catch (err) {
            if ((err as { code?: string }).code !== "AnchorBusy") throw err;
          }
        }
        throw new StoreUnavailable(`${path.join("/")} keeps changing`);
      }
      case "mkchan": {
        const e = await host.makeChan(path, checkCap(r.cap), checkReplicas(r.replicas));
        return { kind: "chan", cap: e.cap, replicas: e.replicas };
      }
      case "open": {
        const e = await host.store.entry(path);
        if (e?.kind === "svc") return { kind: "svc" };
        return e ? { kind: e.kind, cap: e.cap, replicas: e.replicas } : null;
      }
      case "mksvc":
      case "svc":
        try {
          return await svcRequest(s.svcs, path, r);
        } catch (err) {
          // Connected but slow, as below: the client asks again for a while.
          if (r.op === "svc" && err instanceof StoreUnavailable && host.store.connected) return { retry: err.message };
          throw err;
        }
    }
    // Everything else needs the host.
    let w: Awaited<ReturnType<StoreHost["where"]>>;
    try {
      w = await host.where(path);
    } catch (err) {
      // Connected but slow (a NATS node died and its groups elect new leaders): the client asks
      // again for a while. With no NATS server reachable it hears StoreUnavailable at once.
      if (err instanceof StoreUnavailable && host.store.connected) return { retry: err.message };
      throw err;
    }
    if ("moved" in w) return { moved: w.moved };
    const ch = w.ch;
    const act = r.op === "peek" ? "stat" : r.op === "scrub" ? "scrub" : r.act;
    switch (act) {
      case "send": {
        const v = bytes(r.value);
        if (v.length > s.maxValue) throw new ProtocolError(`value of ${v.length} bytes exceeds the limit`);
        if (typeof r.id !== "string" || r.id.length > 64) throw new ProtocolError("a send carries an id");
        const id = r.id;
        return new Promise((resolve, reject) =>
          ch.send(s.owner, int(r.opid), v, id, (err) => (err ? reject(err) : resolve(null))),
        );
      }
      case "recv":
        return new Promise((resolve, reject) =>
          ch.recv(s.owner, int(r.opid), (err, v) => (err ? reject(err) : resolve({ seq: v?.seq, value: v?.bytes }))),
        );
      case "case": {
        // A select case (docs/select.md, "Replicated channels"): answered with its offer, or null.
        if (r.dir !== "recv" && r.dir !== "send") throw new ProtocolError('a select case is "recv" or "send"');
        let send: { bytes: Buffer; id: string } | undefined;
        if (r.dir === "send") {
          const v = bytes(r.value);
          if (v.length > s.maxValue) throw new ProtocolError(`value of ${v.length} bytes exceeds the limit`);
          if (typeof r.id !== "string" || r.id.length > 64) throw new ProtocolError("a send case carries an id");
          // A copy: the case may wait long, and should not keep the whole request frame alive.
          send = { bytes: Buffer.from(v), id: r.id };
        }
        const dir = r.dir;
        return new Promise((resolve, reject) =>
          ch.selectCase(
            s.owner,
            int(r.opid),
            dir,
            send,
            { once: r.once === true, selector: selector(r.sel) },
            (err, offer) => (err ? reject(err) : resolve({ offer: offer ?? null })),
          ),
        );
      }
      case "watch":
        return new Promise((resolve, reject) =>
          ch.watchCase(s.owner, int(r.opid), (err, offer) => (err ? reject(err) : resolve({ offer: offer ?? null }))),
        );
      case "commit":
        return await ch.commitCase(s.owner, int(r.opid));
      case "ack":
        await ch.ack(int(r.seq));
        return null;
      case "cancel":
        ch.cancel(s.owner, int(r.opid));
        return null;
      case "close":
        await ch.close();
        return null;
      case "stat":
        return ch.stat();
      case "scrub":
        await host.scrub(path, ch);
        return null;
      default:
        throw new WrongKind(`${JSON.stringify(r.op)} is not an operation of a replicated channel`);
    }
  };
  run().then(reply, fail);
}
