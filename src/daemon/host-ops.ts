// The server element's host resources: listening ports, port reservations, and files under the
// operator's --fs-root. File contents travel as stream messages with the same byte credits as
// channel streams (SATTACH/SDATA/SCREDIT/SFIN one way, SCREDIT/SDATA/SFIN/SABORT the other).
//
// Requests: {op: "host", path: [XID], do, ...}
//   do "ports"                 → ListeningPort[]
//   do "reserve", address?     → a port number nobody listens on, not handed out again for 60 s
//   do "fs.stat", file         → FileStat
//   do "fs.ls", file           → FileInfo[] (at most MAX_LIST, by name)
//   do "fs.read", file, rid    → SATTACH [rid, pid] with the file's bytes, then RES
//   do "fs.write", file, sid   → the client streams on sid; RES once the file is in place

import { randomBytes } from "node:crypto";
import { chmod, type FileHandle, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { createServer, isIP } from "node:net";
import { basename, dirname, join } from "node:path";
import { AccessDenied, ProtocolError, StreamBroken, WrongKind } from "../errors.js";
import { formatPath } from "../wire/path.js";
import type { Received } from "../wire/requests.js";
import type { FileInfo, FileStat } from "../wire/shapes.js";
import { FsRoot, fsError, resolveFsRoot } from "./fs-root.js";
import { listeningPorts } from "./procfs.js";
import type { StreamSession } from "./session-streams.js";
import { StreamPipe } from "./stream-pipe.js";

/** How long a reserved port is not handed out again. */
const RESERVE_MS = 60_000;
/** Entries a listing returns at most. */
const MAX_LIST = 10_000;
/** Bytes of an upload being written to disk at once. */
const WRITE_WINDOW = 256 * 1024;
/** Bytes read from disk per chunk. */
const READ_CHUNK = 64 * 1024;

type Reply = (v: unknown) => void;
type Fail = (err: unknown) => void;

export class HostResources {
  private readonly root: FsRoot | undefined;
  private readonly reserved = new Map<number, number>();

  /**
   * `bindHost` is where reservePort probes by default: the loopback address for a daemon that
   * serves loopback only (it never listens elsewhere, not even for a moment), else all addresses.
   */
  constructor(
    fsRoot: string | undefined,
    private readonly bindHost = "127.0.0.1",
  ) {
    this.root = fsRoot === undefined ? undefined : new FsRoot(resolveFsRoot(fsRoot));
  }

  /** The file root, or AccessDenied when the operator did not give one. */
  files(server: string): FsRoot {
    if (!this.root) {
      throw new AccessDenied(`file access is off on ${server}: start it with --fs-root DIR to allow a directory`);
    }
    return this.root;
  }

  /** A free port: bound (port 0) and closed again, and remembered so it is not handed out twice. */
  async reservePort(address: unknown): Promise<number> {
    const host = address === undefined || address === null ? this.bindHost : address;
    if (typeof host !== "string" || (isIP(host) === 0 && host !== "localhost")) {
      throw new TypeError("reservePort takes an IP address to bind");
    }
    const now = Date.now();
    for (const [p, until] of this.reserved) if (until <= now) this.reserved.delete(p);
    for (let i = 0; i < 50; i++) {
      const port = await bindZero(host);
      if (!this.reserved.has(port)) {
        this.reserved.set(port, now + RESERVE_MS);
        return port;
      }
    }
    throw new RangeError("no free port found that was not reserved already");
  }
}

function bindZero(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", (err: NodeJS.ErrnoException) =>
      reject(new RangeError(`cannot bind ${host}: ${err.code ?? err.message}`)),
    );
    s.listen({ port: 0, host, exclusive: true }, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): FileStat["type"] {
  return st.isFile() ? "file" : st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : "other";
}

/** What host requests need of the daemon (and nothing more). */
export interface HostOpsHost {
  readonly id: string;
  readonly host: HostResources;
  nextPipeId(): number;
}

/** Handles one `host` request (session.ts delegates here). */
export function hostRequest(
  d: HostOpsHost,
  s: StreamSession,
  names: string[],
  r: Received<"host">,
  reply: Reply,
  fail: Fail,
): void {
  if (names.length !== 1) throw new WrongKind(`${formatPath(names)} is not a server: host resources are at /XID`);
  const run = (p: Promise<unknown>) => void p.then(reply, fail);
  switch (r.do) {
    case "ports":
      return run(listeningPorts());
    case "reserve":
      return run(d.host.reservePort(r.address));
    case "fs.stat":
      return run(statFile(d.host.files(d.id), r.file));
    case "fs.ls":
      return run(listFiles(d.host.files(d.id), r.file));
    case "fs.read": {
      const root = d.host.files(d.id);
      if (typeof r.rid !== "number") throw new ProtocolError("fs.read needs a receiver id");
      return run(readFile(d, s, root, r.file, r.rid));
    }
    case "fs.write": {
      const root = d.host.files(d.id);
      if (typeof r.sid !== "number") throw new ProtocolError("fs.write needs a stream id");
      const sid = r.sid;
      void writeFile(s, root, r.file, sid, reply, fail).catch(fail);
      return;
    }
    default:
      throw new ProtocolError(`unknown host operation ${JSON.stringify(r.do)}`);
  }
}

async function statFile(root: FsRoot, rel: unknown): Promise<FileStat> {
  const p = root.lexical(rel);
  const real = await root.existing(rel as string);
  const st = await stat(real).catch((err) => {
    throw fsError(err, rel as string);
  });
  return {
    path: p.slice(root.root.length).replace(/^\//, ""),
    type: typeOf(st),
    size: st.size,
    mode: st.mode & 0o7777,
    mtime: st.mtime.toISOString(),
  };
}

async function listFiles(root: FsRoot, rel: unknown): Promise<FileInfo[]> {
  const real = await root.existing((rel ?? "") as string);
  try {
    const entries = (await readdir(real, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    const out: FileInfo[] = [];
    for (const e of entries.slice(0, MAX_LIST)) {
      const st = await stat(join(real, e.name)).catch(() => undefined);
      out.push({
        name: e.name,
        type: typeOf(e),
        size: st && e.isFile() ? st.size : 0,
        mtime: st ? st.mtime.toISOString() : new Date(0).toISOString(),
      });
    }
    return out;
  } catch (err) {
    throw fsError(err, rel as string);
  }
}

/** Streams a file to receiver `rid`: read from disk only as the reader grants credit. */
async function readFile(d: HostOpsHost, s: StreamSession, root: FsRoot, rel: unknown, rid: number): Promise<null> {
  const real = await root.existing(rel as string);
  let fh: FileHandle;
  try {
    fh = await open(real, "r");
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new WrongKind(`${JSON.stringify(rel)} is not a file`);
    }
  } catch (err) {
    throw fsError(err, rel as string);
  }
  if (s.conn.closed) {
    await fh.close();
    return null;
  }
  let credit = 0;
  let reading = false;
  let closed = false;
  const finish = () => {
    if (closed) return;
    closed = true;
    void fh.close().catch(() => {});
  };
  try {
    // Attached below, in this same turn.
    s.roomForOutput(1);
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
  // The pipe grants its first window from inside its constructor, so pump is hoisted and reads
  // `pipe` only once a read has completed.
  const pipe: StreamPipe = new StreamPipe(d.nextPipeId(), {
    credit: (n) => {
      credit += n;
      pump();
    },
    abort: finish,
  });
  function pump(): void {
    if (reading || closed || credit <= 0) return;
    reading = true;
    const n = Math.min(credit, READ_CHUNK);
    fh.read(Buffer.allocUnsafe(n), 0, n, null).then(
      ({ bytesRead, buffer }) => {
        reading = false;
        if (closed) return;
        if (bytesRead === 0) {
          finish();
          pipe.fin();
          return;
        }
        credit -= bytesRead;
        pipe.write(buffer.subarray(0, bytesRead));
        pump();
      },
      (err: NodeJS.ErrnoException) => {
        reading = false;
        finish();
        pipe.breakOff(`reading ${JSON.stringify(rel)} failed: ${err.code ?? err.message}`);
      },
    );
  }
  s.attachStream(rid, pipe);
  pump();
  return null;
}

/**
 * Receives stream `sid` into a temporary file next to the target and renames it into place at the
 * end marker, so the file is never seen half written; a stream that breaks off leaves no trace.
 */
async function writeFile(
  s: StreamSession,
  root: FsRoot,
  rel: unknown,
  sid: number,
  reply: Reply,
  fail: Fail,
): Promise<void> {
  const target = await root.forWrite(rel as string);
  const tmp = join(dirname(target), `.${basename(target)}.circuit-${randomBytes(4).toString("hex")}`);
  const old = await stat(target).catch(() => undefined);
  if (old?.isDirectory()) throw new WrongKind(`${JSON.stringify(rel)} is a directory`);
  let fh: FileHandle;
  try {
    fh = await open(tmp, "wx", 0o666);
  } catch (err) {
    throw fsError(err, rel as string);
  }
  if (s.conn.closed) {
    await fh.close();
    await unlink(tmp).catch(() => {});
    return;
  }
  let chain: Promise<unknown> = Promise.resolve();
  let failed = false;
  const abandon = async () => {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
  };
  let pipe: StreamPipe;
  try {
    pipe = s.acceptStream(sid);
  } catch (err) {
    // Refused (the connection has --max-streams open): the temporary file goes too.
    await abandon();
    throw err;
  }
  pipe.attach({
    data: (c) => {
      chain = chain.then(async () => {
        if (failed) return;
        try {
          await fh.write(c);
          pipe.grant(c.length);
        } catch (err) {
          failed = true;
          pipe.drop(`writing ${JSON.stringify(rel)} failed`);
          await abandon();
          fail(fsError(err, rel as string));
        }
      });
    },
    fin: () => {
      chain = chain.then(async () => {
        if (failed) return;
        try {
          await fh.close();
          if (old) await chmod(tmp, old.mode & 0o7777);
          await rename(tmp, target);
          reply(null);
        } catch (err) {
          await abandon();
          fail(fsError(err, rel as string));
        }
      });
    },
    broken: (reason) => {
      chain = chain.then(async () => {
        if (failed) return;
        failed = true;
        await abandon();
        fail(new StreamBroken(`upload of ${JSON.stringify(rel)} broke off: ${reason}`));
      });
    },
  });
  pipe.grant(WRITE_WINDOW);
}
