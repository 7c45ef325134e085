// Reaching a server: the socket, the framed connection on it and the handshake (dialLink), and
// the keepalive that notices a server gone silent (startKeepalive). What flows over the link once
// it is up belongs to Connection.

import * as net from "node:net";
import type { Duplex } from "node:stream";
import { AuthFailed, type CircuitError, ProtocolError, ServerGone, Timeout } from "../errors.js";
import { FrameConn } from "../transport/frame-conn.js";
import { authError, connectTo, readyEvent } from "../transport/secure.js";
import { monotonicMs } from "../util/clock.js";
import { DEFAULT_MAX_VALUE, encode, FRAME_SLACK, PROTOCOL_VERSION, T } from "../wire/protocol.js";
import type { ClientHello } from "../wire/requests.js";
import { formatHost } from "../wire/url.js";

export interface ConnectOptions {
  host: string;
  port: number;
  /** Cluster key: the connection is TLS-PSK, and the server must hold the same key. */
  key?: Buffer;
  signal?: AbortSignal;
  /** Connect plus handshake deadline in ms. Default 10,000. */
  timeoutMs?: number;
  /**
   * Most bytes of values this connection holds before the operating system has accepted them;
   * past it, sends wait (as a Go send into a full buffer would). Default DEFAULT_MAX_UNSENT.
   */
  maxUnsentBytes?: number;
  /**
   * How long a broken connection keeps trying to reach the same server (same server ID) before
   * everything on it fails with ServerGone, refused connections included: set it to ride through
   * a restart of a daemon on the same `--data` and address (durable channels). Without it, the
   * attempts last RECONNECT_MS and a refused connection ends them at once.
   */
  reconnectMs?: number;
  /**
   * @internal Opens the byte stream instead of a TCP (or TLS) connection to host:port: an
   * in-memory pair's end (Daemon.connectInMemory) in tests. Called again for each reconnection.
   */
  connect?: () => Duplex;
}

/** `host:port` as messages show it. */
export function whereOf(opts: ConnectOptions): string {
  return `${formatHost(opts.host)}:${opts.port}`;
}

/** What dialLink needs from the connection it dials for. */
export interface DialHooks {
  /** Takes the new framed connection before any frame can arrive on it. */
  attach(conn: FrameConn): void;
  /** The peer closed after the TCP connect but before answering our HELLO (most likely the key). */
  handshakeClosed(err: CircuitError): void;
  /** Waits for the server's HELLO (request id 0): `settle` is called when it (or ERR 0) arrives. */
  awaitHello(settle: { resolve(): void; reject(err: CircuitError): void }): void;
}

/**
 * Opens a socket to the server, hands its framed connection to `hooks.attach` and completes the
 * handshake: resolves once the server's HELLO arrived, rejects with Timeout, AuthFailed,
 * ProtocolError, ServerGone (cause: the socket error) or the signal's reason.
 */
export async function dialLink(
  opts: ConnectOptions,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  cid: string,
  hooks: DialHooks,
): Promise<void> {
  const where = whereOf(opts);
  const sock: Duplex = opts.connect?.() ?? connectTo(opts.host, opts.port, opts.key, true);
  const conn = new FrameConn(sock, { maxFrame: DEFAULT_MAX_VALUE + FRAME_SLACK });
  hooks.attach(conn);
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => sock.destroy(signal?.reason);
  try {
    return await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => {
        reject(new Timeout(`no answer from ${where} within ${timeoutMs} ms`));
        sock.destroy();
      }, timeoutMs);
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", () => {
        reject(signal?.reason);
        onAbort();
      });
      sock.once("error", (err: NodeJS.ErrnoException) => {
        reject(
          authError(err, opts.key !== undefined, where) ??
            new ServerGone(`cannot reach a circuit server at ${where}: ${err.code ?? err.message}`, { cause: err }),
        );
      });
      const hello = () =>
        conn.send(T.HELLO, [], encode({ v: PROTOCOL_VERSION, role: "client", cid } satisfies ClientHello));
      // A stream of our own making is open at once; a socket once connected (and TLS agreed).
      if (!(sock instanceof net.Socket)) queueMicrotask(hello);
      else sock.once(readyEvent(sock), hello);
      // Reached, then dropped before the HELLO answer: the keys did not match (or one side has none).
      sock.once("connect", () => {
        hooks.handshakeClosed(
          new AuthFailed(
            opts.key
              ? `${where} refused our cluster key (wrong key, or the server uses none)`
              : `${where} closed the connection during the handshake: it requires a cluster key`,
          ),
        );
      });
      // Bytes that are not our frames before the handshake: most likely a TLS server's alert.
      conn.onBadInput = () =>
        reject(
          opts.key
            ? new ProtocolError(`${where} did not answer in the circuit protocol`)
            : new AuthFailed(`${where} did not answer in the circuit protocol; it may require a cluster key`),
        );
      hooks.awaitHello({ resolve: () => resolve(), reject: (e) => reject(e) });
    });
  } finally {
    clearTimeout(timer);
  }
}

/** A quiet server is pinged after PING_MS and given up after SILENT_MS (DESIGN §6: 5 s). */
const PING_MS = 1000;
const SILENT_MS = 5000;

/** What the keepalive watches and does. */
export interface KeepaliveTarget {
  /** The current link (it changes across reconnections). */
  link(): FrameConn;
  /** The server said nothing for `quietMs` while our output did not drain either: it is gone. */
  silent(quietMs: number): void;
  /** Sends a ping (a request whose answer nobody waits for). */
  ping(): void;
}

/**
 * Keepalive: a server that says nothing for a while is asked; one silent for SILENT_MS (a
 * stopped process, a cut cable) is gone. Returns the (unref'd) timer to clear.
 */
export function startKeepalive(target: KeepaliveTarget): NodeJS.Timeout {
  let lastTick = monotonicMs();
  let listeningSince = lastTick;
  const timer = setInterval(() => {
    const now = monotonicMs();
    const conn = target.link();
    // After a stall of our own (a blocked event loop, a starved CPU) we were not listening:
    // the server's silence counts only from when we are back, and gets a ping at once.
    if (now - lastTick > PING_MS) listeningSince = now;
    lastTick = now;
    const quiet = now - Math.max(conn.lastInput, listeningSince);
    // Our own output draining is progress too: the server is reading, though its answers (our
    // pings' among them) wait behind what we queued.
    const stuck = conn.unsent === 0 || now - conn.lastDrain > SILENT_MS;
    if (quiet > SILENT_MS && stuck) {
      target.silent(quiet);
    } else if (quiet >= PING_MS || listeningSince === now || now - conn.lastOutput >= PING_MS) {
      // Also when we have said nothing for a while: the server reaps connections that stay mute.
      target.ping();
    }
  }, PING_MS / 2);
  timer.unref();
  return timer;
}
