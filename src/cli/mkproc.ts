// circuit mkproc PATH -- CMD ARGS…: start a process (or read a JSON command from stdin).

import type { Command } from "commander";
import type { ProcCommand } from "../client/proc.js";
import { checkLimits, type ProcLimits, parseSize } from "../wire/proc-limits.js";
import { type GlobalOptions, pathArg, printJson, readStdin, UsageError, withClient } from "./common.js";

interface MkprocOptions {
  dir?: string;
  env?: string[];
  inheritEnv?: boolean;
  scrub?: boolean;
  memory?: string;
  cpus?: string;
  pids?: string;
  place?: string;
}

/** --memory, --cpus, --pids as limits; a bad value is a usage error. */
export function limitOptions(o: MkprocOptions): ProcLimits | undefined {
  const raw: Record<string, number> = {};
  try {
    if (o.memory !== undefined) raw.memoryBytes = parseSize(o.memory);
    if (o.cpus !== undefined) {
      if (!/^\s*\d*\.?\d+\s*$/.test(o.cpus))
        throw new RangeError(`--cpus takes a number of cores, got ${JSON.stringify(o.cpus)}`);
      raw.cpus = Number(o.cpus);
    }
    if (o.pids !== undefined) {
      if (!/^\s*\d+\s*$/.test(o.pids))
        throw new RangeError(`--pids takes a whole number, got ${JSON.stringify(o.pids)}`);
      raw.pids = Number(o.pids);
    }
    return checkLimits(raw);
  } catch (err) {
    throw new UsageError(
      err instanceof RangeError && o.memory !== undefined && !("memoryBytes" in raw)
        ? `--memory: ${err.message}`
        : (err as Error).message,
    );
  }
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

export function register(program: Command): void {
  program
    .command("mkproc")
    .description(
      "start a process at PATH: mkproc PATH -- CMD ARGS…, or a JSON command {path, args, env, dir, inheritEnv, scrub} on stdin",
    )
    .argument("[path]", "anchor path (none with --place)")
    .argument("[cmd...]", "the program and its arguments, after --")
    .option("--dir <dir>", "working directory on the hosting server")
    .option("--env <name=value>", "an environment variable (repeatable); replaces the environment", collect)
    .option("--inherit-env", "lay --env over the daemon's environment instead")
    .option("--scrub", "remove the element when the process exits")
    .option("--memory <size>", "memory limit of the process and its descendants: bytes, or 512M, 2G, …")
    .option("--cpus <n>", "CPU limit in cores, e.g. 0.5 for half a core")
    .option("--pids <n>", "most processes and threads alive at once")
    .option(
      "--place <rel>",
      "let the circuit choose the server (most free capacity that fits --cpus/--memory); the process goes to REL under it and its full path is printed",
    )
    .action(async (pathOrCmd: string | undefined, rest: string[], o: MkprocOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      let path = pathOrCmd ?? "";
      let argv = rest;
      if (o.place !== undefined) {
        // With --place there is no PATH: every operand is the command.
        argv = pathOrCmd === undefined ? rest : [pathOrCmd, ...rest];
        const rel = o.place.split("/").filter((x) => x !== "");
        if (rel.length === 0 || o.place.startsWith("/"))
          throw new UsageError("--place takes a path relative to the chosen server, e.g. web/w1");
        path = `/X0000000000000000/${rel.join("/")}`;
        pathArg(path);
      } else {
        if (pathOrCmd === undefined) throw new UsageError("missing argument PATH (or use --place REL)");
        pathArg(path);
      }
      let spec: ProcCommand;
      if (argv.length > 0) {
        spec = { path: argv[0] as string, args: argv.slice(1) };
      } else {
        if (process.stdin.isTTY) throw new UsageError("give a command after --, or a JSON command on stdin");
        const text = (await readStdin()).toString("utf8");
        try {
          spec = JSON.parse(text) as ProcCommand;
        } catch (err) {
          throw new UsageError(`stdin is not a JSON command: ${(err as Error).message}`);
        }
        if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
          throw new UsageError("the JSON command must be an object {path, args, env, dir, inheritEnv, scrub}");
        }
      }
      if (o.env) {
        const env: Record<string, string> = { ...spec.env };
        for (const kv of o.env) {
          const eq = kv.indexOf("=");
          if (eq <= 0) throw new UsageError(`--env takes NAME=VALUE, got ${JSON.stringify(kv)}`);
          env[kv.slice(0, eq)] = kv.slice(eq + 1);
        }
        spec.env = env;
      }
      if (o.dir !== undefined) spec.dir = o.dir;
      if (o.inheritEnv) spec.inheritEnv = true;
      if (o.scrub) spec.scrub = true;
      const limits = limitOptions(o);
      if (limits) spec.limits = { ...spec.limits, ...limits };
      const place = o.place;
      const r = await withClient(g, async (c) => {
        if (place !== undefined) {
          const server = await c.place({ cpus: limits?.cpus, memoryBytes: limits?.memoryBytes });
          path = `${server}/${place
            .split("/")
            .filter((x) => x !== "")
            .join("/")}`;
        }
        return { path, pid: (await c.walk(path).makeProc(spec)).pid };
      });
      if (g.json) printJson(r);
      else if (place !== undefined) process.stdout.write(`${r.path}\n`);
    });
}
