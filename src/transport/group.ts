// A discovery group's address (GROUP:PORT), apart from the discovery code itself: checking one is
// all a command or program needs before it dials, and discovery.ts brings node:dgram with it.

export interface GroupAddr {
  group: string;
  port: number;
}

/** Splits GROUP:PORT; the group must be an IPv4 multicast address. */
export function parseGroup(spec: string): GroupAddr {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(spec.trim());
  const first = m ? Number((m[1] as string).split(".")[0]) : 0;
  const port = m ? Number(m[2]) : 0;
  if (!m || first < 224 || first > 239 || port < 1 || port > 65535) {
    throw new TypeError(
      `bad discovery address ${JSON.stringify(spec)}: expected GROUP:PORT with a multicast group (224.0.0.0–239.255.255.255)`,
    );
  }
  return { group: m[1] as string, port };
}
