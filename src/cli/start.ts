// circuit start: run a daemon in the foreground; its URL is the first line on stdout.

import { accessSync, constants } from "node:fs";
import type { Command } from "commander";
import type { Daemon } from "../daemon/daemon.js";
import { DEFAULT_LIMITS } from "../daemon/limits.js";
import { StoreUnavailable } from "../errors.js";
import type { Logger } from "../util/log.js";
import { isLoopback, parseHostPort, parseUrl } from "../wire/url.js";
import { keyOption, UsageError } from "./common.js";

interface StartOptions {
  addr: string;
  join?: string[];
  advertise?: string;
  data?: string;
  maxValue: string;
  acceptKey?: string[];
  insecure?: boolean;
  handshakeMs: string;
  idleMs: string;
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

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

export function register(program: Command): void {
  program
    .command("start")
    .description("run a daemon (default 127.0.0.1:7711); the first stdout line is its URL")
    .option("--addr <host:port>", "address to listen on (port 0 picks a free port)", "127.0.0.1:7711")
    .option("--join <url>", "join the circuit of this server; repeatable (any one that answers suffices)", collect)
    .option(
      "--advertise <host[:port]>",
      "address other machines reach this server at (env CIRCUIT_ADVERTISE; default: worked out, never 0.0.0.0 or ::)",
    )
    .option("--data <dir>", "keep the server's ID in this directory across restarts (one daemon per directory)")
    .option("--max-value <bytes>", "largest encoded value accepted", String(16 * 1024 * 1024))
    .option("--accept-key <file>", "also accept this (old) key during a key rollover; repeatable", collect)
    .option("--insecure", "allow non-loopback addresses (the daemon's, its nameservers') without a cluster key")
    .option("--handshake-ms <ms>", "close connections that have not authenticated by then", "10000")
    .option("--idle-ms <ms>", "close client connections that send nothing for this long", "60000")
    .option("--max-connections <n>", "most connections served at once", "4096")
    .option("--max-pending <n>", "blocked operations one connection may have", String(DEFAULT_LIMITS.pending))
    .option("--max-credits <n>", "receives one receiver may have outstanding", String(DEFAULT_LIMITS.credits))
    .option("--max-streams <n>", "byte streams one connection may have open", String(DEFAULT_LIMITS.streams))
    .option("--max-channels <n>", "channels one connection may have open", String(DEFAULT_LIMITS.handles))
    .option("--max-select-cases <n>", "cases in one select", String(DEFAULT_LIMITS.selectCases))
    .option("--max-depth <n>", "names in a path", String(DEFAULT_LIMITS.depth))
    .option("--max-name <n>", "characters in an anchor name (at most 128)", String(DEFAULT_LIMITS.nameLength))
    .option("--sub-buffer <n>", "events a subscription keeps", String(DEFAULT_LIMITS.subBuffer))
    .option("--max-unsent <bytes>", "bytes queued for a peer that does not read", String(DEFAULT_LIMITS.unsent))
    .option("--fs-root <dir>", "let clients read and write files under this directory (off by default)")
    .option(
      "--store <nats://host:port,...>",
      "share circuit-wide anchors (/@) through this NATS JetStream cluster (DESIGN §12)",
    )
    .option("--store-tls-ca <file>", "PEM CA file that signed the store's NATS server certificates (TLS)")
    .option("--store-creds <file>", "NATS credentials file for the store connection")
    .option("--log-level <level>", "least severe event logged: trace, debug, info, warn, error, fatal, silent", "info")
    .option("--http <host:port>", "serve /metrics and the dashboard here (loopback unless told otherwise)")
    .option("--no-cgroups", "do not put processes in cgroups (process groups only; mkproc limits fail)")
    .action(async (o: StartOptions, cmd: Command) => {
      // Loaded here, not at the top: every other command runs without the daemon's code.
      const [
        { Daemon, parseAddr },
        { DataDirBusy },
        { loadKey, parseGroup },
        { serviceConnector },
        { StoreUnreadable },
        { createLogger, parseLogLevel },
        { parseStoreUrl },
      ] = await Promise.all([
        import("../daemon/daemon.js"),
        import("../daemon/data-dir.js"),
        import("../client/keys.js"),
        import("../client/service-remote.js"),
        import("../daemon/durable-store.js"),
        import("../daemon/logger.js"),
        import("../daemon/store-config.js"),
      ]);
      const g = cmd.optsWithGlobals() as { key?: string; discover?: string; json?: boolean };
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
      if ((o.storeTlsCa || o.storeCreds) && !o.store)
        throw new UsageError("--store-tls-ca and --store-creds need --store");
      const whole = (flag: string, v: string): number => {
        if (!/^\d{1,10}$/.test(v) || Number(v) < 1) throw new UsageError(`${flag} takes a positive whole number`);
        return Number(v);
      };
      const idleMs = whole("--idle-ms", o.idleMs);
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
      if (!Number.isInteger(maxValue) || maxValue < 1)
        throw new UsageError("--max-value takes a positive whole number");
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
      // The first line is the URL (with --json, one line of JSON holding it), whatever else follows.
      process.stdout.write(g.json ? `${JSON.stringify({ url: d.url, id: d.id })}\n` : `${d.url}\n`);
      await d.done;
    });
}
