// One base error with a stable string code, one subclass per condition a caller branches on.
// Errors cross the wire as { code, message } and are rebuilt here as the same class. This module is
// a leaf: every layer may import it.

export class CircuitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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

const classes: Record<string, new (message?: string) => CircuitError> = {
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
};

/** The wire form of an error. */
export interface WireError {
  code: string;
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
  const code = typeof o.code === "string" ? o.code : "Internal";
  const message = typeof o.message === "string" ? o.message : "unknown error";
  const C = classes[code];
  return C ? new C(message) : new CircuitError(code, message);
}
