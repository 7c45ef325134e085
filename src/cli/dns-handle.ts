// Resolves PATH to a nameserver handle for set and unset.

import type { Client } from "../client/client.js";
import type { Nameserver } from "../client/nameserver.js";
import { NotFound, WrongKind } from "../errors.js";

export async function nameserverAt(c: Client, path: string): Promise<Nameserver> {
  const el = await c.walk(path).get();
  if (!el) throw new NotFound(`${path} holds no element`);
  if (el.kind !== "dns") throw new WrongKind(`${path} holds a ${el.kind}, not a nameserver`);
  return el;
}
