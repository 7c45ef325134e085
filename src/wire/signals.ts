// Signal names as they cross the wire. Both ends accept POSIX names with or without the SIG prefix,
// in any case; the wire carries the canonical "SIGTERM" form. The hosting server maps the name to
// its own number (numbers differ between platforms, names do not).

const NAMES = new Set([
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGIOT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPOLL",
  "SIGPWR",
  "SIGSYS",
  "SIGINFO",
  "SIGEMT",
]);

/** "term", "TERM", "SIGTERM" → "SIGTERM"; undefined for anything that is not a known signal name. */
export function signalName(name: unknown): string | undefined {
  if (typeof name !== "string" || name.length > 16) return undefined;
  const up = name.toUpperCase();
  const full = up.startsWith("SIG") ? up : `SIG${up}`;
  return NAMES.has(full) ? full : undefined;
}
