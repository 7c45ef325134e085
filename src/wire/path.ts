// Path syntax of the circuit's tree: `/XID/name/name…`. Names are 1 to 128 of [A-Za-z0-9._-@],
// not dots alone; the first name is a server ID.

const NAME = /^[A-Za-z0-9._@-]{1,128}$/;
const SERVER_ID = /^X[0-9a-f]{16}$/;

/** Checks one anchor name; returns a reason when it is not valid. */
export function badName(name: string): string | undefined {
  if (!NAME.test(name)) return `bad anchor name ${JSON.stringify(name)}: use 1 to 128 of A-Z a-z 0-9 . _ - @`;
  if (/^\.+$/.test(name)) return `bad anchor name ${JSON.stringify(name)}: dots alone are not a name`;
  return undefined;
}

export function isServerId(s: string): boolean {
  return SERVER_ID.test(s);
}

/**
 * Splits an absolute path into names: "/" → [], "/X…/a/b" → ["X…", "a", "b"]. The first name must be
 * a server ID. Throws TypeError with the reason for anything else.
 */
export function parsePath(path: string | readonly string[]): string[] {
  let names: string[];
  if (typeof path === "string") {
    if (!path.startsWith("/")) throw new TypeError(`bad path ${JSON.stringify(path)}: it must start with /`);
    const trimmed = path.length > 1 && path.endsWith("/") && !path.endsWith("//") ? path.slice(0, -1) : path;
    names = trimmed === "/" ? [] : trimmed.slice(1).split("/");
  } else if (Array.isArray(path)) {
    names = [...path];
  } else {
    throw new TypeError("a path is a string or an array of names");
  }
  for (const n of names) {
    if (typeof n !== "string") throw new TypeError("a path is a string or an array of names");
    const why = badName(n);
    if (why) throw new TypeError(`bad path ${JSON.stringify(formatPath(names))}: ${why}`);
  }
  // `/@/…` is the circuit-wide tree (DESIGN §12), hosted wherever its elements' leases say.
  if (names.length > 0 && !isServerId(names[0] as string) && names[0] !== "@") {
    throw new TypeError(
      `bad path ${JSON.stringify(formatPath(names))}: it must start with a server ID like /X3f9c0a1be2d47780, or /@`,
    );
  }
  if (names.length > 64) throw new TypeError("bad path: more than 64 names deep");
  return names;
}

export function formatPath(names: readonly string[]): string {
  return `/${names.join("/")}`;
}
