#!/usr/bin/env node
// The circuit command line: one file per command, each thin over the client library.

import { Command, CommanderError } from "commander";
import { VERSION } from "../daemon/daemon.js";
import { register as close } from "./close.js";
import { report } from "./common.js";
import { register as fs } from "./fs.js";
import { register as join } from "./join.js";
import { register as keygen } from "./keygen.js";
import { register as ls } from "./ls.js";
import { register as mkchan } from "./mkchan.js";
import { register as mkdns } from "./mkdns.js";
import { register as mkproc } from "./mkproc.js";
import { register as mksub } from "./mksub.js";
import { register as mksvc } from "./mksvc.js";
import { register as peek } from "./peek.js";
import { register as ports } from "./ports.js";
import { register as recv } from "./recv.js";
import { register as scale } from "./scale.js";
import { register as scrub } from "./scrub.js";
import { register as send } from "./send.js";
import { register as set } from "./set.js";
import { register as signal } from "./signal.js";
import { register as start } from "./start.js";
import { register as stderr } from "./stderr.js";
import { register as stdin } from "./stdin.js";
import { register as stdout } from "./stdout.js";
import { register as stop } from "./stop.js";
import { register as unset } from "./unset.js";
import { register as wait } from "./wait.js";

const program = new Command("circuit")
  .description("Go-style channels across processes and machines")
  .version(VERSION)
  .option("-d, --dial <url>", "server to dial (env CIRCUIT: a URL or a file holding one)")
  .option("--discover <group:port>", "find a server by multicast (env CIRCUIT_DISCOVER)")
  .option("--key <file>", "cluster key file (env CIRCUIT_KEY)")
  .option("--json", "machine-readable output; `send` parses stdin as JSON")
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(`${s.split("\n")[0]?.replace(/^error: /, "circuit: ")}\n`) });

for (const reg of [start, keygen, ls, peek, scrub, mkchan, mksub, send, recv, close, stop]) reg(program);
for (const reg of [mkproc, wait, signal, stdin, stdout, stderr, ports, fs, join]) reg(program);
for (const reg of [mkdns, set, unset, mksvc, scale]) reg(program);
for (const c of program.commands)
  c.exitOverride().configureOutput({
    outputError: (s, write) => write(`${s.split("\n")[0]?.replace(/^error: /, "circuit: ")}\n`),
  });

process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
});

try {
  await program.parseAsync(process.argv);
  process.exitCode = 0;
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    process.exitCode = report(err);
  }
}
