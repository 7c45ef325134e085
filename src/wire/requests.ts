// The request bodies (REQ tails, docs/protocol.md §3): one type per op, `op` the discriminant.
// The client builds requests as `Request`; the daemon reads them as `Received<…>`, the same shapes
// with every field but `op` unknown (they come from the network), so a `switch (r.op)` narrows to
// the fields that op has and a misspelt field is a compile error on both ends. Checking the values
// stays where they are used. Encoding is plain MessagePack of these objects: the wire format is
// what the field names say.

import { ProtocolError } from "../errors.js";

/** A path as an array of names: ["X3f9c…", "jobs", "queue"] is /X3f9c…/jobs/queue. */
export type Path = readonly string[];

// ---- 2. Handshake and pushes ----------------------------------------------------------------

/** The client's HELLO tail. */
export interface ClientHello {
  v: number;
  role: "client";
  /** Names the client across its reconnections (at most 64 characters). */
  cid: string;
}
/** The server's HELLO tail, the answer to a client's. */
export interface ServerHello {
  v: number;
  id: string;
  url: string;
  maxValue: number;
  /**
   * Blocked sends, and receivers, the server takes from one connection at a time (more is a
   * protocol error); a client holds any more back itself. Absent from older servers: 65,536.
   */
  pending?: number;
  /** Streams towards the server it takes from one connection at a time; absent from older servers: 1,024. */
  streams?: number;
  /**
   * Receives one receiver id may have outstanding plus values handed to it and not acknowledged
   * (more is a protocol error); a client keeps its prefetch within it. Absent from older servers: 65,536.
   */
  credits?: number;
  /** Cases of one select the server takes (more is a protocol error); absent from older servers: 1,024. */
  selectCases?: number;
  /**
   * True: a sender that has spent every credit may say so (CWAIT) and wait for the next GRANT
   * instead of sending a send that may block; the server answers with GRANT, or with REVOKE when
   * it no longer counts it a holder. Absent from older servers, which know no CWAIT.
   */
  grantWait?: boolean;
  /**
   * True: a sender that holds no credit may ask for some and wait for it (CWAIT 1 with its want as
   * a third field) instead of sending a send that may block; it then waits as a holder out of
   * credit does, in its turn among the blocked senders. The server answers with GRANT, or with
   * REVOKE if it cannot (the channel is closing), and the send goes as one that may block.
   * Absent from older servers, which answer such a CWAIT with REVOKE.
   */
  grantAsk?: boolean;
}
/** PUSH tails: a released channel handle, and (to a client that watches) membership changes. */
export type Push =
  | { ev: "released"; handle: number }
  | { ev: "join"; id: string; url: string; joinedAt: string }
  | { ev: "leave"; id: string };

// ---- 3.1 Anchors and elements ----------------------------------------------------------------

export interface LsRequest {
  op: "ls";
  path: Path;
  recursive?: boolean;
  long?: boolean;
}
export interface OpenRequest {
  op: "open";
  path: Path;
}
/** Makes a channel (`mkchan`), or opens the one there, making it if there is none (`openchan`). */
export interface MakeChanRequest {
  op: "mkchan" | "openchan";
  path: Path;
  cap: number;
  /** A durable channel (DESIGN §3.6). */
  durable?: boolean;
  /** Under /@: how many servers keep the replicated channel's log. */
  replicas?: number;
}
export interface MakeSubRequest {
  op: "mksub";
  path: Path;
  kind: "@join" | "@leave";
}
export interface PeekRequest {
  op: "peek";
  path: Path;
}
/** Removes what a path holds, or the channel a handle names. */
export type ScrubRequest = { op: "scrub"; path: Path; handle?: undefined } | { op: "scrub"; handle: number };
export interface StatRequest {
  op: "stat";
  handle: number;
}
export interface CloseRequest {
  op: "close";
  handle: number;
}

// ---- 3.2 The circuit -------------------------------------------------------------------------

export interface ServersRequest {
  op: "servers";
}
export interface WatchRequest {
  op: "watch";
}
export interface PingRequest {
  op: "ping";
}
export interface PlaceRequest {
  op: "place";
  req: { cpus?: number; memoryBytes?: number };
}
export interface JoinRequest {
  op: "join";
  /** [server id] */
  path: Path;
  url: string;
}
export interface StopRequest {
  op: "stop";
  /** [server id] */
  path: Path;
}
/** A server's recent events and element statistics (src/daemon/observe.ts). */
export interface ObsRequest {
  op: "obs";
  /** [server id] */
  path: Path;
  after?: number;
  limit?: number;
  tails?: boolean;
}

// ---- 3.3 Processes ---------------------------------------------------------------------------

