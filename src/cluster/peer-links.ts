// Connections between servers, carrying membership messages. A server sends on the connection it
// opened to a peer (opened on first use) and receives on the ones peers opened to it. What the
// sockets say is passed on as hints: a refused connection means the peer's process is gone.

import { FrameConn } from "../transport/frame-conn.js";
import { connectTo, readyEvent } from "../transport/secure.js";
import { decode, encode, PROTOCOL_VERSION, T } from "../wire/protocol.js";

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
  log(line: string): void;
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
  const m = /^circuit:\/\/(?:\[([^\]]+)\]|([^/:[\]]+)):(\d{1,5})(?:\/.*)?$/.exec(url);
  if (!m) return undefined;
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
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
    const sock = connectTo(hp.host, hp.port, this.o.key);
    let refused = false;
    // Registered before FrameConn's own listener, which reports the close.
    sock.once("error", (err: NodeJS.ErrnoException) => {
      if (!link.ready && err.code === "ECONNREFUSED") refused = true;
    });
    const conn = new FrameConn(sock, { maxFrame: this.o.maxFrame });
    link.conn = conn;
    const timer = setTimeout(() => {
      if (!link.ready) conn.destroy();
    }, CONNECT_TIMEOUT_MS);
    timer.unref();
    sock.once(readyEvent(sock), () => {
      conn.send(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "server", id: this.o.self.id, url: this.o.self.url }));
    });
    conn.onFrame = (type, body) => {
      if (type === T.HELLO && !link.ready) {
        const h = decode(body) as { id?: string; v?: number };
        if (h.v !== PROTOCOL_VERSION || typeof h.id !== "string" || (link.id && h.id !== link.id)) {
          // Someone else answers at that address now: as good as refused for the member we wanted.
          if (link.id) refused = true;
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
        for (const b of link.queue.splice(0)) conn.send(T.SWIM, [], b);
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
