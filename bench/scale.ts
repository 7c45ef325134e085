// Scenario `scale`: one daemon holding many idle channels and many idle client connections. It
// reports the daemon's RSS idle, the memory each idle channel and each idle client costs, and one
// client's ping-pong p50 quiet and then with the crowd connected (every connection a real TCP
// connection, opened from a few processes).
import { setTimeout as sleep } from "node:timers/promises";
import { dialCircuit } from "./circuit-lib.ts";
import type { RoleContext, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencyRow, startCircuitDaemon } from "./harness.ts";

const CHANNELS = 10_000;
const CLIENTS = 1_000;
const CROWD_PROCESSES = 4;
/** The idle RSS is measured this long after the daemon started. */
const IDLE_MS = 15_000;
const PING_ROUNDS = 3_000;
const PING_WARMUP = 300;

interface PeekableServer {
  peek(): Promise<{ process: { rssBytes: number } }>;
}

/** The daemon's RSS, after a moment for its heap to settle. */
async function daemonRss(url: string): Promise<number> {
  const client = await dialCircuit(url);
  try {
    await sleep(500);
    const srv = (await client.walk(`/${client.serverId}`).get()) as PeekableServer;
    return (await srv.peek()).process.rssBytes;
  } finally {
    await client.close();
  }
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

async function crowdRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const clients = [];
  for (let i = 0; i < Number(args.count); i++) clients.push(await dialCircuit(String(args.url)));
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
  description: `one daemon, ${CHANNELS} idle channels and ${CLIENTS} idle connections: memory and ping-pong p50`,
  budgetMs: 120_000,
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
      const rssStart = await daemonRss(url);
      // Idle: V8 gives back the young generation it grew while loading the code some seconds after
      // allocation calms down (its memory reducer), so "idle" is measured IDLE_MS after the start.
      await sleep(Math.max(0, IDLE_MS - (performance.now() - started)));
      const rss0 = await daemonRss(url);
      const q = await pingPong(ctx, url, "quiet");
      const rss1 = await daemonRss(url);
      const maker = ctx.procs.role("scale", "channels", { url, count: CHANNELS }, 120_000);
      await maker.next("done");
      const rss2 = await daemonRss(url);
      const crowds = Array.from({ length: CROWD_PROCESSES }, () =>
        ctx.procs.role("scale", "crowd", { url, count: CLIENTS / CROWD_PROCESSES }, 120_000),
      );
      await Promise.all(crowds.map((c) => c.next("ready")));
      const rss3 = await daemonRss(url);
      const c = await pingPong(ctx, url, "crowd");
      Object.assign(info, {
        startRssBytes: rssStart,
        idleRssBytes: rss0,
        afterPingPongRssBytes: rss1,
        perChannelBytes: (rss2 - rss1) / CHANNELS,
        perClientBytes: (rss3 - rss2) / CLIENTS,
        crowdRssBytes: rss3,
      });
      const mb = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;
      const note =
        `daemon RSS just started ${mb(rssStart)}, idle ${mb(rss0)} (${IDLE_MS / 1000} s after its start), with ${CHANNELS} channels ${mb(rss2)}, with ${CLIENTS} clients too ${mb(rss3)}; ` +
        `≈ ${((rss2 - rss1) / CHANNELS / 1024).toFixed(2)} KiB per idle channel, ` +
        `≈ ${((rss3 - rss2) / CLIENTS / 1024).toFixed(1)} KiB per idle client`;
      ctx.log(`scale: ${note}`);
      return {
        rows: [
          latencyRow(quiet.id, quiet.label, q, `daemon RSS just started ${mb(rssStart)}, idle ${mb(rss0)}`),
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
  roles: { channels: channelsRole, crowd: crowdRole },
};
