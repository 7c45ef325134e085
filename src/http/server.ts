// `circuit start --http HOST:PORT` (DESIGN.md §7, §13): /metrics, and the dashboard — static
// files from ./static/ plus a read-only JSON API and an event stream (SSE) that pushes the
// circuit's state every second. Nothing served here changes anything. On a keyed daemon every
// request must carry the token derived from the key (`?token=`, `Authorization: Bearer`, or the
// cookie the page gets with it), else 401 and nothing else.

import { timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Daemon } from "../daemon/daemon.js";
import { dashboardToken } from "../transport/secure.js";
import { formatHost } from "../wire/url.js";
import { DaemonMetrics } from "./metrics.js";
import { CircuitView } from "./view.js";

export interface HttpOptions {
  host: string;
  port: number;
  /** The cluster key: requests then need its token. */
  key?: Buffer;
  /** How often the circuit is observed and pages updated; default 1000 ms. */
  periodMs?: number;
}

export interface HttpEndpoint {
  /** http://HOST:PORT/ */
  url: string;
  close(): Promise<void>;
}

const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
};

// "../http/" and not "./": the same from dist/http/ and from `circuit start`'s bundle in dist/cli/.
const staticDir = new URL("../http/static/", import.meta.url);
/** Pages watching at once (each holds an event stream), and HTTP connections in all. */
const MAX_STREAMS = 64;
const MAX_CONNECTIONS = 256;

export async function serveHttp(d: Daemon, o: HttpOptions): Promise<HttpEndpoint> {
  const token = o.key ? Buffer.from(dashboardToken(o.key)) : undefined;
  const metrics = new DaemonMetrics(d);
  const view = new CircuitView(d, o.key, o.periodMs ?? 1000);
  const streams = new Set<http.ServerResponse>();
  const files = new Map<string, Buffer>();

  const authorized = (req: http.IncomingMessage, url: URL): boolean => {
    if (!token) return true;
    const auth = req.headers.authorization;
    const cookie = /(?:^|;\s*)circuit_token=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? "")?.[1];
    const given = url.searchParams.get("token") ?? (auth?.startsWith("Bearer ") ? auth.slice(7) : (cookie ?? ""));
    const b = Buffer.from(given);
    return b.length === token.length && timingSafeEqual(b, token);
  };

  const json = (res: http.ServerResponse, v: unknown) => {
    const body = JSON.stringify(v);
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (!authorized(req, url)) {
      res.writeHead(401, { "content-type": "text/plain", "www-authenticate": 'Bearer realm="circuit"' });
      res.end("401: this circuit has a key; open the URL `circuit dashboard` prints\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    const p = url.pathname;
    if (p === "/metrics") {
      const text = await metrics.text();
      res.writeHead(200, { "content-type": metrics.contentType });
      res.end(text);
      return;
    }
    const s = STATIC[p];
    if (s) {
      let body = files.get(s.file);
      if (!body) {
        body = await readFile(new URL(s.file, staticDir));
        files.set(s.file, body);
      }
      const headers: http.OutgoingHttpHeaders = { "content-type": s.type, "cache-control": "no-cache" };
      // The page's own requests (script, style, event stream) carry the token as a cookie.
      if (token && p === "/") {
        headers["set-cookie"] = `circuit_token=${token.toString()}; Path=/; HttpOnly; SameSite=Strict`;
      }
      res.writeHead(200, headers);
      res.end(body);
      return;
    }
    if (p === "/api/state") return json(res, view.summary());
    if (p === "/api/ls") {
      const n = (k: string, dflt: number, max: number) =>
        Math.min(max, Math.max(0, Number.parseInt(url.searchParams.get(k) ?? "", 10) || dflt));
      return json(
        res,
        view.list(
          url.searchParams.get("path") ?? "/",
          n("offset", 0, 1e9),
          n("limit", 200, 1000),
          url.searchParams.get("q") ?? "",
        ),
      );
    }
    if (p === "/api/events") {
      if (streams.size >= MAX_STREAMS) {
        res.writeHead(503, { "content-type": "text/plain", "retry-after": "5" });
        res.end(`503: ${MAX_STREAMS} pages are watching already\n`);
        return;
      }
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      res.write(`retry: 1000\n\ndata: ${JSON.stringify(view.summary())}\n\n`);
      streams.add(res);
      req.on("close", () => streams.delete(res));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("404\n");
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`500: ${(err as Error).message}\n`);
    });
  });
  server.keepAliveTimeout = 5000;
  // Bounded like every other input (DESIGN.md §7).
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  view.onUpdate = () => {
    if (streams.size === 0) return;
    const msg = `data: ${JSON.stringify(view.summary())}\n\n`;
    for (const r of streams) r.write(msg);
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const base = `http://${formatHost(a.address)}:${a.port}/`;
  d.httpUrl = base;
  view.start();
  d.log.info({ event: "http", url: base, keyed: token !== undefined }, `serving /metrics and the dashboard on ${base}`);
  const close = async () => {
    await view.close();
    for (const r of streams) r.end();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  d.onStop(close);
  return { url: base, close };
}
