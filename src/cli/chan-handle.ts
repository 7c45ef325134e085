// Resolves PATH to a channel handle for the channel commands.

import type { Chan } from "../client/chan.js";
import type { Client } from "../client/client.js";
import type { ReplicatedChan } from "../client/replicated-chan.js";
import type { Subscription } from "../client/subscription.js";
import { NotFound, WrongKind } from "../errors.js";

export async function chanAt(c: Client, path: string): Promise<Chan | ReplicatedChan> {
  const el = await c.walk(path).get();
  if (!el) throw new NotFound(`${path} holds no element`);
  if (el.kind !== "chan") throw new WrongKind(`${path} holds a ${el.kind}, not a channel`);
  return el;
}

/** A channel or a subscription: something to receive from. */
export async function receivableAt(c: Client, path: string): Promise<Chan | ReplicatedChan | Subscription> {
  const el = await c.walk(path).get();
  if (!el) throw new NotFound(`${path} holds no element`);
  if (el.kind === "server") throw new WrongKind(`${path} is a server, not a channel`);
  if (el.kind === "proc") throw new WrongKind(`${path} is a process, not a channel`);
  if (el.kind === "dns") throw new WrongKind(`${path} is a nameserver, not a channel`);
  if (el.kind === "svc") throw new WrongKind(`${path} is a service, not a channel`);
  return el;
}
