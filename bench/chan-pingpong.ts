// Scenario `chan-pingpong`: two unbuffered circuit channels between two processes through a
// daemon in a third. A round is A: send on ping, then recv on pong; B answers each ping with a
// pong. With cap 0 a send completes only once B has taken the value, so a round is a rendezvous
// followed by a reply, compared with NATS request-reply.
import { performance } from "node:perf_hooks";
import { checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencySummary, startCircuitDaemon } from "./harness.ts";

const PAYLOAD_BYTES = 100;
const WARMUP = 500;
const ROUNDS = 5_000;
const SECONDS = 10;

async function pongRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url), args.key);
  const ping = await openChan(client, `${String(args.name)}-ping`, 0);
  const pong = await openChan(client, `${String(args.name)}-pong`, 0);
  ctx.report("ready");
  // Runs until the orchestrator kills this process.
  for (;;) await pong.send(await ping.recv());
}

async function pingRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url), args.key);
  const ping = await getChan(client, `${String(args.name)}-ping`);
  const pong = await getChan(client, `${String(args.name)}-pong`);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  for (let i = 0; i < Number(args.warmup); i++) {
    await ping.send(payload);
    checkPayload(await pong.recv(), PAYLOAD_BYTES);
  }
  const rounds = Number(args.rounds);
  const samples = new Float64Array(rounds);
  let done = 0;
  while (done < rounds && performance.now() < stopAt) {
    const t = performance.now();
    await ping.send(payload);
    const v = await pong.recv();
    samples[done++] = performance.now() - t;
    checkPayload(v, PAYLOAD_BYTES);
  }
  ctx.report("done", latencySummary(samples.subarray(0, done)));
}

export const scenario: Scenario = {
  name: "chan-pingpong",
  description: `circuit ping-pong over two cap-0 chans, ${ROUNDS} rounds after ${WARMUP} warm-up, ≤ ${SECONDS} s`,
  budgetMs: 30_000,
  async run(ctx: ScenarioContext) {
    const id = "chan.pingpong";
    const label = "circuit ping-pong, two cap-0 chans";
    try {
      const { url } = await startCircuitDaemon(ctx.procs);
      ctx.log(`chan-pingpong: daemon at ${url}`);
      const name = `pingpong-${process.pid}-${Date.now().toString(36)}`;
      const b = ctx.procs.role("chan-pingpong", "pong", { url, name });
      await b.next("ready");
      const a = ctx.procs.role("chan-pingpong", "ping", {
        url,
        name,
        warmup: WARMUP,
        rounds: ROUNDS,
        seconds: SECONDS,
      });
      const s = await a.next("done");
      const rounds = Number(s.rounds);
      const row: Row = {
        id,
        label,
        kind: "latency",
        rounds,
        p50Us: Number(s.p50Us),
        p99Us: Number(s.p99Us),
        meanUs: Number(s.meanUs),
        minUs: Number(s.minUs),
        maxUs: Number(s.maxUs),
      };
      if (rounds < ROUNDS) row.note = `time limit after ${rounds} of ${ROUNDS} rounds`;
      return { rows: [row] };
    } catch (e) {
      return { rows: [{ id, label, kind: "latency", error: errorText(e) }] };
    }
  },
  roles: { ping: pingRole, pong: pongRole },
};
