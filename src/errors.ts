// One base error with a stable string code, one subclass per condition a caller branches on.
// Errors cross the wire as { code, message } and are rebuilt here as the same class. This module is
// a leaf: every layer may import it.

/**
 * Every code a CircuitError can carry. A program branches on `err.code` (or `instanceof`), never on
 * the message. "Cancelled" answers a request the client withdrew; "Internal" is a failure on the
 * server that fits no other code (and stands in for a code from a newer peer that this release does
 * not know, whose name then starts the message). "Moved" tells a client that the daemon it asked
 * no longer hosts a circuit-wide element (§12): the client asks again and never reports it.
 */
export const ERROR_CODES = [
  "ChannelClosed",
  "ChannelAborted",
  "AnchorBusy",
  "NotFound",
  "WrongKind",
  "ServerGone",
  "MessageTooLarge",
  "SpawnFailed",
  "BadSignal",
  "AuthFailed",
  "ProtocolError",
  "Timeout",
  "StreamBroken",
  "AccessDenied",
  "Unsupported",
  "AddressInUse",
  "BadAddress",
  "NoCapacity",
  "StorageFull",
  "StoreUnavailable",
  "Moved",
  "Cancelled",
  "Internal",
] as const;

/** The stable code of a CircuitError: one of ERROR_CODES. */
export type ErrorCode = (typeof ERROR_CODES)[number];

export class CircuitError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A send on a closed channel, a second close, or a recv on a closed and drained channel. */
export class ChannelClosed extends CircuitError {
  constructor(message = "channel is closed", options?: { cause?: unknown }) {
    super("ChannelClosed", message, options);
  }
}

/** The channel was scrubbed while the operation was waiting (or before it started). */
export class ChannelAborted extends CircuitError {
  constructor(message = "channel was scrubbed", options?: { cause?: unknown }) {
    super("ChannelAborted", message, options);
  }
}

/** The anchor already holds an element. */
export class AnchorBusy extends CircuitError {
  constructor(message = "anchor already holds an element", options?: { cause?: unknown }) {
    super("AnchorBusy", message, options);
  }
}

/** No element (or no server) at the path. */
export class NotFound extends CircuitError {
  constructor(message = "not found", options?: { cause?: unknown }) {
    super("NotFound", message, options);
  }
}

/** The element at the path is of another kind than the operation needs. */
export class WrongKind extends CircuitError {
  constructor(message = "wrong element kind", options?: { cause?: unknown }) {
    super("WrongKind", message, options);
  }
}

/** The server hosting the element is gone (connection lost, daemon stopped or dead). */
export class ServerGone extends CircuitError {
  constructor(message = "server is gone", options?: { cause?: unknown }) {
    super("ServerGone", message, options);
  }
}

/** An encoded value (or frame) is larger than the limit; nothing was sent. */
export class MessageTooLarge extends CircuitError {
  constructor(message = "message too large", options?: { cause?: unknown }) {
    super("MessageTooLarge", message, options);
  }
}

/** A process could not be started. */
export class SpawnFailed extends CircuitError {
  constructor(message = "spawn failed", options?: { cause?: unknown }) {
    super("SpawnFailed", message, options);
  }
}

/** An unknown signal name. */
export class BadSignal extends CircuitError {
  constructor(message = "unknown signal", options?: { cause?: unknown }) {
    super("BadSignal", message, options);
  }
}

/** The peer refused our key, or we refused theirs. */
export class AuthFailed extends CircuitError {
  constructor(message = "authentication failed", options?: { cause?: unknown }) {
    super("AuthFailed", message, options);
  }
}

/** The peer sent something the protocol does not allow (bad frame, unknown op, bad argument). */
export class ProtocolError extends CircuitError {
  constructor(message = "protocol error", options?: { cause?: unknown }) {
    super("ProtocolError", message, options);
  }
}

/** A deadline passed (dial, handshake, a `--timeout`). */
export class Timeout extends CircuitError {
  constructor(message = "timed out", options?: { cause?: unknown }) {
    super("Timeout", message, options);
  }
}

/** A byte stream message ended without its end marker (its sender died or gave up). */
export class StreamBroken extends CircuitError {
  constructor(message = "stream ended without its end marker", options?: { cause?: unknown }) {
    super("StreamBroken", message, options);
  }
}

/** The server refuses the operation: a file outside its file root, or file access not enabled. */
export class AccessDenied extends CircuitError {
  constructor(message = "access denied", options?: { cause?: unknown }) {
    super("AccessDenied", message, options);
  }
}

/** This server (or this circuit) cannot do what was asked, e.g. limits on a host without cgroups. */
export class Unsupported extends CircuitError {
  constructor(message = "unsupported", options?: { cause?: unknown }) {
    super("Unsupported", message, options);
  }
}

/**
 * The circuit's shared store (DESIGN §12) did not answer or refused: operations under /@ fail with
 * this within the store's request bound instead of waiting. Ordinary elements are not affected.
 */
export class StoreUnavailable extends CircuitError {
  constructor(message = "the shared store is unavailable", options?: { cause?: unknown }) {
    super("StoreUnavailable", message, options);
  }
}

/** A nameserver's address (or port) is taken on its host. */
export class AddressInUse extends CircuitError {
  constructor(message = "address in use", options?: { cause?: unknown }) {
    super("AddressInUse", message, options);
  }
}

/** An address that is not one of the host's, or that cannot be listened on. */
export class BadAddress extends CircuitError {
  constructor(message = "bad address", options?: { cause?: unknown }) {
    super("BadAddress", message, options);
  }
}

/**
 * No live server has the free capacity a placement asks for (docs/design.md, placement), or the
 * server holds as many of this connection's channels as its --max-channels allows.
 */
export class NoCapacity extends CircuitError {
  constructor(message = "no live server has room for that request", options?: { cause?: unknown }) {
    super("NoCapacity", message, options);
  }
}

/** The disk holding a durable channel's store is full: the send did not happen; nothing stored is lost. */
export class StorageFull extends CircuitError {
  constructor(message = "storage full", options?: { cause?: unknown }) {
    super("StorageFull", message, options);
  }
}

const classes: Partial<Record<ErrorCode, new (message?: string) => CircuitError>> = {
  ChannelClosed,
  ChannelAborted,
  AnchorBusy,
  NotFound,
  WrongKind,
  ServerGone,
  MessageTooLarge,
  SpawnFailed,
  BadSignal,
  AuthFailed,
  ProtocolError,
  Timeout,
  StreamBroken,
  AccessDenied,
  Unsupported,
  StoreUnavailable,
  AddressInUse,
  BadAddress,
  NoCapacity,
  StorageFull,
};

/** The wire form of an error. */
export interface WireError {
  code: ErrorCode;
  message: string;
}

export function toWire(err: unknown): WireError {
  if (err instanceof CircuitError) return { code: err.code, message: err.message };
  if (err instanceof RangeError || err instanceof TypeError) {
    return { code: "ProtocolError", message: err.message };
  }
  return { code: "Internal", message: err instanceof Error ? err.message : String(err) };
}

/** Rebuilds the class an error had on the other side; unknown codes become a plain CircuitError. */
export function fromWire(w: unknown): CircuitError {
  const o = (typeof w === "object" && w !== null ? w : {}) as Partial<WireError>;
  const message = typeof o.message === "string" ? o.message : "unknown error";
  const code = o.code as string | undefined;
  if (!isErrorCode(code)) return new CircuitError("Internal", code ? `${code}: ${message}` : message);
  const C = classes[code];
  return C ? new C(message) : new CircuitError(code, message);
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code);
}
