#!/usr/bin/env node
// The circuit command line: one file per command, each thin over the client library.

import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { register as close } from "./close.js";
import { report } from "./common.js";
import { register as completion } from "./completion.js";
import { register as dashboard } from "./dashboard.js";
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
import { register as top } from "./top.js";
import { register as unset } from "./unset.js";
import { register as wait } from "./wait.js";

/**
 * Commander's error as one line: "circuit: unknown command 'sned' (did you mean send?)". Commander
 * suggests the nearest command, and the nearest option of the command at hand; an unknown option
 * it has no suggestion for is matched against the global options here too.
 */
function oneLine(message: string, cmd: Command): string {
  const [first = "", ...rest] = message.trim().split("\n");
  let line = first.replace(/^error: /, "");
  const hint = rest.find((l) => l.startsWith("(Did you mean"));
  const unknown = /^unknown option '(--?[^'=]+)/.exec(line);
  if (hint) line += ` ${hint.replace("(Did you mean", "(did you mean")}`;
  else if (unknown) {
    const names = [cmd, program].flatMap((c) => c.options.flatMap((o) => [o.long, o.short]));
    const near = nearest(
      unknown[1] as string,
      names.filter((n): n is string => typeof n === "string"),
    );
    if (near) line += ` (did you mean ${near}?)`;
  }
  return `circuit: ${line}\n`;
}

/** The candidate closest to `word` by edit distance (swaps count once), if it is close enough to be a typo. */
function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of new Set(candidates)) {
    const d = editDistance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.replace(/^-+/, "").length * 0.4))
    ? best
    : undefined;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const up = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

const program = new Command("circuit")
  .description("Go-style channels across processes and machines")
  .version(VERSION)
  .option("-d, --dial <url>", "server to dial (env CIRCUIT: a URL or a file holding one)")
  .option("--discover <group:port>", "find a server by multicast (env CIRCUIT_DISCOVER)")
  .option("--key <file>", "cluster key file (env CIRCUIT_KEY)")
  .option("--json", "machine-readable output; `send` parses stdin as JSON")
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(oneLine(s, program)) });

/** Each command's registrar, under the name of the command it adds (its file's name too), in help order. */
const registrars: Record<string, (program: Command) => void> = {
  start,
  keygen,
  ls,
  peek,
  scrub,
  mkchan,
  mksub,
  send,
  recv,
  close,
  stop,
  mkproc,
  wait,
  signal,
  stdin,
  stdout,
  stderr,
  ports,
  fs,
  join,
  mkdns,
  set,
  unset,
  mksvc,
  scale,
  completion,
  top,
  dashboard,
};

/** Commands named otherwise than the registrar that adds them. */
const NAMED: Record<string, string> = { "mk@join": "mksub", "mk@leave": "mksub" };

/** The global options that take a value: the word after one is not the command. */
const VALUED = new Set(["-d", "--dial", "--discover", "--key"]);

/**
 * The command a line names, if it is one of ours that needs no other: only that command is then
 * built, which spares it building the other commands' parsers (registration 3.7–4.3 ms instead of
 * 6.0–6.3 ms here; most of what is left is commander's own code running for the first time). No
 * command word, an unknown one (its suggestion needs every name), `help` and `completion` (which
 * writes every command's options) build them all.
 */
function onlyCommand(argv: readonly string[]): ((program: Command) => void) | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") return undefined;
    if (a.startsWith("-")) {
      if (VALUED.has(a)) i++;
      continue;
    }
    const key = NAMED[a] ?? (Object.values(NAMED).includes(a) ? undefined : a);
    return key !== undefined && key !== "completion" && Object.hasOwn(registrars, key) ? registrars[key] : undefined;
  }
  return undefined;
}

const only = onlyCommand(process.argv);
if (only) only(program);
else for (const reg of Object.values(registrars)) reg(program);
for (const c of program.commands) {
  c.exitOverride().configureOutput({ outputError: (s, write) => write(oneLine(s, c)) });
  for (const sub of c.commands)
    sub.exitOverride().configureOutput({ outputError: (s, write) => write(oneLine(s, sub)) });
}

process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
});

/** Runs the command; the exit code is 0, or 2 for a usage error, or what report() says of a failure. */
async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
    // A command that reported its own failure (start) has set the code already.
    process.exitCode ??= 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
    } else {
      process.exitCode = report(err);
    }
  }
}

// No top-level await: the published command is this file bundled as CommonJS (scripts/bundle-cli.mjs).
void main();
