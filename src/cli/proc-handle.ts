// Resolves PATH to a process handle for the process commands.

import type { Client } from "../client/client.js";
import type { Proc } from "../client/proc.js";
import type { ServerHandle } from "../client/server-handle.js";
import { NotFound, WrongKind } from "../errors.js";

export async function procAt(c: Client, path: string): Promise<Proc> {
  const el = await c.walk(path).get();
  if (!el) throw new NotFound(`${path} holds no element`);
  if (el.kind !== "proc") throw new WrongKind(`${path} holds a ${el.kind}, not a process`);
  return el;
}

export async function serverAt(c: Client, path: string): Promise<ServerHandle> {
  const el = await c.walk(path).get();
  if (el?.kind !== "server") throw new WrongKind(`${path} is not a server`);
  return el;
}
