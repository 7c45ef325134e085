// A server's host resources as the ServerHandle offers them: listening ports, port reservations,
// and files under the directory the operator allowed with `circuit start --fs-root DIR`.

import type { Readable, Writable } from "node:stream";
import type { HostDo, HostRequest } from "../wire/requests.js";
import type { FileInfo, FileStat } from "../wire/shapes.js";
import { LazyReadable, requestStream } from "./byte-streams.js";
import type { OpOptions } from "./chan.js";
import type { Connection } from "./connection.js";

export type { FileInfo, FileStat };

export interface ListeningPort {
  port: number;
  /** The local address it listens on: "0.0.0.0", "127.0.0.1", "::", … */
  address: string;
  family: 4 | 6;
}

export interface ReservePortOptions extends OpOptions {
  /** The address to find a free port on (default "0.0.0.0": free on every IPv4 address). */
  address?: string;
}

/** The upload side of `writeFile`: `done` resolves once the whole file is in place on the server. */
export type FileWriter = Writable & { done: Promise<void> };

export class HostApi {
  /** @internal */
  constructor(
    private readonly c: Connection,
    private readonly names: readonly string[],
  ) {}

  private req(more: HostDo): HostRequest {
    return { op: "host", path: this.names, ...more };
  }

  async ports(opts?: OpOptions): Promise<ListeningPort[]> {
    return (await this.c.request(this.req({ do: "ports" }), opts?.signal)) as ListeningPort[];
  }

  async reservePort(opts?: ReservePortOptions): Promise<number> {
    return (await this.c.request(this.req({ do: "reserve", address: opts?.address }), opts?.signal)) as number;
  }

  async statFile(file: string, opts?: OpOptions): Promise<FileStat> {
    checkFile(file);
    return (await this.c.request(this.req({ do: "fs.stat", file }), opts?.signal)) as FileStat;
  }

  async listFiles(dir = "", opts?: OpOptions): Promise<FileInfo[]> {
    checkFile(dir);
    return (await this.c.request(this.req({ do: "fs.ls", file: dir }), opts?.signal)) as FileInfo[];
  }

  readFile(file: string): Readable {
    checkFile(file);
    return new LazyReadable(() => requestStream(this.c, (rid) => this.req({ do: "fs.read", file, rid })));
  }

  writeFile(file: string): FileWriter {
    checkFile(file);
    const { sid, writer } = this.c.openStream();
    const done = this.c.request(this.req({ do: "fs.write", file, sid })).then(() => undefined);
    // The server's answer is the truth about the upload; the stream fails with it too.
    done.catch((err) => writer.destroy(err));
    return Object.assign(writer, { done });
  }
}

function checkFile(file: unknown): void {
  if (typeof file !== "string") throw new TypeError("a file path is a string, relative to the server's file root");
}
