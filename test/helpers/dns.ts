// What the nameserver tests share: running the CLI against a daemon, and checking that a port is free.

import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import * as net from "node:net";
import { type Client, dial, Nameserver } from "../../src/index.ts";
import { type CliResult, type Daemon, runCli } from "./daemon.ts";

export const LOOPBACK_ADDR = /^127\.0\.0\.1:\d+$/;

export function cli(d: Daemon, args: string[]): Promise<CliResult> {
  return runCli(["-d", d.url, ...args], { timeoutMs: 30_000 });
}

/** Runs the CLI and asserts exit 0; resolves with its stdout. */
export async function ok(d: Daemon, args: string[]): Promise<string> {
  const r = await cli(d, args);
  assert.equal(r.code, 0, `circuit ${args.join(" ")}: exit ${r.code}; stderr: ${r.stderr}`);
  return r.stdout.toString();
}

export const portOf = (addr: string): number => Number(addr.slice(addr.lastIndexOf(":") + 1));

/** Both TCP and UDP on 127.0.0.1:port can be bound again: nothing listens there any more. */
export async function portIsFree(port: number): Promise<void> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve());
  });
  const sock = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(port, "127.0.0.1", () => resolve());
    });
  } finally {
    sock.close();
    await new Promise<void>((r) => srv.close(() => r()));
  }
}

/** Runs fn with a library client of the daemon (quicker than a CLI process on a loaded machine). */
export async function withLib<T>(d: Daemon, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await dial(d.url);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Sets records through the library on the nameserver at path. */
export function setAll(d: Daemon, path: string, rrs: string[]): Promise<void> {
  return withLib(d, async (c) => {
    const ns = await c.walk(path).get();
    assert.ok(ns instanceof Nameserver, `${path} holds a nameserver`);
    for (const rr of rrs) await ns.set(rr);
  });
}
