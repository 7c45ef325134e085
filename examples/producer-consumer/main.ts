// Runs the pair: a consumer process and a producer process on one channel. With no URL it starts
// its own daemon on a free loopback port and stops it at the end.
// Usage: node --import tsx examples/producer-consumer/main.ts [URL] [COUNT]
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Daemon } from "circuit-ts";

const here = new URL(".", import.meta.url).pathname;
const [given, count = "20"] = process.argv.slice(2);
const daemon = given ? undefined : await Daemon.start({ addr: "127.0.0.1:0", log: () => {} });
const url = given || (daemon as Daemon).url;
console.log(`using ${url}`);

const run = (name: string, args: string[]) => {
  const p = spawn(process.execPath, ["--import", "tsx", `${here}${name}.ts`, url, ...args], { stdio: "inherit" });
  return once(p, "exit").then(([code]) => code as number);
};
const consumer = run("consumer", ["10000"]);
const producer = run("producer", [count]);
const [pc, cc] = await Promise.all([producer, consumer]);
await daemon?.stop();
process.exit(pc || cc);
