// circuit start's work: check the options, start the daemon, print its URL, serve until stopped.
// Loaded by start.ts only when `start` runs, as an ES module of its own (outside the command line's
// bundle): it and the daemon share one copy of every module, and it reports its own errors.

import { accessSync, constants } from "node:fs";
import { loadKey, parseGroup } from "../client/keys.js";
import { serviceConnector } from "../client/service-remote.js";
import { Daemon, parseAddr } from "../daemon/daemon.js";
import { DataDirBusy } from "../daemon/data-dir.js";
import { StoreUnreadable } from "../daemon/durable-store.js";
import { createLogger, parseLogLevel } from "../daemon/logger.js";
import { parseStoreUrl } from "../daemon/store-config.js";
import { StoreUnavailable } from "../errors.js";
import type { Logger } from "../util/log.js";
import { isLoopback, parseHostPort, parseUrl } from "../wire/url.js";
import { keyOption, report, UsageError } from "./common.js";

/** The options of `circuit start`, as commander parses them (src/cli/start.ts declares them). */
export interface StartOptions {
  addr: string;
  join?: string[];
  advertise?: string;
  data?: string;
  maxValue: string;
  acceptKey?: string[];
  insecure?: boolean;
  handshakeMs: string;
  idleMs: string;
  forgetClientsMs: string;
  maxConnections: string;
  maxPending: string;
  maxCredits: string;
  maxStreams: string;
  maxChannels: string;
  maxSelectCases: string;
  maxDepth: string;
  maxName: string;
  subBuffer: string;
  maxUnsent: string;
  fsRoot?: string;
  cgroups: boolean;
  store?: string;
  storeTlsCa?: string;
  storeCreds?: string;
  logLevel: string;
  http?: string;
}

/** Runs the daemon until it stops; a bad option or a failed start is reported here, with its exit code. */
export async function runStart(
  o: StartOptions,
  g: { key?: string; discover?: string; json?: boolean },
  /** Called once the daemon is up, just before its URL is written. */
  ready: () => void = () => {},
): Promise<void> {
  try {
    await serve(o, g, ready);
  } catch (err) {
    process.exitCode = report(err);
  }
}

async function serve(
  o: StartOptions,
  g: { key?: string; discover?: string; json?: boolean },
  ready: () => void,
): Promise<void> {
  const discover = g.discover ?? process.env.CIRCUIT_DISCOVER?.trim();
  if (discover) {
    try {
      parseGroup(discover);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const key = await keyOption(g);
  let acceptKeys: Buffer[] = [];
  try {
    acceptKeys = (o.acceptKey ?? []).map(loadKey);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (acceptKeys.length > 0 && !key) throw new UsageError("--accept-key needs --key: the key to move to");
  const advertise = o.advertise ?? (process.env.CIRCUIT_ADVERTISE?.trim() || undefined);
  try {
    for (const j of o.join ?? []) parseUrl(j);
    parseAddr(o.addr);
    if (advertise !== undefined) parseHostPort(advertise, 0);
    if (o.store !== undefined) parseStoreUrl(o.store);
    for (const f of [o.storeTlsCa, o.storeCreds]) if (f !== undefined) accessSync(f, constants.R_OK);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((o.storeTlsCa || o.storeCreds) && !o.store) throw new UsageError("--store-tls-ca and --store-creds need --store");
  const whole = (flag: string, v: string): number => {
    if (!/^\d{1,10}$/.test(v) || Number(v) < 1) throw new UsageError(`${flag} takes a positive whole number`);
    return Number(v);
  };
  const idleMs = whole("--idle-ms", o.idleMs);
  const forgetClientsMs = whole("--forget-clients-ms", o.forgetClientsMs);
  const maxConnections = whole("--max-connections", o.maxConnections);
  const limits = {
    pending: whole("--max-pending", o.maxPending),
    credits: whole("--max-credits", o.maxCredits),
    streams: whole("--max-streams", o.maxStreams),
    handles: whole("--max-channels", o.maxChannels),
    selectCases: whole("--max-select-cases", o.maxSelectCases),
    depth: whole("--max-depth", o.maxDepth),
    nameLength: whole("--max-name", o.maxName),
    subBuffer: whole("--sub-buffer", o.subBuffer),
    unsent: whole("--max-unsent", o.maxUnsent),
  };
  if (limits.nameLength > 128) throw new UsageError("--max-name is at most 128");
  if (limits.depth < 2) throw new UsageError("--max-depth is at least 2");
  const handshakeMs = Number(o.handshakeMs);
  if (!/^\d+$/.test(o.handshakeMs) || handshakeMs < 1)
    throw new UsageError("--handshake-ms takes a positive whole number");
  const maxValue = Number(o.maxValue);
  if (!Number.isInteger(maxValue) || maxValue < 1) throw new UsageError("--max-value takes a positive whole number");
  let log: Logger;
  try {
    log = createLogger({ level: parseLogLevel(o.logLevel) });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let http: { host: string; port: number } | undefined;
  if (o.http !== undefined) {
    try {
      http = parseHostPort(o.http);
    } catch (err) {
      throw new UsageError(`--http: ${(err as Error).message}`);
    }
  }
  if (http && !isLoopback(http.host) && !key && !o.insecure) {
    throw new UsageError(
      `refusing to serve --http on ${o.http} without a cluster key: anyone who can reach it could read the circuit; use --key FILE, or --insecure`,
    );
  }
  const loopback = isLoopback(parseAddr(o.addr).host);
  if (!loopback && !key) {
    if (!o.insecure) {
      throw new UsageError(
        `refusing to listen on ${o.addr} without a cluster key: use --key FILE (see circuit keygen), or --insecure`,
      );
    }
    log.warn(
      { event: "insecure", addr: o.addr },
      `listening on ${o.addr} with no cluster key: anyone who can reach it can use and stop this server`,
    );
  }
  let d: Daemon;
  try {
    d = await Daemon.start({
      addr: o.addr,
      maxValue,
      join: o.join,
      advertise,
      data: o.data,
      key,
      acceptKeys,
      handshakeMs,
      idleMs,
      forgetClientsMs,
      maxConnections,
      limits,
      discover,
      fsRoot: o.fsRoot,
      insecure: o.insecure === true,
      cgroups: o.cgroups,
      store: o.store ? { url: o.store, tlsCa: o.storeTlsCa, creds: o.storeCreds } : undefined,
      log,
      connect: serviceConnector({ key }),
    });
  } catch (err) {
    if (err instanceof TypeError) throw new UsageError(err.message);
    if (err instanceof DataDirBusy || err instanceof StoreUnreadable || err instanceof StoreUnavailable)
      throw new Error(err.message);
    throw err;
  }
  if (http) {
    try {
      // Loaded only when asked for: prom-client and the dashboard cost a daemon without --http nothing.
      const { serveHttp } = await import("../http/server.js");
      await serveHttp(d, { ...http, key });
    } catch (err) {
      await d.stop();
      throw new Error(`--http ${o.http}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  // Graceful on SIGTERM from the moment anyone can know the URL: a supervisor may signal at once.
  const stop = () => void d.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  ready();
  // The first line is the URL (with --json, one line of JSON holding it), whatever else follows.
  process.stdout.write(g.json ? `${JSON.stringify({ url: d.url, id: d.id })}\n` : `${d.url}\n`);
  await d.done;
}
