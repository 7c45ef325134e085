// Producer: sends COUNT messages into the queue at PATH, a little apart, then exits.
// Usage: producer.ts URL PATH [COUNT]
import { setTimeout as sleep } from "node:timers/promises";
import { dial } from "circuit-ts";

export interface Message {
  producer: string;
  n: number;
  text: string;
}

const [url = process.env.CIRCUIT ?? "circuit://127.0.0.1:7711", path = "", count = "5"] = process.argv.slice(2);
const client = await dial(url);
const queue = await client.walk(path).getChan<Message>(); // NotFound or WrongKind if there is no queue
const me = `producer ${process.pid} on ${client.serverId}`;
for (let n = 1; n <= Number(count); n++) {
  // Blocks while the queue's buffer is full: the consumer sets the pace.
  await queue.send({ producer: me, n, text: `reading ${n} from ${path.split("/").pop()}` });
  await sleep(20 + Math.floor(Math.random() * 80));
}
console.log(`${me}: sent ${count}`);
await client.close();
