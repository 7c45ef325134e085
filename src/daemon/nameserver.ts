// The sockets of a nameserver element: UDP and TCP on one port of this host, answering from its
// Zone (src/element/zone.ts). Everything a peer sends is bounded: a TCP message is at most 65,535
// bytes by its length prefix, connections are capped and closed when idle, and a client that does
// not read its answers is cut off once a few of them are queued.

import * as dgram from "node:dgram";
import * as net from "node:net";
import { Zone } from "../element/zone.js";
import { AccessDenied, AddressInUse, BadAddress } from "../errors.js";
import type { Logger } from "../util/log.js";

/** TCP connections served at once per nameserver. */
const MAX_TCP = 128;
/** A TCP connection that sends nothing for this long is closed (RFC 7766 suggests seconds). */
const TCP_IDLE_MS = 10_000;
/** Answer bytes queued for a TCP client that does not read before it is cut off. */
const TCP_MAX_UNSENT = 256 * 1024;
/** Tries to find a port free for both UDP and TCP when asked for port 0. */
const BIND_TRIES = 20;

/** "HOST:PORT", with brackets around an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export class HostedNameserver {
  readonly zone = new Zone();
  private readonly conns = new Set<net.Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    /** Where it listens: "127.0.0.1:53535". */
    readonly address: string,
    private readonly log: Logger,
  ) {
    udp.on("message", (msg, from) => this.datagram(msg, from));
    // A send that fails (the client's port is gone) concerns that client only.
    udp.on("error", (err) =>
      this.log.warn(
        { event: "nameserver", address, reason: err.message },
        `nameserver ${address}: udp: ${err.message}`,
      ),
    );
    tcp.on("connection", (sock) => this.connection(sock));
    tcp.on("error", (err) =>
      this.log.warn(
        { event: "nameserver", address, reason: err.message },
        `nameserver ${address}: tcp: ${err.message}`,
      ),
    );
  }

  /**
   * Listens on host:port over UDP and TCP; port 0 picks a port free for both. Fails with a
   * CircuitError coded AddressInUse or BadAddress (AccessDenied for a privileged port) when it cannot.
   */
  static async start(host: string, port: number, log: Logger): Promise<HostedNameserver> {
    for (let i = 0; ; i++) {
      const tcp = net.createServer({ pauseOnConnect: false });
      tcp.maxConnections = MAX_TCP;
      let udp: dgram.Socket | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once("error", reject);
          tcp.listen({ host, port, exclusive: true }, () => {
            tcp.off("error", reject);
            resolve();
          });
        });
        const bound = (tcp.address() as net.AddressInfo).port;
        const sock = dgram.createSocket({ type: net.isIPv6(host) ? "udp6" : "udp4" });
        udp = sock;
        await new Promise<void>((resolve, reject) => {
          sock.once("error", reject);
          sock.bind({ address: host, port: bound, exclusive: true }, () => {
            sock.off("error", reject);
            resolve();
          });
        });
        return new HostedNameserver(sock, tcp, formatHostPort(host, bound), log);
      } catch (err) {
        udp?.close();
        tcp.close();
        const code = (err as NodeJS.ErrnoException).code;
        // Port 0 gave a TCP port whose UDP twin is taken: try another.
        if (port === 0 && code === "EADDRINUSE" && i < BIND_TRIES) continue;
        throw bindError(err as NodeJS.ErrnoException, formatHostPort(host, port));
      }
    }
  }

  /** Records and address, as `peek` shows them. */
  stat(): { address: string; records: unknown[] } {
    return { address: this.address, records: this.zone.records() };
  }

  /** Stops answering and frees the port (UDP and TCP); resolves once both are closed. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        const tcpClosed = new Promise<void>((r) => this.tcp.close(() => r()));
        for (const s of this.conns) s.destroy();
        const udpClosed = new Promise<void>((r) => this.udp.close(() => r()));
        await Promise.all([tcpClosed, udpClosed]);
      })();
    }
    return this.closing;
  }

  private datagram(msg: Buffer, from: dgram.RemoteInfo): void {
    if (this.closing) return;
    const out = this.zone.respond(msg, "udp");
    if (!out) return;
    try {
      this.udp.send(out, from.port, from.address, () => {});
    } catch {
      // A source no reply can go to (port 0): nothing to say to it.
    }
  }

  private connection(sock: net.Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    this.conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on("error", () => sock.destroy());
    sock.on("close", () => this.conns.delete(sock));
    let pending: Buffer = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      // Each message is preceded by its length (RFC 1035 §4.2.2); several may come at once.
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const n = pending.readUInt16BE(0);
        if (pending.length < 2 + n) break;
        const msg = pending.subarray(2, 2 + n);
        pending = pending.subarray(2 + n);
        const out = this.zone.respond(msg, "tcp");
        // Not a query (no header, or a response): ignored, as over UDP; the framing still holds.
        if (!out) continue;
        const len = Buffer.allocUnsafe(2);
        len.writeUInt16BE(out.length, 0);
        sock.write(Buffer.concat([len, out]));
        if (sock.writableLength > TCP_MAX_UNSENT) {
          sock.destroy();
          return;
        }
      }
      // A partial message waits for the rest in its own copy, not pinning the chunk it came in.
      if (pending.length > 0) pending = Buffer.from(pending);
    });
  }
}

function bindError(err: NodeJS.ErrnoException, addr: string): Error {
  if (err.code === "EADDRINUSE") return new AddressInUse(`${addr} is in use (UDP or TCP)`);
  if (err.code === "EACCES") return new AccessDenied(`this server may not listen on ${addr} (a privileged port?)`);
  if (err.code === "EADDRNOTAVAIL") return new BadAddress(`${addr} is not an address of this host`);
  return new BadAddress(`cannot listen on ${addr}: ${err.message}`);
}
