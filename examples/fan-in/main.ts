// Fan-in: one consumer selects over three queues that live on three different servers, prints what
// arrives from which server, and gives up once nothing has arrived for IDLE_MS. A producer process
// per queue, each dialled into the server that hosts its queue, feeds it. The idle clock starts with
// the first message: until then it waits up to FIRST_MS, since the producers are whole processes
// that take a moment to start (seconds on a busy machine).
// Usage: node --import tsx examples/fan-in/main.ts [URL] [COUNT] [IDLE_MS]
// With no URL it starts a circuit of three daemons on free loopback ports and stops it at the end.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { type Chan, Daemon, dial, select } from "circuit-ts";
import type { Message } from "./producer.ts";

const here = new URL(".", import.meta.url).pathname;
const [given, count = "5", idle = "3000"] = process.argv.slice(2);
const FIRST_MS = 30_000;

const daemons: Daemon[] = [];
if (!given) {
  const quiet = { addr: "127.0.0.1:0", log: () => {} };
  daemons.push(await Daemon.start(quiet));
  const join = (daemons[0] as Daemon).url;
  for (let i = 0; i < 2; i++) daemons.push(await Daemon.start({ ...quiet, join }));
}
const url = given || (daemons[0] as Daemon).url;
const client = await dial(url);

// A fresh circuit takes a moment to agree on its members.
let servers = await client.servers();
for (const deadline = Date.now() + 10_000; !given && servers.length < 3; servers = await client.servers()) {
  if (Date.now() > deadline) throw new Error("the three daemons did not find each other");
  await sleep(50);
}
servers.sort((a, b) => a.id.localeCompare(b.id));
console.log(`circuit at ${url}: ${servers.length} servers`);

// One queue per server (cycling over them if the circuit has fewer than three).
const queues: Chan<Message>[] = [];
const hostOf: string[] = [];
for (let i = 0; i < 3; i++) {
  const s = servers[i % servers.length] as { id: string; url: string };
  const anchor = client.walk(`/${s.id}/examples/fan-in/q${i}`);
  queues.push(await anchor.openChan<Message>(4));
  hostOf.push(s.id);
}

const producers = queues.map((q, i) => {
  const s = servers[i % servers.length] as { url: string };
  const p = spawn(process.execPath, ["--import", "tsx", `${here}producer.ts`, s.url, q.path, count], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  return once(p, "exit").then(([code]) => code as number | null);
});

let got = 0;
let open = queues.map((_, i) => i);
while (open.length > 0) {
  const wait = got === 0 ? Math.max(FIRST_MS, Number(idle)) : Number(idle);
  try {
    const r = await select(
      open.map((i) => (queues[i] as Chan<Message>).recvCase()),
      { signal: AbortSignal.timeout(wait) },
    );
    const q = open[r.index] as number;
    if (r.closed) {
      open = open.filter((i) => i !== q);
      continue;
    }
    got++;
    console.log(`got "${r.value?.text}" from q${q} on ${hostOf[q]} (${r.value?.producer})`);
  } catch (err) {
    if ((err as Error).name !== "TimeoutError") throw err;
    console.log(`no message for ${wait} ms; giving up after ${got} messages`);
    break;
  }
}

const codes = await Promise.all(producers);
await Promise.all(queues.map((q) => q.scrub().catch(() => {})));
await client.close();
await Promise.all(daemons.map((d) => d.stop()));
process.exit(codes.every((c) => c === 0) ? 0 : 1);
