// Scenario `scale`: one daemon holding many idle channels and many idle client connections. It
// reports the daemon's RSS idle, the memory each idle channel and each idle client costs, and one
// client's ping-pong p50 quiet and then with the crowd connected (every connection a real TCP
// connection, opened from a few processes); then what a value waiting in a channel's buffer costs
// (one channel filled with BUFFERED values of 100 bytes); last, what an idle client costs a fresh
// daemon in the clear and one with a cluster key (TLS), each on a daemon of its own.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { dialCircuit } from "./circuit-lib.ts";
import type { RoleContext, RoleHandle, Scenario, ScenarioContext } from "./harness.ts";
import { cpuSeconds, errorText, latencyRow, makeClusterKey, startCircuitDaemon } from "./harness.ts";

const CHANNELS = 10_000;
const CLIENTS = 1_000;
const CROWD_PROCESSES = 4;
/** The idle RSS is measured this long after the daemon started. */
const IDLE_MS = 15_000;
const PING_ROUNDS = 3_000;
/** Values put in one channel's buffer (its capacity, the largest there is) for the memory per buffered value. */
const BUFFERED = 1_000_000;
const BUFFERED_BYTES = 100;
const PING_WARMUP = 300;
/** How long the daemon's CPU and wake-ups are counted while it sits idle, alone and then with the crowd. */
const ACTIVITY_MS = 5_000;

interface PeekableServer {
  peek(): Promise<{ process: { rssBytes: number; pid: number } }>;
}

/** CPU time (ms) and wake-ups (voluntary context switches of its main thread) of process `pid` so far. */
function activity(pid: number): { cpuMs: number; wakeups: number } {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { cpuMs: cpuSeconds(pid) * 1000, wakeups: Number(m?.[1] ?? Number.NaN) };
}

/** The daemon's CPU per second and wake-ups per second over ACTIVITY_MS of what it is doing now. */
async function idleRate(pid: number): Promise<{ cpuMsPerS: number; wakeupsPerS: number }> {
  const a = activity(pid);
  await sleep(ACTIVITY_MS);
  const b = activity(pid);
  const s = ACTIVITY_MS / 1000;
  return { cpuMsPerS: (b.cpuMs - a.cpuMs) / s, wakeupsPerS: (b.wakeups - a.wakeups) / s };
}

/** The daemon's RSS, after a moment for its heap to settle, and its pid (`circuit start` runs it in a process of its own). */
async function daemonRssPid(url: string, key?: string): Promise<{ rss: number; pid: number }> {
  const client = await dialCircuit(url, key);
  try {
    await sleep(500);
    const srv = (await client.walk(`/${client.serverId}`).get()) as PeekableServer;
    const p = (await srv.peek()).process;
    return { rss: p.rssBytes, pid: p.pid };
  } finally {
    await client.close();
  }
}

async function daemonRss(url: string, key?: string): Promise<number> {
  return (await daemonRssPid(url, key)).rss;
}

/** CLIENTS idle clients of the daemon at `url` (keyed with `keyFile` if given), from CROWD_PROCESSES processes, once all are connected. */
async function connectCrowd(ctx: ScenarioContext, url: string, keyFile?: string): Promise<RoleHandle[]> {
  const crowds = Array.from({ length: CROWD_PROCESSES }, () =>
    ctx.procs.role("scale", "crowd", { url, key: keyFile, count: CLIENTS / CROWD_PROCESSES }, 120_000),
  );
  await Promise.all(crowds.map((c) => c.next("ready")));
  return crowds;
}

/** How long a fresh daemon settles before the memory an idle client costs it is measured. */
const FRESH_SETTLE_MS = 5_000;

/**
 * What an idle client costs a fresh daemon: CLIENTS connections from CROWD_PROCESSES processes,
 * keyed (TLS with the cluster key in `keyFile`) or not; the daemon's RSS after, less before, per
 * client. The daemon and the clients are stopped after.
 */
