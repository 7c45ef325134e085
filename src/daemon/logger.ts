// The daemon's logger (DESIGN.md §13): pino, one line per event with time, level and fields.
// On a pipe or file each line is JSON; on a terminal it is text a person reads. Writes are
// synchronous: events are rare (never one per message), and a line must not be lost when the
// daemon exits right after writing it.

import pino from "pino";
import { LOG_LEVELS, type LogFields, type Logger, type LogLevel } from "../util/log.js";

export interface LoggerOptions {
  /** Least severe level written; default "info". */
  level?: LogLevel;
  /** Text for a person (true) or JSON lines (false); default: text when stderr is a terminal. */
  pretty?: boolean;
  /** Where lines go; default stderr (fd 2). */
  write?: (line: string) => void;
}

export function parseLogLevel(v: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new TypeError(`--log-level is one of ${LOG_LEVELS.join(", ")}`);
  }
  return v as LogLevel;
}

const SHOWN: Record<string, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

/** One JSON line as pino wrote it, as text: `12:00:01.234 INFO  msg  key=value …`. */
export function formatText(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, ...rest } = o;
  const t = typeof time === "string" ? time.slice(11, 23) : "";
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "string" && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`)
    .join(" ");
  return `${t} ${SHOWN[String(level)] ?? String(level)} ${String(msg ?? "")}${fields ? `  ${fields}` : ""}\n`;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const pretty = opts.pretty ?? process.stderr.isTTY === true;
  const write = opts.write;
  const dest = write
    ? { write: (s: string) => write(pretty ? formatText(s) : s) }
    : pretty
      ? { write: (s: string) => process.stderr.write(formatText(s)) }
      : pino.destination({ dest: 2, sync: true });
  const p = pino(
    {
      level: opts.level ?? "info",
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  return {
    debug: (f: LogFields, m: string) => p.debug(f, m),
    info: (f: LogFields, m: string) => p.info(f, m),
    warn: (f: LogFields, m: string) => p.warn(f, m),
    error: (f: LogFields, m: string) => p.error(f, m),
  };
}
