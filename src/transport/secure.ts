// Cluster keys: every connection, server–server and client–server, is TLS 1.2 with a pre-shared
// key (PSK-AES256-GCM-SHA384) from node:tls. Both ends prove they hold the key during the
// handshake; nothing of ours is sent before it completes. No cipher of our own.

import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as net from "node:net";
import type * as Tls from "node:tls";
import { AuthFailed } from "../errors.js";
import { directReadOptions } from "./direct-read.js";

let tlsModule: typeof Tls | undefined;
/**
 * node:tls, loaded on first use: a circuit without a key never needs it, and loading it costs a
 * process about 1 MB and 1.5 ms of start-up (every `circuit` command, every daemon and client).
 */
function tls(): typeof Tls {
  tlsModule ??= createRequire(import.meta.url)("node:tls") as typeof Tls;
  return tlsModule;
}

export const PSK_CIPHER = "PSK-AES256-GCM-SHA384";
const KEY_BYTES = 32;

/** A new cluster key as text (64 hex digits). */
export function newKey(): string {
  return randomBytes(KEY_BYTES).toString("hex");
}

/** Reads a key: 64 hex digits, given directly or as the contents of a file. */
export function parseKey(text: string | Uint8Array): Buffer {
  if (text instanceof Uint8Array) {
    if (text.length < 16) throw new TypeError("a cluster key has at least 16 bytes");
    return Buffer.from(text);
  }
  const t = text.trim();
  if (!/^[0-9a-fA-F]{32,128}$/.test(t) || t.length % 2 !== 0) {
    throw new TypeError("a cluster key is 32 to 128 hex digits (make one with `circuit keygen`)");
  }
  return Buffer.from(t, "hex");
}

/** A key given as the key itself or as the path of a file holding it. */
export function loadKey(spec: string): Buffer {
  if (/^[0-9a-fA-F]{32,128}$/.test(spec.trim())) return parseKey(spec);
  let text: string;
  try {
    text = readFileSync(spec, "utf8");
  } catch (err) {
    throw new TypeError(`cannot read key file ${spec}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return parseKey(text);
}

/** The PSK identity naming a key: a hash prefix, so a server can hold several keys while rotating. */
export function keyId(key: Buffer): string {
  return `circuit-${createHash("sha256").update("circuit key id\0").update(key).digest("hex").slice(0, 16)}`;
}

/**
 * The token a browser or scraper shows a keyed daemon's HTTP endpoints (DESIGN.md §7): an HMAC of
 * a fixed label under the cluster key, so it proves the key was known without revealing it.
 */
export function dashboardToken(key: Buffer): string {
  return createHmac("sha256", key).update("circuit dashboard token v1").digest("base64url").slice(0, 32);
}

/** The keys a server accepts: the first is its own; the others are accepted during a rollover. */
export class KeyRing {
  private readonly byId = new Map<string, Buffer>();
  readonly primary: Buffer;

  constructor(primary: Buffer, accepted: Buffer[] = []) {
    this.primary = primary;
    for (const k of [primary, ...accepted]) this.byId.set(keyId(k), k);
  }

  lookup(identity: string): Buffer | undefined {
    return this.byId.get(identity);
  }
}

const tlsBase = { ciphers: PSK_CIPHER, minVersion: "TLSv1.2", maxVersion: "TLSv1.2" } as const;

/** Why a TLS handshake a peer started with us failed, for the log. */
export function refusalReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? "";
  if (/UNKNOWN_PSK|BAD_RECORD_MAC|DECRYPT_ERROR|PSK_IDENTITY_NOT_FOUND/.test(code) || /psk/i.test(err.message)) {
    return "wrong cluster key";
  }
  if (/timed? ?out/i.test(err.message) || code === "ERR_TLS_HANDSHAKE_TIMEOUT") return "no TLS handshake in time";
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|UNSUPPORTED_PROTOCOL/.test(code)) {
    return "not TLS (a peer without the cluster key?)";
  }
  if (/NO_SHARED_CIPHER|NO_CIPHERS/.test(code)) return "no shared cipher (a peer without the cluster key?)";
  if (code === "ECONNRESET") return "closed during the TLS handshake";
  return `TLS handshake failed (${code || err.message})`;
}

/**
 * A listening server: TCP, or TLS-PSK with a key ring. `handshakeMs` bounds unauthenticated peers.
 * `onRefused` hears of every peer whose TLS handshake failed (its address, and why).
 */
export function createListener(
  ring: KeyRing | undefined,
  handshakeMs: number,
  onConnection: (sock: net.Socket) => void,
  onRefused?: (peer: string, reason: string) => void,
): net.Server {
  if (!ring) return net.createServer({ noDelay: true }, onConnection);
  const server = tls().createServer(
    {
      ...tlsBase,
      handshakeTimeout: handshakeMs,
      pskCallback: (_sock, identity) => ring.lookup(identity) ?? null,
    },
    onConnection,
  );
  // A peer without the key, or one that never finishes its handshake: Node reports it here but
  // leaves the socket open, so close it.
  server.on("tlsClientError", (err, sock) => {
    onRefused?.(peerAddress(sock), refusalReason(err as NodeJS.ErrnoException));
    sock.destroy();
  });
  return server;
}

/** HOST:PORT of the other end of a socket ("?" once it is gone). */
export function peerAddress(sock: { remoteAddress?: string; remotePort?: number }): string {
  const h = sock.remoteAddress;
  if (!h) return "?";
  return h.includes(":") ? `[${h}]:${sock.remotePort}` : `${h}:${sock.remotePort}`;
}

/**
 * Opens a connection to a server, over TLS-PSK when a key is given. With `direct`, its bytes are
 * read into buffers of ours for a FrameConn to take over (direct-read.ts): no 'data' events.
 */
export function connectTo(host: string, port: number, key: Buffer | undefined, direct = false): net.Socket {
  const reads = direct ? directReadOptions() : undefined;
  const onread = reads?.onread;
  let sock: net.Socket;
  if (!key) sock = net.connect({ host, port, noDelay: true, onread });
  else {
    const identity = keyId(key);
    // tls.connect takes `onread` as net.connect does (Node's documentation); its typings lack it.
    const options: Tls.ConnectionOptions & { onread?: net.OnReadOpts } = {
      ...tlsBase,
      host,
      port,
      onread,
      pskCallback: () => ({ psk: key, identity }),
      // PSK authenticates the server; there is no certificate to check.
      checkServerIdentity: () => undefined,
    };
    sock = tls().connect(options);
    sock.setNoDelay(true);
  }
  reads?.bind(sock);
  return sock;
}

/** The event after which frames may flow: 'secureConnect' for TLS, 'connect' for TCP. */
export function readyEvent(sock: net.Socket): string {
  // Not loaded yet: no socket is a TLS one.
  return tlsModule !== undefined && sock instanceof tlsModule.TLSSocket ? "secureConnect" : "connect";
}

/** Turns a handshake failure into AuthFailed with a reason a person can act on. */
export function authError(err: NodeJS.ErrnoException, keyed: boolean, where: string): AuthFailed | undefined {
  const code = err.code ?? "";
  if (/BAD_RECORD_MAC|DECRYPT_ERROR|UNKNOWN_PSK|HANDSHAKE_FAILURE|ERR_SSL/.test(code) || code === "ECONNRESET") {
    if (!keyed && code === "ECONNRESET") return undefined;
    return new AuthFailed(
      keyed
        ? `${where} refused our cluster key (wrong key, or the server uses none)`
        : `${where} requires a cluster key`,
      { cause: err },
    );
  }
  return undefined;
}
