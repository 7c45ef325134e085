// Consumer: takes jobs until the channel is closed and drained, or gives up after IDLE_MS without
// a job. Usage: consumer.ts URL [IDLE_MS]
import { ChannelClosed, dial } from "circuit-ts";

const [url = process.env.CIRCUIT ?? "circuit://127.0.0.1:7711", idle = "10000"] = process.argv.slice(2);
await using client = await dial(url);
const anchor = client.walk(`/${client.serverId}/examples/jobs`);

// The channel there, or a new one with a buffer of 4: whoever starts first makes it (atomically).
const jobs = await anchor.openChan<{ id: number; task: string }>(4);

let done = 0;
for (;;) {
  try {
    const job = await jobs.recv({ signal: AbortSignal.timeout(Number(idle)) });
    done++;
    console.log(`consumed job ${job.id}: ${job.task}`);
  } catch (err) {
    if (err instanceof ChannelClosed) {
      console.log(`consumer: channel closed after ${done} jobs`);
      break;
    }
    if ((err as Error).name === "TimeoutError") {
      console.log(`consumer: no job for ${idle} ms after ${done} jobs, giving up`);
      process.exitCode = 1;
      break;
    }
    throw err;
  }
}
await jobs.scrub().catch(() => {});
