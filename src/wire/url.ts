// Addresses as users write them: circuit URLs (`circuit://HOST:PORT[/XID]`) and HOST[:PORT]
// options. The one parser and printer of both, so that an IPv6 address is bracketed the same way
// everywhere: `circuit://[fd00::1]:7711/X…`, `--addr [::]:7711`.

/** Where a client dials when told nothing else (the CLI's default; `circuit start` listens there). */
export const DEFAULT_URL = "circuit://127.0.0.1:7711";

export interface CircuitUrl {
  /** Host name or IP address, without brackets. */
  host: string;
  port: number;
  /** The server ID, when the URL names one. */
  id?: string;
}

const URL_RE = /^circuit:\/\/(?:\[([0-9A-Fa-f:.]+)\]|([^/:[\]\s]+)):(\d{1,5})(?:\/(X[0-9a-f]{16}))?\/?$/;

/** Splits `circuit://HOST:PORT[/XID]`. Throws TypeError for anything else. */
export function parseUrl(url: string): CircuitUrl {
  const m = typeof url === "string" ? URL_RE.exec(url.trim()) : null;
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new TypeError(
      `bad circuit URL ${JSON.stringify(url)}: expected circuit://HOST:PORT or circuit://HOST:PORT/XID` +
        " (an IPv6 address in brackets: circuit://[fd00::1]:7711)",
    );
  }
  return { host: (m[1] ?? m[2]) as string, port, ...(m[4] ? { id: m[4] } : {}) };
}

/** A host as it appears before `:PORT`: IPv6 addresses in brackets. */
export function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** `circuit://HOST:PORT` or `circuit://HOST:PORT/XID`, with an IPv6 host in brackets. */
export function formatUrl(host: string, port: number, id?: string): string {
  return `circuit://${formatHost(host)}:${port}${id ? `/${id}` : ""}`;
}

/**
 * Splits `HOST:PORT`, `[V6]:PORT`, and — when `defaultPort` is given — also `HOST`, `[V6]` or a
 * bare IPv6 address. Throws TypeError naming what is wrong.
 */
export function parseHostPort(spec: string, defaultPort?: number): { host: string; port: number } {
  const bad = (why: string) =>
    new TypeError(
      `bad address ${JSON.stringify(spec)}: ${why} (expected HOST${defaultPort === undefined ? "" : "[:PORT]"}, IPv6 as [::1]${defaultPort === undefined ? ":PORT" : "[:PORT]"})`,
    );
  const s = typeof spec === "string" ? spec.trim() : "";
  let host: string;
  let port: string | undefined;
  const v6 = /^\[([^\]]*)\](?::(\d*))?$/.exec(s);
  if (v6) {
    host = v6[1] as string;
    port = v6[2];
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || !host.includes(":")) throw bad("not an IPv6 address in brackets");
  } else if ((s.match(/:/g)?.length ?? 0) > 1) {
    // Two colons or more without brackets: a bare IPv6 address, which cannot carry a port.
    host = s;
    if (!/^[0-9A-Fa-f:.]+$/.test(host)) throw bad("not an IPv6 address");
  } else {
    const i = s.lastIndexOf(":");
    host = i < 0 ? s : s.slice(0, i);
    port = i < 0 ? undefined : s.slice(i + 1);
    if (!/^[A-Za-z0-9._-]+$/.test(host)) throw bad("no host");
  }
  if (port === undefined) {
    if (defaultPort === undefined) throw bad("no port");
    return { host, port: defaultPort };
  }
  const n = Number(port);
  if (!/^\d{1,5}$/.test(port) || n > 65535) throw bad("the port is a number 0 to 65535");
  return { host, port: n };
}

/** True for the addresses that mean "every interface": 0.0.0.0, ::, and their spellings. */
export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || /^[0:]+$/.test(host) || host === "::ffff:0.0.0.0" || host === "";
}

/** True for loopback names and addresses (127/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.") || host === "::ffff:127.0.0.1";
}
