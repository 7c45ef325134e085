// Connections between servers, carrying membership messages. A server sends on the connection it
// opened to a peer (opened on first use) and receives on the ones peers opened to it. What the
// sockets say is passed on as hints: a refused connection means the peer's process is gone.

import { FrameConn } from "../transport/frame-conn.js";
import { connectTo, readyEvent } from "../transport/secure.js";
import type { Logger } from "../util/log.js";
import { decode, encode, PROTOCOL_VERSION, T } from "../wire/protocol.js";
import { parseUrl } from "../wire/url.js";

/**
 * How a connection to a seed (a --join address, whose server we do not know yet) went. `kind`
 * sorts failures by what a person should check: the network, the key, the versions, the address.
 */
export type SeedOutcome =
  | { ok: true; id: string }
  | { ok: false; kind: "unreachable" | "auth" | "version" | "not-circuit" | "refused" | "self"; reason: string };

export interface PeerLinksOptions {
  /** This server's HELLO to peers. */
  self: { id: string; url: string };
  maxFrame: number;
  /** Cluster key: links are TLS-PSK. */
  key?: Buffer;
  onMessage(from: string, msg: unknown): void;
  /** The peer refused a connection: nothing listens there any more. */
  onUnreachable(id: string): void;
  /** An established connection to the peer broke. */
  onConnectionLost(id: string): void;
  /** A connection opened to a seed address (id unknown) said HELLO, or failed: why. */
  onSeed?(addr: string, outcome: SeedOutcome): void;
  log: Logger;
}

const CONNECT_TIMEOUT_MS = 1000;
const MAX_QUEUED = 256;

interface Link {
  key: string;
  id: string | undefined;
  addr: string;
  conn: FrameConn | undefined;
  ready: boolean;
  queue: Buffer[];
}

function hostPort(url: string): { host: string; port: number } | undefined {
  try {
    return parseUrl(url);
  } catch {
    return undefined;
  }
}

/** What a socket error before HELLO means, in words a person can act on. */
function connectFailure(err: NodeJS.ErrnoException, tcp: boolean, keyed: boolean): SeedOutcome {
  const code = err.code ?? "";
  if (!tcp) return { ok: false, kind: "unreachable", reason: `unreachable (${code || err.message})` };
  if (/UNKNOWN_PSK|BAD_RECORD_MAC|DECRYPT_ERROR|HANDSHAKE_FAILURE|ILLEGAL_PARAMETER/.test(code)) {
    return { ok: false, kind: "auth", reason: "refused our cluster key (it has another key)" };
  }
  if (keyed && /WRONG_VERSION_NUMBER|UNEXPECTED_MESSAGE|RECORD_LAYER|PACKET_LENGTH/.test(code)) {
    return {
      ok: false,
      kind: "auth",
      reason: "does not speak TLS: it runs without a cluster key, or is not a circuit daemon",
    };
  }
  // A reset and a close before HELLO are the same state to the reader: which one a peer that hangs
  // up at once produces depends on timing.
  if (code === "ECONNRESET" || code === "EPIPE") return closedEarly(keyed, undefined);
  return { ok: false, kind: "unreachable", reason: `connection failed (${code || err.message})` };
}

/** A peer that accepted the connection, then ended it before its HELLO. */
function closedEarly(keyed: boolean, first: Buffer | undefined): SeedOutcome {
  if (keyed) {
    return {
      ok: false,
      kind: "auth",
      reason: "refused our cluster key, or is not a circuit daemon (it ended the connection during the TLS handshake)",
    };
  }
  return {
    ok: false,
    kind: "auth",
    reason: `ended the connection before the circuit handshake${quoteStart(first)}: it may require a cluster key (--key)`,
  };
}

/** The first bytes a peer sent, quoted for a log line. */
function quoteStart(b: Buffer | undefined): string {
  if (!b || b.length === 0) return "";
  const text = b.subarray(0, 24).toString("latin1");
  const shown = /^[\x20-\x7e\r\n\t]+$/.test(text)
    ? JSON.stringify(text.split(/\r?\n/)[0])
    : `bytes ${b.subarray(0, 8).toString("hex")}`;
  return ` (it answered ${shown})`;
}

export class PeerLinks {
  private readonly out = new Map<string, Link>();
  private readonly inbound = new Set<FrameConn>();
  private closed = false;

  constructor(private readonly o: PeerLinksOptions) {}

  /** Sends a message to member `id` (or, while its ID is unknown, to whoever serves `addr`). */
  send(id: string, addr: string, msg: unknown): void {
    if (this.closed) return;
    const key = id || `@${addr}`;
    let link = this.out.get(key);
    if (!link || (link.addr !== addr && addr)) {
      if (link) this.drop(link);
      link = { key, id: id || undefined, addr, conn: undefined, ready: false, queue: [] };
      this.out.set(key, link);
      this.connect(link);
    }
    const body = encode(msg);
    if (link.ready && link.conn) link.conn.send(T.SWIM, [], body);
    else if (link.queue.length < MAX_QUEUED) link.queue.push(body);
  }

  /** A connection a peer opened to us, after its HELLO; we answer with ours. */
  adopt(conn: FrameConn, peerId: string): void {
    this.inbound.add(conn);
    conn.onFrame = (type, body) => {
      if (type !== T.SWIM) return;
      let msg: unknown;
      try {
        msg = decode(body);
      } catch {
        conn.destroy();
        return;
      }
      this.o.onMessage(peerId, msg);
    };
    conn.onClose = () => this.inbound.delete(conn);
  }

