// circuit fs cat|put|ls|stat /XID:PATH: files under a server's --fs-root, streamed both ways.

import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import type { Client } from "../client/client.js";
import type { ServerHandle } from "../client/server-handle.js";
import { type GlobalOptions, printJson, UsageError, withClient } from "./common.js";
import { serverAt } from "./proc-handle.js";
import { Progress } from "./progress.js";

/** "/X…:dir/file" → the server path and the file path under its root. */
function target(arg: string): { server: string; file: string } {
  const m = /^\/(X[0-9a-f]{16}):(.*)$/.exec(arg);
  if (!m) {
    throw new UsageError(`expected /XID:PATH (a server and a path under its file root), got ${JSON.stringify(arg)}`);
  }
  return { server: `/${m[1]}`, file: m[2] as string };
}

function on<T>(cmd: Command, arg: string, fn: (srv: ServerHandle, file: string, c: Client) => Promise<T>): Promise<T> {
  const t = target(arg);
  return withClient(cmd.optsWithGlobals() as GlobalOptions, async (c) => fn(await serverAt(c, t.server), t.file, c));
}

export function register(program: Command): void {
  const fs = program
    .command("fs")
    .description("files under the directory a server allows (circuit start --fs-root DIR)");

  fs.command("cat")
    .description("write the file to stdout")
    .argument("<target>", "/XID:PATH")
    .action(async (arg: string, _o: unknown, cmd: Command) => {
      await on(cmd, arg, (srv, file) => pipeline(srv.readFile(file), process.stdout, { end: false }));
    });

  fs.command("put")
    .description("write stdin to the file (it appears whole once stdin ends; parents are created)")
    .argument("<target>", "/XID:PATH")
    .action(async (arg: string, _o: unknown, cmd: Command) => {
      await on(cmd, arg, async (srv, file) => {
        const w = srv.writeFile(file);
        const progress = new Progress(`writing ${arg}:`, Progress.stdinSize());
        try {
          await pipeline(
            process.stdin,
            new Transform({
              transform(chunk: Buffer, _enc, cb) {
                progress.add(chunk.length);
                cb(null, chunk);
              },
            }),
            w,
          );
          progress.phase(`finishing ${arg}:`);
          await w.done;
        } finally {
          progress.done();
        }
      });
    });

  fs.command("ls")
    .description("list a directory (/XID: for the file root); -l adds type, size and time")
    .argument("<target>", "/XID:DIR")
    .option("-l, --long", "add type, size and modification time")
    .action(async (arg: string, o: { long?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const entries = await on(cmd, arg, (srv, file) => srv.listFiles(file));
      if (g.json) return printJson(entries);
      for (const e of entries) {
        const name = `${e.name}${e.type === "dir" ? "/" : ""}`;
        if (o.long) process.stdout.write(`${e.type.padEnd(7)} ${String(e.size).padStart(12)}  ${e.mtime}  ${name}\n`);
        else process.stdout.write(`${name}\n`);
      }
    });

  fs.command("stat")
    .description("print the file's type, size, mode and time as JSON")
    .argument("<target>", "/XID:PATH")
    .action(async (arg: string, _o: unknown, cmd: Command) => {
      printJson(await on(cmd, arg, (srv, file) => srv.statFile(file)));
    });
}
