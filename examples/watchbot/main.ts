// Runs watchbot: keeps `sh -c 'while :; do date; sleep 1; done'` alive somewhere in the circuit.
// Usage: node --import tsx examples/watchbot/main.ts [URL] [--moves N]
//   With a URL it supervises until SIGINT/SIGTERM (or until the process has moved N times).
//   With no URL it runs its own circuit of three daemons, stops the server that hosts the process
//   once to show the move, and exits.
import { dial } from "circuit-ts";
import { localCircuit } from "../local-circuit.ts";
import { watchbot } from "./watchbot.ts";

const args = process.argv.slice(2);
const movesAt = args.indexOf("--moves");
const maxMoves = movesAt >= 0 ? Number(args.splice(movesAt, 2)[1]) : undefined;
const given = args[0];
const local = given ? undefined : await localCircuit(3);
const client = await dial(given ?? (local?.url as string));
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

let moves = 0;
let starts = 0;
let last: string | undefined;
const log = (line: string) => {
  console.log(line);
  if (line.startsWith("started ")) {
    starts++;
    // "started /XID/watchbot/NAME pid N": a start on another server than the last one is a move.
    const server = line.split(" ")[1]?.split("/")[1];
    if (last !== undefined && server !== last) moves++;
    last = server;
    if (maxMoves !== undefined && moves >= maxMoves) stop.abort();
    // The demo: once the process runs, take its server away (a graceful stop here; kill -9 works too).
    if (local && starts === 1) {
      const victim = local.daemons.find((d) => d.id === server);
      setTimeout(() => {
        console.log(`demo: stopping /${server}`);
        void victim?.stop();
      }, 1000);
    }
    if (local && starts === 2) setTimeout(() => stop.abort(), 1000);
  }
};
try {
  await watchbot(client, {
    name: "date-loop",
    cmd: { path: "sh", args: ["-c", "while :; do date; sleep 1; done"] },
    log,
    signal: stop.signal,
  });
  console.log(`watchbot: done after ${moves} move(s)`);
} finally {
  await client.close();
  await local?.stop();
}