export interface MakeProcRequest {
  op: "mkproc";
  path: Path;
  /** {path, args?, env?, dir?, inheritEnv?, scrub?, limits?}, checked by the daemon's parseCommand. */
  cmd: unknown;
  /** Receiver ids for stdout and stderr, attached before the first byte. */
  rid1?: number;
  rid2?: number;
  /** A server id: the process is scrubbed when that server leaves. */
  tied?: string;
}
export type ProcDo =
  | { do: "peek" }
  | { do: "wait"; token: number }
  | { do: "unwait"; token: number }
  | { do: "signal"; signal: string }
  | { do: "scrub"; keep?: boolean }
  | { do: "read"; fd: 1 | 2; rid: number }
  | { do: "write"; sid: number };
/** An operation on a process; `eid` makes sure it is the process the handle was made for. */
export type ProcRequest = { op: "proc"; path: Path; eid?: number } & ProcDo;

// ---- 3.4 Services ----------------------------------------------------------------------------

export interface MakeSvcRequest {
  op: "mksvc";
  path: Path;
  /** A service spec (src/wire/svc-spec.ts), checked by the daemon. */
  spec: unknown;
}
/** `do: "scrub"` only under /@ (a service elsewhere is scrubbed with the generic `scrub`). */
export type SvcRequest = { op: "svc"; path: Path } & ({ do: "peek" } | { do: "scale"; n: number } | { do: "scrub" });

// ---- 3.5 Host resources and nameservers ------------------------------------------------------

export type HostDo =
  | { do: "ports" }
  | { do: "reserve"; address?: string }
  | { do: "fs.stat"; file: string }
  | { do: "fs.ls"; file: string }
  | { do: "fs.read"; file: string; rid: number }
  | { do: "fs.write"; file: string; sid: number };
export type HostRequest = { op: "host" /** [server id] */; path: Path } & HostDo;

export interface MakeDnsRequest {
  op: "mkdns";
  path: Path;
  /** HOST:PORT to serve on; default 127.0.0.1:0. */
  addr?: string;
}
export type DnsDo = { do: "set"; rr: string } | { do: "unset"; name: string } | { do: "peek" };
export type DnsRequest = { op: "dns"; path: Path; eid?: number } & DnsDo;

// ---- Circuit-wide anchors (/@, DESIGN §12) ---------------------------------------------------

/**
 * A request under /@ (`op: "@"` with an `act`, or a generic op whose path starts with "@"): read
 * by src/daemon/store-ops.ts, which checks each field it uses.
 */
export interface StoreRequest {
  op: "@";
  path: Path;
  [field: string]: unknown;
}

/** Every request a client may send. */
export type Request =
  | LsRequest
  | OpenRequest
  | MakeChanRequest
  | MakeSubRequest
  | PeekRequest
  | ScrubRequest
  | StatRequest
  | CloseRequest
  | ServersRequest
  | WatchRequest
  | PingRequest
  | PlaceRequest
  | JoinRequest
  | StopRequest
  | ObsRequest
  | MakeProcRequest
  | ProcRequest
  | MakeSvcRequest
  | SvcRequest
  | HostRequest
  | MakeDnsRequest
  | DnsRequest
  | StoreRequest;

export type Op = Request["op"];

/** Every op, for code that must go through them all (tests, docs checks). */
export const OPS = [
  "ls",
  "open",
  "mkchan",
  "openchan",
  "mksub",
  "peek",
  "scrub",
  "stat",
  "close",
  "servers",
  "watch",
  "ping",
  "place",
  "join",
  "stop",
  "obs",
  "mkproc",
  "proc",
  "mksvc",
  "svc",
  "host",
  "mkdns",
  "dns",
  "@",
] as const satisfies readonly Op[];
// A compile error here means an op of Request is missing from OPS.
const allOps: [Exclude<Op, (typeof OPS)[number]>] extends [never] ? true : never = true;
void allOps;

/** Keys of any member of a union (keyof of a union keeps only the shared ones). */
type AllKeys<R> = R extends unknown ? keyof R : never;

/** The request types whose op may be `O`. */
type OfOp<O extends Op, R = Request> = R extends { op: infer P } ? (O extends P ? R : never) : never;

/**
 * A request of op `O` as the daemon receives it: its op, and every field any form of that op may
 * have, each of unknown type until checked.
 */
export type Received<O extends Op = Op> = O extends Op
  ? { op: O } & { readonly [K in Exclude<AllKeys<OfOp<O>>, "op">]?: unknown }
  : never;

/**
 * Reads a decoded REQ tail as a request: an object with a string `op` (unknown ops are left for
 * the dispatch to refuse). Throws ProtocolError otherwise.
 */
export function receivedRequest(x: unknown): Received {
  if (typeof x !== "object" || x === null || typeof (x as { op?: unknown }).op !== "string") {
    throw new ProtocolError("a request is an object with an op");
  }
  return x as Received;
}
