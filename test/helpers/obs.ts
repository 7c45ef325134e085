// Reading what a daemon logs (JSON lines on its stderr, src/daemon/logger.ts) and where it serves
// HTTP (`start --http`).
import type { Daemon } from "./daemon.ts";

export type LogEvent = Record<string, unknown> & { level: string; time: string; msg: string; event?: string };

/** Every JSON line of `stderr`; a line that is not JSON fails the test (the daemon logs JSON on a pipe). */
export function logEvents(stderr: string): LogEvent[] {
  return stderr
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => {
      try {
        return JSON.parse(l) as LogEvent;
      } catch {
        throw new Error(`not a JSON log line: ${JSON.stringify(l)}`);
      }
    });
}

/** Waits until the daemon has logged an event matching `pred`; fails after `ms` with the log. */
export async function waitEvent(d: Daemon, pred: (e: LogEvent) => boolean, ms = 10_000): Promise<LogEvent> {
  const until = Date.now() + ms;
  for (;;) {
    const e = logEvents(d.stderr()).find(pred);
    if (e) return e;
    if (Date.now() > until) throw new Error(`no such log event within ${ms} ms; the log:\n${d.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** http://HOST:PORT/ the daemon serves /metrics and the dashboard on. */
export async function httpUrl(d: Daemon): Promise<string> {
  return (await waitEvent(d, (e) => e.event === "http", 5000)).url as string;
}
