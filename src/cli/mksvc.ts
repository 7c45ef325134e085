// circuit mksvc PATH [options] -- CMD ARGS…: start a service (or read a JSON spec from stdin).

import type { Command } from "commander";
import type { ServiceSpec } from "../client/service.js";
import { type GlobalOptions, pathArg, printJson, readStdin, UsageError, withClient } from "./common.js";
import { limitOptions } from "./mkproc.js";

interface MksvcOptions {
  replicas?: string;
  min?: string;
  max?: string;
  memory?: string;
  cpus?: string;
  pids?: string;
  restart?: string;
  backoffMs?: string;
  maxBackoffMs?: string;
  maxRestarts?: string;
  withinMs?: string;
  autoscaleChan?: string;
  perReplica?: string;
  autoscaleCpu?: string;
  cooldownMs?: string;
  intervalMs?: string;
  dir?: string;
}

function whole(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\s*\d{1,10}\s*$/.test(v)) throw new UsageError(`${flag} takes a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

export function register(program: Command): void {
  program
    .command("mksvc")
    .description(
      "start a service at PATH: mksvc PATH --replicas N [--min N --max M] [--memory …] [--cpus …] -- CMD ARGS…, or a JSON spec on stdin",
    )
    .argument("<path>", "anchor path of the service")
    .argument("[cmd...]", "the program and its arguments, after --")
    .option("--replicas <n>", "replicas to start with (default 1)")
    .option("--min <n>", "fewest replicas scaling may leave")
    .option("--max <n>", "most replicas scaling may make")
    .option("--memory <size>", "memory limit of each replica: bytes, or 512M, 2G, …")
    .option("--cpus <n>", "CPU limit of each replica in cores (also its placement request)")
    .option("--pids <n>", "most processes and threads of each replica")
    .option("--restart <policy>", "always | on-failure | never (default always)")
    .option("--backoff-ms <ms>", "first restart delay, doubling per consecutive crash (default 500)")
    .option("--max-backoff-ms <ms>", "cap of the restart delay (default 30000)")
    .option(
      "--max-restarts <n>",
      "restart intensity: more restarts than this within --within-ms stop the service (default 5)",
    )
    .option("--within-ms <ms>", "the intensity window (default 60000)")
    .option("--autoscale-chan <path>", "scale on this channel's backlog (with --per-replica)")
    .option("--per-replica <k>", "backlog per replica: desired = ceil(len / k)")
    .option("--autoscale-cpu <percent>", "scale on the replicas' average CPU, aiming at this percent")
    .option("--cooldown-ms <ms>", "scale-down stabilisation window (default 30000)")
    .option("--interval-ms <ms>", "how often the autoscale metric is read (default 1000)")
    .option("--dir <dir>", "working directory of each replica on its server")
    .action(async (path: string, argv: string[], o: MksvcOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      pathArg(path);
      let spec: ServiceSpec;
      if (argv.length > 0) {
        spec = { cmd: { path: argv[0] as string, args: argv.slice(1) } };
      } else {
        if (process.stdin.isTTY) throw new UsageError("give a command after --, or a JSON spec on stdin");
        const text = (await readStdin()).toString("utf8");
        try {
          spec = JSON.parse(text) as ServiceSpec;
        } catch (err) {
          throw new UsageError(`stdin is not a JSON spec: ${(err as Error).message}`);
        }
        if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
          throw new UsageError("the JSON spec must be an object { cmd, replicas, … }");
        }
      }
      const s = spec as unknown as Record<string, unknown>;
      const set = (k: string, v: unknown) => {
        if (v !== undefined) s[k] = v;
      };
      set("replicas", whole("--replicas", o.replicas));
      set("min", whole("--min", o.min));
      set("max", whole("--max", o.max));
      set("restart", o.restart);
      set("backoffMs", whole("--backoff-ms", o.backoffMs));
      set("maxBackoffMs", whole("--max-backoff-ms", o.maxBackoffMs));
      set("maxRestarts", whole("--max-restarts", o.maxRestarts));
      set("withinMs", whole("--within-ms", o.withinMs));
      set("cooldownMs", whole("--cooldown-ms", o.cooldownMs));
      set("intervalMs", whole("--interval-ms", o.intervalMs));
      if (o.autoscaleChan !== undefined || o.perReplica !== undefined) {
        if (o.autoscaleChan === undefined || o.perReplica === undefined)
          throw new UsageError("--autoscale-chan and --per-replica go together");
        s.autoscale = { chan: o.autoscaleChan, perReplica: whole("--per-replica", o.perReplica) };
      }
      if (o.autoscaleCpu !== undefined) {
        if (s.autoscale) throw new UsageError("autoscale on a channel or on CPU, not both");
        const p = Number(o.autoscaleCpu);
        if (!/^\s*\d*\.?\d+\s*$/.test(o.autoscaleCpu)) throw new UsageError("--autoscale-cpu takes a percentage");
        s.autoscale = { cpuPercent: p };
      }
      const limits = limitOptions(o);
      if (limits) spec.cmd = { ...spec.cmd, limits: { ...spec.cmd?.limits, ...limits } };
      if (o.dir !== undefined) spec.cmd = { ...spec.cmd, dir: o.dir };
      // Loaded here, not by every command's start-up (it brings the client's process code).
      const { checkSpec } = await import("../client/service.js");
      try {
        checkSpec(spec);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const stat = await withClient(g, async (c) => (await c.walk(path).makeService(spec)).peek());
      if (g.json) printJson(stat);
    });
}
