// Starts one process on every server of the circuit and waits for all of them; then prints what
// each wrote (the server kept the tail of its output for us) and removes the elements.
// Usage: node --import tsx examples/wait-all/main.ts [URL]
// With no URL it runs its own circuit of three daemons in this process.
import { text } from "node:stream/consumers";
import { dial } from "circuit-ts";
import { localCircuit } from "../local-circuit.ts";

const given = process.argv[2];
const local = given ? undefined : await localCircuit(3);
const client = await dial(given ?? (local?.url as string));
try {
  const servers = await client.servers();
  const run = `wait-all-${process.pid}`;
  const t0 = Date.now();
  const procs = await Promise.all(
    servers.map((s, i) =>
      client.walk(`${s.path}/${run}`).makeProc({
        path: "sh",
        args: ["-c", `sleep 0.${3 + i}; echo "hello from pid $$ on $(hostname)"`],
      }),
    ),
  );
  console.log(`started ${procs.length} processes: ${procs.map((p) => p.path).join(" ")}`);
  const stats = await Promise.all(procs.map((p) => p.wait()));
  console.log(`all ${stats.length} exited after ${Date.now() - t0} ms`);
  for (const [i, p] of procs.entries()) {
    const out = (await text(p.stdout)).trim();
    console.log(`${p.path}: exit ${stats[i]?.exitCode}: ${out}`);
    await p.scrub();
  }
  if (stats.some((s) => s.exitCode !== 0)) process.exitCode = 1;
} finally {
  await client.close();
  await local?.stop();
}
