// The logger every layer writes events to (DESIGN.md §13): one call per event, with a short
// message and fields a machine can filter on. Only this interface lives here; the daemon's
// implementation (pino: JSON on a pipe, readable text on a terminal) is src/daemon/logger.ts, so
// that the cluster layer and tests can log without knowing where lines go.
//
// Conventions: `event` names what happened ("join", "leave", "suspect", "handshake-refused",
// "protocol-error", "remote-stop", "proc-start", "proc-exit", "join-failed", …); `peer` is a
// network address, `server` a server ID, `path` an element. Nothing is ever logged per message.

export type LogFields = Record<string, unknown>;

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

export interface Logger {
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
}

/** Drops everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * A logger that hands each event's message to `write` as one `circuit: MESSAGE` line, fields
 * left out (for tests, and for library users who want plain lines). Debug events are dropped.
 */
export function lineLogger(write: (line: string) => void): Logger {
  const say = (_f: LogFields, msg: string) => write(`circuit: ${msg}`);
  return { debug() {}, info: say, warn: say, error: say };
}
