// Producer: creates the jobs channel (or uses the one there), sends COUNT jobs, then closes it.
// Usage: producer.ts URL [COUNT]
import { dial } from "circuit-ts";

interface Job {
  id: number;
  task: string;
  at: Date;
}

const [url = process.env.CIRCUIT ?? "circuit://127.0.0.1:7711", count = "20"] = process.argv.slice(2);
await using client = await dial(url);
const anchor = client.walk(`/${client.serverId}/examples/jobs`);
// The channel there, or a new one with a buffer of 4: producer and consumer may start in either order.
const jobs = await anchor.openChan<Job>(4);
for (let id = 1; id <= Number(count); id++) {
  // Blocks while the consumer is 4 jobs behind: the channel's buffer is the backpressure.
  await jobs.send({ id, task: `resize image ${id}`, at: new Date() });
  console.log(`produced job ${id}`);
}
await jobs.close();
console.log("producer: done, channel closed");
