// Scenario `chan-far`: the server on another host, reached as programs on an application host
// reach it. Two network namespaces joined by a veth pair (bench/netns.ts): the server in "far",
// bound to every address (0.0.0.0) as a server on a real machine is, and the clients in "near",
// so every value crosses a network device with an Ethernet MTU twice. Secured as each is meant to
// be across machines: a circuit daemon with a cluster key (TLS 1.2 with the pre-shared key) against
// a nats-server with TLS (a certificate made for the run, the clients checking it); and beside
// them both in the clear (`--insecure`, plain NATS). chan-throughput's main run (the same roles,
// counts and window) against NATS pub/sub measured the same way, and chan-pingpong's round trip
// against NATS request-reply.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message, RoleHandle, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencyRow, makeClusterKey, phaseRows, startCircuitDaemon, WARM_MESSAGES } from "./harness.ts";
import { ensureNatsServer, findExecutable, NATS_FLUSH_EVERY, startNatsServer } from "./nats.ts";
import { Link } from "./netns.ts";

const CAP = 1024;
const PREFETCH = 256;
/** Sends the producer keeps in flight, as in chan-throughput's main run. */
const WINDOW = 256;
const MESSAGES = 500_000;
const SECONDS = 10;
const WARMUP = 500;
const ROUNDS = 5_000;

type Mode = "secured" | "clear";

/** The rows of one mode: throughput (steady and first 200,000) and round trip, circuit and NATS. */
function ids(mode: Mode) {
  const s = mode === "secured";
  const chan = s ? "circuit, key (TLS-PSK)" : "circuit, --insecure";
  const nats = s ? "NATS, TLS" : "NATS, plain";
  return {
    chan: { id: `far.chan.${mode}`, label: `${chan}, cap ${CAP}, ${WINDOW} in flight → iterate(${PREFETCH})` },
    chanCold: { id: `far.chan.${mode}.cold`, label: `${chan}, first ${WARM_MESSAGES / 1000}k` },
    nats: { id: `far.nats.${mode}`, label: `${nats} pub/sub` },
    natsCold: { id: `far.nats.${mode}.cold`, label: `${nats} pub/sub, first ${WARM_MESSAGES / 1000}k` },
    ping: { id: `far.chan.pingpong.${mode}`, label: `${chan} ping-pong, two cap-0 chans` },
    rr: { id: `far.nats.reqrep.${mode}`, label: `${nats} request-reply` },
  };
}

/** A round-trip row from a pinger's "done" report, noting a time limit reached before ROUNDS. */
function pingRow(r: { id: string; label: string }, s: Message): Row {
  const rounds = Number(s.rounds);
  return latencyRow(r.id, r.label, s, rounds < ROUNDS ? `time limit after ${rounds} of ${ROUNDS} rounds` : undefined);
}

/** Every row, each with `error` (no link could be made, or the setup failed). */
function failedRows(error: string): Row[] {
  const rows: Row[] = [];
  for (const mode of ["secured", "clear"] as const) {
    const r = ids(mode);
    const e = { error };
    rows.push(...phaseRows(r.chan, r.chanCold, MESSAGES, e), ...phaseRows(r.nats, r.natsCold, MESSAGES, e));
    rows.push({ ...r.ping, kind: "latency", error }, { ...r.rr, kind: "latency", error });
  }
  return rows;
}