  /** Forgets the connection to a member (it left or died). */
  forget(id: string): void {
    const link = this.out.get(id);
    if (link) this.drop(link);
  }

  close(): void {
    this.closed = true;
    for (const l of this.out.values()) this.drop(l);
    for (const c of this.inbound) c.destroy();
    this.inbound.clear();
  }

  private connect(link: Link): void {
    const hp = hostPort(link.addr);
    if (!hp) {
      this.out.delete(link.key);
      return;
    }
    // A link opened before we know who answers is a join: its outcome is reported, failure or not.
    const seed = !link.id;
    const keyed = this.o.key !== undefined;
    let failure: SeedOutcome | undefined;
    const fail = (f: SeedOutcome) => {
      failure ??= f;
    };
    const sock = connectTo(hp.host, hp.port, this.o.key);
    let refused = false;
    let tcp = false;
    let first: Buffer | undefined;
    sock.once("connect", () => {
      tcp = true;
    });
    sock.once("data", (b: Buffer) => {
      first = b;
    });
    // Registered before FrameConn's own listener, which reports the close.
    sock.once("error", (err: NodeJS.ErrnoException) => {
      if (!link.ready && err.code === "ECONNREFUSED") refused = true;
      if (!link.ready) fail(connectFailure(err, tcp, keyed));
    });
    const conn = new FrameConn(sock, { maxFrame: this.o.maxFrame });
    conn.onBadInput = () => {
      if (!link.ready) fail({ ok: false, kind: "not-circuit", reason: `is not a circuit daemon${quoteStart(first)}` });
    };
    link.conn = conn;
    const timer = setTimeout(() => {
      if (link.ready) return;
      fail(
        tcp
          ? {
              ok: false,
              kind: "not-circuit",
              reason: `accepted the connection but sent no circuit HELLO within ${CONNECT_TIMEOUT_MS} ms: not a circuit daemon?`,
            }
          : { ok: false, kind: "unreachable", reason: `unreachable (no answer within ${CONNECT_TIMEOUT_MS} ms)` },
      );
      conn.destroy();
    }, CONNECT_TIMEOUT_MS);
    timer.unref();
    sock.once(readyEvent(sock), () => {
      conn.send(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "server", id: this.o.self.id, url: this.o.self.url }));
    });
    conn.onFrame = (type, body) => {
      if (type === T.HELLO && !link.ready) {
        let h: { id?: unknown; v?: unknown };
        try {
          h = decode(body) as typeof h;
        } catch {
          h = {};
        }
        if (typeof h !== "object" || h === null) h = {};
        if (h.v !== PROTOCOL_VERSION || typeof h.id !== "string" || (link.id && h.id !== link.id)) {
          // Someone else answers at that address now: as good as refused for the member we wanted.
          if (link.id) refused = true;
          if (typeof h.v === "number" && h.v !== PROTOCOL_VERSION) {
            fail({
              ok: false,
              kind: "version",
              reason: `speaks circuit protocol version ${h.v}; this daemon speaks ${PROTOCOL_VERSION} (run the same release everywhere)`,
            });
          } else fail({ ok: false, kind: "not-circuit", reason: "sent a HELLO this daemon cannot read" });
          conn.destroy();
          return;
        }
        if (h.id === this.o.self.id) {
          fail({ ok: false, kind: "self", reason: "is this server itself" });
          conn.destroy();
          return;
        }
        clearTimeout(timer);
        link.ready = true;
        if (!link.id) {
          link.id = h.id;
          this.out.delete(link.key);
          const existing = this.out.get(h.id);
          if (existing && existing !== link) this.drop(existing);
          link.key = h.id;
          this.out.set(h.id, link);
        }
        if (seed) this.o.onSeed?.(link.addr, { ok: true, id: h.id });
        for (const b of link.queue.splice(0)) conn.send(T.SWIM, [], b);
        return;
      }
      if (type === T.ERR && !link.ready) {
        // The peer refused our HELLO and says why (another protocol version, most likely).
        let why = "refused our HELLO";
        try {
          const e = decode(body.subarray(4)) as { message?: unknown };
          if (typeof e?.message === "string") why = e.message.slice(0, 200);
        } catch {
          // keep the generic reason
        }
        const kind = /version/i.test(why) ? "version" : "refused";
        fail({ ok: false, kind, reason: `refused the connection: ${why}` });
        return;
      }
      if (type === T.SWIM && link.id) {
        // Peers answer on the connection we opened.
        try {
          this.o.onMessage(link.id, decode(body));
        } catch {
          conn.destroy();
        }
      }
    };
    conn.onClose = () => {
      clearTimeout(timer);
      if (this.out.get(link.key) === link) this.out.delete(link.key);
      if (seed && !link.ready && !this.closed) {
        fail(tcp ? closedEarly(keyed, first) : { ok: false, kind: "unreachable", reason: "unreachable" });
        this.o.onSeed?.(link.addr, failure as SeedOutcome);
      }
      if (this.closed || !link.id) return;
      if (refused) this.o.onUnreachable(link.id);
      else if (link.ready) this.o.onConnectionLost(link.id);
    };
  }

  private drop(link: Link): void {
    if (this.out.get(link.key) === link) this.out.delete(link.key);
    link.conn?.destroy();
  }
}
