// The server element at /XID.

import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";

export interface ServerStat {
  id: string;
  url: string;
  startedAt: string;
  joinedAt: string;
  version: string;
  host: {
    hostname: string;
    platform: string;
    arch: string;
    cpus: number;
    loadavg: number[];
    memTotal: number;
    memFree: number;
    uptime: number;
  };
  process: { pid: number; rssBytes: number; cpuPercent: number };
  elements: number;
}

export class ServerHandle {
  readonly kind = "server";

  /** @internal */
  constructor(
    private readonly c: Connection,
    readonly path: string,
  ) {}

  async peek(opts?: OpOptions): Promise<ServerStat> {
    return (await this.c.request({ op: "peek", path: this.path.slice(1).split("/") }, opts?.signal)) as ServerStat;
  }

  /** Stops the daemon gracefully. */
  async stop(opts?: OpOptions): Promise<void> {
    await this.c.request({ op: "stop", path: this.path.slice(1).split("/") }, opts?.signal);
  }
}
