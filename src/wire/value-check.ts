// What a channel value may be (DESIGN §3.1): only what comes back exactly as it was sent, with the
// codec settings of protocol.ts. A value that would come back changed (a Map as an object, a
// Float32Array as a Buffer, a lone surrogate as U+FFFD, -0 as 0) or not at all (a function, a
// bigint beyond 64 bits, nesting the decoder's stack cannot take) is refused before anything is
// sent, with the path to the part at fault.
//
// Carried exactly: null, undefined, booleans, numbers other than -0 (NaN and ±Infinity included),
// well-formed strings, bigints from -2^63 to 2^64-1, Dates, Uint8Arrays (a Buffer comes back; it is
// one), arrays without holes and plain objects (prototype Object.prototype or null; they come back
// with Object.prototype) with well-formed string keys other than "__proto__", nested at most
// MAX_DEPTH arrays and objects deep. As in JSON, an object's value is its own enumerable string-keyed
// properties: symbol-keyed and non-enumerable ones are not part of it (and are not looked for).
// One recursive walk, no allocation unless something is wrong.

/** Arrays and objects inside one another, at most (msgpackr's decoder overflows the stack near 2,000). */
export const MAX_DEPTH = 512;

declare global {
  interface String {
    /** ES2024; Node 20 has it. */
    isWellFormed(): boolean;
  }
}

const MIN_INT64 = -(2n ** 63n);
const MAX_UINT64 = 2n ** 64n - 1n;

/** What is wrong, and where: the path is collected on the way back up. */
class Fault {
  readonly path: (string | number)[] = [];
  constructor(
    readonly range: boolean,
    readonly why: string,
  ) {}
}

/**
 * Throws a TypeError (a kind of value that cannot travel) or RangeError (out of range: -0, a bigint
 * beyond 64 bits, nesting deeper than MAX_DEPTH) naming where in `value` the problem is.
 */
export function checkValue(value: unknown, name = "value"): void {
  const f = walk(value, 0);
  if (!f) return;
  const msg = `${formatPath(name, f.path.reverse())} ${f.why}`;
  throw f.range ? new RangeError(msg) : new TypeError(msg);
}

function walk(v: unknown, depth: number): Fault | undefined {
  switch (typeof v) {
    case "number":
      return v === 0 && 1 / v < 0 ? new Fault(true, "is -0, which would come back as 0") : undefined;
    case "string":
      return v.isWellFormed() ? undefined : loneSurrogate(v, "is a string");
    case "boolean":
    case "undefined":
      return undefined;
    case "bigint":
      return v < MIN_INT64 || v > MAX_UINT64
        ? new Fault(true, "is a bigint beyond 64 bits (MessagePack carries -2^63 to 2^64-1)")
        : undefined;
    case "function":
      return new Fault(false, "is a function, which cannot be sent");
    case "symbol":
      return new Fault(false, "is a symbol, which cannot be sent");
  }
  if (v === null) return undefined;
  const o = v as object;
  if (depth >= MAX_DEPTH) {
    return new Fault(true, `is nested deeper than ${MAX_DEPTH} arrays and objects (a circular reference?)`);
  }
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) {
    const r = o as Record<string, unknown>;
    for (const k in r) {
      if (k === "__proto__") return new Fault(false, `has a key "__proto__", which would not come back as one`);
      if (!k.isWellFormed()) return loneSurrogate(k, "has a key");
      const x = r[k];
      // Most leaves are short strings and plain numbers: no call for them.
      if ((typeof x === "number" && x !== 0) || x === null || typeof x === "boolean") continue;
      const f = walk(x, depth + 1);
      if (f) {
        f.path.push(k);
        return f;
      }
    }
    return undefined;
  }
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) {
      const x: unknown = o[i];
      if ((typeof x === "number" && x !== 0) || x === null || typeof x === "boolean") continue;
      const f =
        x === undefined && !(i in o)
          ? new Fault(false, "is a hole in a sparse array, which would come back as undefined")
          : walk(x, depth + 1);
      if (f) {
        f.path.push(i);
        return f;
      }
    }
    return undefined;
  }
  if (o instanceof Uint8Array || o instanceof Date) return undefined;
  return new Fault(false, whatItIs(o));
}

function loneSurrogate(s: string, what: string): Fault {
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) break;
  }
  return new Fault(false, `${what} with a lone surrogate at index ${i}, which would come back as U+FFFD`);
}

function whatItIs(o: object): string {
  if (o instanceof Map) return "is a Map, which would come back as a plain object: send an object or an array of pairs";
  if (o instanceof Set) return "is a Set, which would come back as an array: send an array";
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof SharedArrayBuffer) {
    const name = o.constructor?.name ?? "binary view";
    return `is a ${name}, which would come back as a Buffer of its bytes: send a Uint8Array`;
  }
  const name = typeof o.constructor === "function" && o.constructor.name ? o.constructor.name : "object";
  return `is a ${name}, not a plain object, array, Date or Uint8Array: it would not come back as one`;
}

/** `value.jobs[3].tags`; a long path keeps its ends. */
function formatPath(name: string, path: (string | number)[]): string {
  const part = (p: string | number) =>
    typeof p === "number" ? `[${p}]` : /^[A-Za-z_$][\w$]*$/.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`;
  if (path.length <= 12) return name + path.map(part).join("");
  return `${name}${path.slice(0, 4).map(part).join("")}…(${path.length - 8} more)…${path.slice(-4).map(part).join("")}`;
}
