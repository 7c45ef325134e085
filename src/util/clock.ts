// The clock for timeouts, intervals and ages. Node's global `performance` loads perf_hooks the
// first time it is touched (about a millisecond, paid by every command of the CLI that dials);
// process.uptime() reads the same monotonic clock with nothing to load. Every module in src/ uses
// this one, so readings taken in one module compare with readings taken in another.

/** Milliseconds on a monotonic clock, counted from about the start of the process. */
export function monotonicMs(): number {
  return process.uptime() * 1000;
}

/** The wall-clock time (milliseconds since the epoch) when monotonicMs() read `ms`. */
export function wallMsAt(ms: number): number {
  return Date.now() - (monotonicMs() - ms);
}
