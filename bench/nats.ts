// Scenario `nats`: the peer. NATS core through the `nats` npm client against a nats-server this
// scenario starts on a free loopback port: (a) pub/sub throughput, publisher and subscriber in
// separate processes, measured at the subscriber; (b) sequential request-reply round trips.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { performance } from "node:perf_hooks";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { connect, type NatsConnection, type TlsOptions } from "nats";
import type { Procs, RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, firstMatch, latencySummary, Phases, phaseRows, WARM_MESSAGES } from "./harness.ts";

const PAYLOAD_BYTES = 100;
const PUBSUB_MESSAGES = 500_000;
const PUBSUB_SECONDS = 8;
// The publisher awaits a PING/PONG every this many messages: without it a tight publish loop
// buffers every message in the client before the first byte leaves; far more often and the
// round trips starve the pipe. 10,000 was NATS's best setting on the machine this was written on.
export const NATS_FLUSH_EVERY = 10_000;
const RR_WARMUP = 500;
const RR_ROUNDS = 5_000;
const RR_SECONDS = 8;

export function findExecutable(name: string): string | undefined {
  // Debian puts nats-server in /usr/sbin, which a non-login shell's PATH may lack.
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function apt(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync("apt-get", args, {
    encoding: "utf8",
    timeout: 240_000,
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? r.error.message : ""}`.trim();
  return { ok: r.status === 0, out: out.split("\n").slice(-3).join(" | ") };
}

export async function ensureNatsServer(log: (line: string) => void): Promise<Record<string, unknown>> {
  let path = findExecutable("nats-server");
  if (!path) {
    const how = "install it (Debian/Ubuntu: apt-get install -y nats-server) and rerun";
    if (process.platform !== "linux" || process.getuid?.() !== 0) {
      throw new Error(`nats-server is not on PATH and this is not root on Linux; ${how}`);
    }
    log("nats-server not found; installing it with apt-get install -y nats-server");
    let r = apt(["install", "-y", "nats-server"]);
    if (!r.ok) {
      log("apt-get install failed; running apt-get update and trying again");
      apt(["update"]);
      r = apt(["install", "-y", "nats-server"]);
    }
    path = findExecutable("nats-server");
    if (!path) throw new Error(`could not install nats-server with apt-get (${r.out}); ${how}`);
  }
  const v = spawnSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 });
  return { natsServer: path, natsServerVersion: (v.stdout ?? "").trim() };
}

/**
 * Connects to the server at `port` on `host` (default 127.0.0.1); with `ca` (a CA certificate
 * file's path), over TLS checked against it.
 */
export async function dialNats(port: unknown, host?: unknown, ca?: unknown): Promise<NatsConnection> {
  // nats.js names no server to TLS when dialling an IP address (Node then checks the certificate
  // against "localhost"); it passes its tls options on to Node, so the certificate is checked
  // against the address dialled instead.
  const tls =
    ca === undefined
      ? undefined
      : ({
          caFile: String(ca),
          checkServerIdentity: (_: string, cert: PeerCertificate) => checkServerIdentity(String(host), cert),
        } as TlsOptions);
  return connect({
    servers: `${host === undefined ? "127.0.0.1" : String(host)}:${Number(port)}`,
    reconnect: false,
    ...(tls ? { tls } : {}),
  });
}

async function publisherRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port, args.host, args.ca);
  const count = Number(args.count);
  const flushEvery = Number(args.flushEvery);
  const subject = String(args.subject);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  const payload = new Uint8Array(PAYLOAD_BYTES);
  let sent = 0;
  while (sent < count) {
    nc.publish(subject, payload);
    sent++;
    if (sent % flushEvery === 0) {
      await nc.flush();
      if (performance.now() > stopAt) break;
    }
  }
  await nc.flush();
  ctx.report("sent", { sent });
}

async function subscriberRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port, args.host, args.ca);
  const phases = new Phases(Number(args.warm), Number(args.count), Number(args.seconds) * 1000, ctx);
  nc.subscribe(String(args.subject), {
    callback: (err) => {
      if (!err && !phases.finished) phases.arrive();
    },
  });
  // The server has the subscription once a PING sent after it is answered.
  await nc.flush();
  nc.closed().then((e) => {
    if (!phases.finished) ctx.report("error", { message: `connection closed: ${e ? errorText(e) : "by server"}` });
  });
  ctx.report("ready");
}

async function responderRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port, args.host, args.ca);
  nc.subscribe(String(args.subject), {
    callback: (err, msg) => {
      if (!err) msg.respond(msg.data);
    },
  });
  await nc.flush();
  ctx.report("ready");
}

async function requesterRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const nc = await dialNats(args.port, args.host, args.ca);
  const subject = String(args.subject);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  for (let i = 0; i < Number(args.warmup); i++) await nc.request(subject, payload, { timeout: 2000 });
  const rounds = Number(args.rounds);
  const samples = new Float64Array(rounds);
  let done = 0;
  while (done < rounds && performance.now() < stopAt) {
    const t = performance.now();
    const reply = await nc.request(subject, payload, { timeout: 2000 });
    samples[done++] = performance.now() - t;
    if (reply.data.length !== PAYLOAD_BYTES) throw new Error(`reply of ${reply.data.length} bytes`);
  }
  ctx.report("done", latencySummary(samples.subarray(0, done)));
}

/**
 * Starts a nats-server on a free loopback port and resolves with the port; with `netns`, in that
 * network namespace listening on every address, and with `tls`, serving TLS only with that
 * certificate and key (files).
 */
export async function startNatsServer(
  procs: Procs,
  where: { netns?: string; tls?: { cert: string; key: string } } = {},
): Promise<number> {
  const path = findExecutable("nats-server");
  if (!path) throw new Error("nats-server is not installed");
  // -p -1 lets the server pick a free port, which it logs; that avoids a probe-then-bind race.
  const args = ["-a", where.netns === undefined ? "127.0.0.1" : "0.0.0.0", "-p", "-1"];
  if (where.tls) args.push("--tls", "--tlscert", where.tls.cert, "--tlskey", where.tls.key);
  const server =
    where.netns === undefined
      ? procs.spawn("nats-server", path, args)
      : procs.spawn("nats-server", "ip", ["netns", "exec", where.netns, path, ...args]);
  const m = await firstMatch(server, "stderr", /Listening for client connections on [^\s:]+:(\d+)/);
  return Number(m[1]);
}

async function pubsub(procs: Procs): Promise<Row[]> {
  const main = { id: "nats.pubsub", label: "NATS core pub/sub (nats.js, callback sub)" };
  const cold = { id: "nats.pubsub.cold", label: `NATS pub/sub, first ${WARM_MESSAGES / 1000}k messages` };
  try {
    const port = await startNatsServer(procs);
    const subject = "bench.pubsub";
    const sub = procs.role("nats", "subscriber", {
      port,
      subject,
      warm: WARM_MESSAGES,
      count: PUBSUB_MESSAGES,
      seconds: PUBSUB_SECONDS,
    });
    await sub.next("ready");
    const pub = procs.role("nats", "publisher", {
      port,
      subject,
      count: WARM_MESSAGES + PUBSUB_MESSAGES,
      flushEvery: NATS_FLUSH_EVERY,
      seconds: PUBSUB_SECONDS + 2,
    });
    const done = await sub.next("done");
    await Promise.race([pub.next("sent"), new Promise((r) => setTimeout(r, 1000))]).catch(() => {});
    return phaseRows(main, cold, PUBSUB_MESSAGES, done);
  } catch (e) {
    return phaseRows(main, cold, PUBSUB_MESSAGES, { error: errorText(e) });
  }
}

async function requestReply(procs: Procs): Promise<Row> {
  const id = "nats.reqrep";
  const label = "NATS request-reply";
  try {
    const port = await startNatsServer(procs);
    const subject = "bench.rr";
    const responder = procs.role("nats", "responder", { port, subject });
    await responder.next("ready");
    const requester = procs.role("nats", "requester", {
      port,
      subject,
      warmup: RR_WARMUP,
      rounds: RR_ROUNDS,
      seconds: RR_SECONDS,
    });
    const s = await requester.next("done");
    const rounds = Number(s.rounds);
    return {
      id,
      label,
      kind: "latency",
      rounds,
      p50Us: Number(s.p50Us),
      p99Us: Number(s.p99Us),
      meanUs: Number(s.meanUs),
      minUs: Number(s.minUs),
      maxUs: Number(s.maxUs),
      note: rounds < RR_ROUNDS ? `time limit after ${rounds} of ${RR_ROUNDS} rounds` : undefined,
    };
  } catch (e) {
    return { id, label, kind: "latency", error: errorText(e) };
  }
}

export const scenario: Scenario = {
  name: "nats",
  description: `NATS core: pub/sub ${WARM_MESSAGES} + ${PUBSUB_MESSAGES} × ${PAYLOAD_BYTES} B, request-reply ${RR_ROUNDS} rounds`,
  budgetMs: 30_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    // Each measurement gets its own server so the second does not inherit the first's backlog.
    ctx.log("nats: pub/sub");
    const a = await pubsub(ctx.procs);
    await ctx.procs.closeAll();
    ctx.log("nats: request-reply");
    const b = await requestReply(ctx.procs);
    return { rows: [...a, b] };
  },
  roles: {
    publisher: publisherRole,
    subscriber: subscriberRole,
    responder: responderRole,
    requester: requesterRole,
  },
};