async function clientCost(ctx: ScenarioContext, keyFile?: string): Promise<number> {
  const { url, server } = await startCircuitDaemon(ctx.procs, keyFile === undefined ? [] : ["--key", keyFile]);
  await sleep(FRESH_SETTLE_MS);
  const before = await daemonRss(url, keyFile);
  const crowds = await connectCrowd(ctx, url, keyFile);
  const after = await daemonRss(url, keyFile);
  for (const c of crowds) await ctx.procs.stop(c.child);
  await ctx.procs.stop(server.child);
  return (after - before) / CLIENTS;
}

async function channelsRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const n = Number(args.count);
  for (let i = 0; i < n; i += 100) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + 100); j++)
      batch.push(client.walk(`/${client.serverId}/scale/c${j}`).makeChan(16));
    await Promise.all(batch);
  }
  // The handles are released with the connection: the channels stay, idle.
  await client.close();
  ctx.report("done");
}

/** Fills a channel of capacity BUFFERED with BUFFERED values of BUFFERED_BYTES, 256 sends in flight. */
async function fillRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const ch = (await client.walk(`/${client.serverId}/scale/buffered`).makeChan(BUFFERED)) as unknown as {
    send(v: unknown): Promise<void>;
    stat(): Promise<{ len: number }>;
  };
  const value = new Uint8Array(BUFFERED_BYTES);
  const ring: (Promise<void> | undefined)[] = new Array(256);
  for (let i = 0; i < BUFFERED; i++) {
    const older = ring[i % 256];
    ring[i % 256] = ch.send(value);
    if (older) await older;
  }
  await Promise.all(ring);
  const { len } = await ch.stat();
  if (len !== BUFFERED) throw new Error(`${len} values in the buffer, not ${BUFFERED}`);
  // The connection stays: the values stay in the channel either way, and the scenario ends the daemon.
  ctx.report("done");
  await new Promise(() => {});
}

async function crowdRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const clients = [];
  for (let i = 0; i < Number(args.count); i++) clients.push(await dialCircuit(String(args.url), args.key));
  ctx.report("ready", { clients: clients.length });
  await new Promise(() => {});
}

async function pingPong(ctx: ScenarioContext, url: string, name: string): Promise<Record<string, unknown>> {
  const b = ctx.procs.role("chan-pingpong", "pong", { url, name });
  await b.next("ready");
  const a = ctx.procs.role("chan-pingpong", "ping", {
    url,
    name,
    warmup: PING_WARMUP,
    rounds: PING_ROUNDS,
    seconds: 10,
  });
  const s = await a.next("done");
  await ctx.procs.stop(a.child);
  await ctx.procs.stop(b.child);
  return s;
}

