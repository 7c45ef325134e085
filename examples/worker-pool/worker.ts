// One worker of the pool: takes jobs from the jobs channel, does a little CPU work on each, and
// reports the job's number on the done channel. Started by the service as a replica, in its own
// OS process: CIRCUIT names the circuit, JOBS and DONE the channels, WORK_MS the work per job.
import { dial } from "circuit-ts";

const client = await dial(process.env.CIRCUIT as string);
// NotFound or WrongKind unless JOBS and DONE name channels.
const jobs = await client.walk(process.env.JOBS as string).getChan<number>();
const done = await client.walk(process.env.DONE as string).getChan<number>();
const workMs = Number(process.env.WORK_MS ?? "1");
const stop = () => void client.close().finally(() => process.exit(0));
process.once("SIGTERM", stop);

for await (const job of jobs.iterate({ prefetch: 8 })) {
  const until = performance.now() + workMs;
  while (performance.now() < until) {
    // the work: burn the CPU a moment
  }
  await done.send(job);
}
await client.close();