/** A self-signed certificate for `addr` (the far host's address) and its key, made with openssl. */
function makeCertificate(dir: string, addr: string): { cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const openssl = findExecutable("openssl");
  if (!openssl) throw new Error("openssl is not installed (apt-get install -y openssl)");
  execFileSync(
    openssl,
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=circuit-bench-far",
      "-addext",
      `subjectAltName=IP:${addr}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 },
  );
  return { cert, key };
}

export const scenario: Scenario = {
  name: "chan-far",
  description:
    `server in another network namespace over a veth pair (MTU 1500), bound to 0.0.0.0, clients in a second one: ` +
    `circuit with a key vs NATS with TLS, and both in the clear; ${WARM_MESSAGES} + ${MESSAGES} × 100 B ` +
    `(cap ${CAP}, ${WINDOW} in flight, iterate(${PREFETCH})) and ${ROUNDS} ping-pong rounds`,
  budgetMs: 180_000,
  prepare: ensureNatsServer,
  async run(ctx: ScenarioContext) {
    const why = Link.unavailable();
    if (why) return { rows: failedRows(why) };
    const link = new Link();
    const dir = mkdtempSync(join(tmpdir(), "circuit-bench-far-"));
    try {
      let keyFile: string;
      let tls: { cert: string; key: string } | undefined;
      let tlsError: string | undefined;
      try {
        link.up();
        keyFile = join(dir, "cluster.key");
        makeClusterKey(keyFile);
      } catch (e) {
        return { rows: failedRows(`setting up the link: ${errorText(e)}`) };
      }
      try {
        tls = makeCertificate(dir, link.farAddr);
      } catch (e) {
        tlsError = errorText(e);
      }
      ctx.log(`chan-far: near ${link.near} (${link.nearAddr}), far ${link.far} (${link.farAddr})`);
      /**
       * `scenario`'s role `first` in near and, once it reports ready, `second`; resolves with the
       * "done" report of the one named `reporter`, and the second's handle.
       */
      const pair = async (
        scenario: string,
        first: [string, Record<string, unknown>],
        second: [string, Record<string, unknown>],
        reporter: "first" | "second",
      ): Promise<{ done: Message; second: RoleHandle }> => {
        const a = ctx.procs.role(scenario, first[0], first[1], 60_000, link.near);
        await a.next("ready");
        const b = ctx.procs.role(scenario, second[0], second[1], 60_000, link.near);
        return { done: await (reporter === "first" ? a : b).next("done"), second: b };
      };
      const rows: Row[] = [];
      for (const mode of ["secured", "clear"] as const) {
        const r = ids(mode);
        const secured = mode === "secured";
        const daemonArgs = secured ? ["--key", keyFile] : ["--insecure"];
        const key = secured ? keyFile : undefined;
        /** A fresh circuit daemon in far; resolves with its URL (it names its routable address). */
        const daemon = async (): Promise<string> =>
          (await startCircuitDaemon(ctx.procs, daemonArgs, { netns: link.far, addr: "0.0.0.0:0" })).url;
        const nats = async (): Promise<{ port: number; ca?: string }> => {
          if (secured && !tls) throw new Error(tlsError ?? "no certificate");
          const port = await startNatsServer(ctx.procs, { netns: link.far, tls: secured ? tls : undefined });
          return secured ? { port, ca: tls?.cert } : { port };
        };
        /** Runs `measure` on fresh servers, then stops them; its rows, or `failed`'s with the error. */
        const attempt = async (measure: () => Promise<Row[]>, failed: (error: string) => Row[]) => {
          try {
            rows.push(...(await measure()));
          } catch (e) {
            rows.push(...failed(errorText(e)));
          }
          await ctx.procs.closeAll();
        };
        // Throughput: circuit, then NATS; then round trips, the same.
        await attempt(
          async () => {
            const url = await daemon();
            const common = { url, name: `far-${mode}-${process.pid}`, key };
            const { done, second } = await pair(
              "chan-throughput",
              [
                "consumer",
                { ...common, warm: WARM_MESSAGES, count: MESSAGES, prefetch: PREFETCH, cap: CAP, seconds: SECONDS },
              ],
              ["producer", { ...common, count: WARM_MESSAGES + MESSAGES, seconds: SECONDS + 2, window: WINDOW }],
              "first",
            );
            await second.next("sent");
            return phaseRows(r.chan, r.chanCold, MESSAGES, done);
          },
          (error) => phaseRows(r.chan, r.chanCold, MESSAGES, { error }),
        );
        await attempt(
          async () => {
            const common = { ...(await nats()), host: link.farAddr, subject: `bench.far.${mode}` };
            const { done, second } = await pair(
              "nats",
              ["subscriber", { ...common, warm: WARM_MESSAGES, count: MESSAGES, seconds: SECONDS }],
              [
                "publisher",
                { ...common, count: WARM_MESSAGES + MESSAGES, flushEvery: NATS_FLUSH_EVERY, seconds: SECONDS + 2 },
              ],
              "first",
            );
            await Promise.race([second.next("sent"), new Promise((res) => setTimeout(res, 1000))]).catch(() => {});
            return phaseRows(r.nats, r.natsCold, MESSAGES, done);
          },
          (error) => phaseRows(r.nats, r.natsCold, MESSAGES, { error }),
        );
        const rounds = { warmup: WARMUP, rounds: ROUNDS, seconds: SECONDS };
        await attempt(
          async () => {
            const common = { url: await daemon(), name: `far-pp-${mode}-${process.pid}`, key };
            const { done } = await pair(
              "chan-pingpong",
              ["pong", common],
              ["ping", { ...common, ...rounds }],
              "second",
            );
            return [pingRow(r.ping, done)];
          },
          (error) => [{ ...r.ping, kind: "latency", error }],
        );
        await attempt(
          async () => {
            const common = { ...(await nats()), host: link.farAddr, subject: `bench.far.rr.${mode}` };
            const { done } = await pair(
              "nats",
              ["responder", common],
              ["requester", { ...common, ...rounds }],
              "second",
            );
            return [pingRow(r.rr, done)];
          },
          (error) => [{ ...r.rr, kind: "latency", error }],
        );
      }
      return { rows };
    } finally {
      await ctx.procs.closeAll();
      link.down();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  roles: {},
};
