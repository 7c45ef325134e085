// Starts one process on every server of the circuit, takes the first to finish and kills the rest
// (scrub kills the process group: TERM, then KILL after 5 s).
// Usage: node --import tsx examples/wait-first/main.ts [URL]
// With no URL it runs its own circuit of three daemons in this process.
import { dial } from "circuit-ts";
import { localCircuit } from "../local-circuit.ts";

const given = process.argv[2];
const local = given ? undefined : await localCircuit(3);
const client = await dial(given ?? (local?.url as string));
try {
  const servers = await client.servers();
  const run = `wait-first-${process.pid}`;
  // One server, picked at random, gets a short job; the others would take 30 s.
  const lucky = Math.floor(Math.random() * servers.length);
  const procs = await Promise.all(
    servers.map((s, i) => {
      const secs = i === lucky ? 0.5 + Math.random() / 2 : 30;
      return client.walk(`${s.path}/${run}`).makeProc({ path: "sleep", args: [secs.toFixed(2)] });
    }),
  );
  const first = await Promise.race(procs.map((p) => p.wait().then((stat) => ({ p, stat }))));
  console.log(`first: ${first.p.path} exited ${first.stat.exitCode} at ${first.stat.exitedAt}`);
  const rest = procs.filter((p) => p !== first.p);
  await Promise.all(rest.map((p) => p.scrub()));
  await first.p.scrub();
  for (const p of rest) {
    // The element is gone; the handle still learns how its process ended.
    const st = await p.wait();
    console.log(`killed: ${p.path} ${st.phase} ${st.signal ?? st.exitCode}`);
    if (st.phase !== "signaled") process.exitCode = 1;
  }
} finally {
  await client.close();
  await local?.stop();
}