export const scenario: Scenario = {
  name: "scale",
  description: `one daemon, ${CHANNELS} idle channels and ${CLIENTS} idle connections: memory and ping-pong p50; an idle client on a fresh daemon, in the clear and with a key`,
  budgetMs: 180_000,
  async run(ctx: ScenarioContext) {
    const quiet = { id: "scale.quiet", label: "ping-pong p50, daemon otherwise idle" };
    const crowd = {
      id: "scale.crowd",
      label: `ping-pong p50 beside ${CHANNELS / 1000}k idle channels, ${CLIENTS} idle clients`,
    };
    const info: Record<string, unknown> = {};
    try {
      const started = performance.now();
      const { url } = await startCircuitDaemon(ctx.procs);
      const { rss: rssStart, pid } = await daemonRssPid(url);
      // Idle: V8 gives back the young generation it grew while loading the code some seconds after
      // allocation calms down (its memory reducer), so "idle" is measured IDLE_MS after the start.
      // The last ACTIVITY_MS of that wait, with nothing connected, count what the daemon does alone.
      await sleep(Math.max(0, IDLE_MS - ACTIVITY_MS - (performance.now() - started)));
      const alone = await idleRate(pid);
      const rss0 = await daemonRss(url);
      const q = await pingPong(ctx, url, "quiet");
      const rss1 = await daemonRss(url);
      const maker = ctx.procs.role("scale", "channels", { url, count: CHANNELS }, 120_000);
      await maker.next("done");
      const rss2 = await daemonRss(url);
      await connectCrowd(ctx, url);
      const rss3 = await daemonRss(url);
      const withCrowd = await idleRate(pid);
      const c = await pingPong(ctx, url, "crowd");
      const filler = ctx.procs.role("scale", "fill", { url }, 60_000);
      await filler.next("done");
      const rss4 = await daemonRss(url);
      const perBuffered = (rss4 - rss3) / BUFFERED;
      await ctx.procs.closeAll();
      // An idle client on a fresh daemon, in the clear and with a key (made for the run).
      const dir = mkdtempSync(join(tmpdir(), "circuit-bench-scale-"));
      let plainClient: number;
      let keyedClient: number;
      try {
        const keyFile = join(dir, "cluster.key");
        makeClusterKey(keyFile);
        plainClient = await clientCost(ctx);
        keyedClient = await clientCost(ctx, keyFile);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      Object.assign(info, {
        startRssBytes: rssStart,
        idleRssBytes: rss0,
        afterPingPongRssBytes: rss1,
        perChannelBytes: (rss2 - rss1) / CHANNELS,
        perClientBytes: (rss3 - rss2) / CLIENTS,
        crowdRssBytes: rss3,
        perBufferedValueBytes: perBuffered,
        freshPerClientBytes: plainClient,
        freshPerKeyedClientBytes: keyedClient,
        idleCpuMsPerS: alone.cpuMsPerS,
        idleWakeupsPerS: alone.wakeupsPerS,
        crowdIdleCpuMsPerS: withCrowd.cpuMsPerS,
        crowdIdleWakeupsPerS: withCrowd.wakeupsPerS,
      });
      const rate = (r: { cpuMsPerS: number; wakeupsPerS: number }): string =>
        `${r.cpuMsPerS.toFixed(1)} ms CPU/s, ${r.wakeupsPerS.toFixed(1)} wake-ups/s`;
      const mb = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;
      const note =
        `daemon RSS just started ${mb(rssStart)}, idle ${mb(rss0)} (${IDLE_MS / 1000} s after its start), with ${CHANNELS} channels ${mb(rss2)}, with ${CLIENTS} clients too ${mb(rss3)}; ` +
        `≈ ${((rss2 - rss1) / CHANNELS / 1024).toFixed(2)} KiB per idle channel, ` +
        `≈ ${((rss3 - rss2) / CLIENTS / 1024).toFixed(1)} KiB per idle client; ` +
        `≈ ${perBuffered.toFixed(0)} B per ${BUFFERED_BYTES}-byte value waiting in a buffer (${BUFFERED.toLocaleString("en-US")} in one channel); ` +
        `an idle client on a fresh daemon ≈ ${(plainClient / 1024).toFixed(1)} KiB, with a cluster key (TLS) ≈ ${(keyedClient / 1024).toFixed(1)} KiB; ` +
        `sitting idle alone ${rate(alone)}, with the channels and idle clients ${rate(withCrowd)}`;
      ctx.log(`scale: ${note}`);
      return {
        rows: [
          latencyRow(
            quiet.id,
            quiet.label,
            q,
            `daemon RSS just started ${mb(rssStart)}, idle ${mb(rss0)}; sitting idle alone ${rate(alone)}`,
          ),
          latencyRow(crowd.id, crowd.label, c, note),
        ],
        info,
      };
    } catch (e) {
      return {
        rows: [
          latencyRow(quiet.id, quiet.label, { error: errorText(e) }),
          latencyRow(crowd.id, crowd.label, { error: errorText(e) }),
        ],
        info,
      };
    }
  },
  roles: { channels: channelsRole, crowd: crowdRole, fill: fillRole },
};
