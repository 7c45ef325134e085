// circuit recv PATH: receive one message; bytes are written raw, other values as JSON and a newline.

import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { receivableAt } from "./chan-handle.js";
import { type GlobalOptions, jsonReplacer, pathArg, timeoutSignal, withClient, withTimeout } from "./common.js";

export function register(program: Command): void {
  program
    .command("recv")
    .description("receive one message and write it to stdout")
    .argument("<path>", "channel (or subscription) path")
    .option("--timeout <ms>", "give up after this many milliseconds (exit 1)")
    .action(async (path: string, o: { timeout?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      timeoutSignal(o.timeout);
      await withClient(g, async (c) => {
        const ch = await receivableAt(c, path);
        // --timeout 0 is a select with a default, on /@ channels too (docs/select.md).
        const v: unknown = await withTimeout(o.timeout, ch.recvCase(), (signal) => ch.recv({ signal }));
        if (v instanceof Readable && g.json) await write(`${JSON.stringify(await collect(v), jsonReplacer)}\n`);
        else if (v instanceof Readable) await pipeline(v, process.stdout, { end: false });
        else if (v instanceof Uint8Array && !g.json) await write(v);
        else await write(`${JSON.stringify(v, jsonReplacer)}\n`);
      });
    });
}

function write(data: Uint8Array | string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(data, (err) => (err ? reject(err) : resolve())));
}

/** A stream message as one buffer (for --json, which prints bytes as {"$bytes": base64}). */
async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
