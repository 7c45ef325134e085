// Stream messages count in a receiver's acknowledgements like values (DESIGN §3.1): a consumer that
// iterated two stream messages and two values, its window holding more, then is killed with -9,
// leaves every value it was not handed in the channel. (The daemon once counted only values among
// the handed-out items, so the client's acknowledgement of four items took four values, two of them
// never handed to the program, and they were lost with it.)
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { exited, killAll, ROOT, startDaemon } from "./helpers/daemon.ts";

after(killAll);

test("a consumer killed after an acknowledgement that covered stream messages loses no value", async () => {
  const d = await startDaemon();
  const client = await dial(d.url);
  try {
    const ch = await client.walk(`/${d.id}/mixed`).makeChan<number>(16);
    for (const tag of ["one", "two"]) {
      const w = ch.sendStream();
      w.end(Buffer.from(`stream ${tag}`));
      await w.sent;
    }
    for (let i = 1; i <= 6; i++) await ch.send(i);
    const fixture = new URL("./fixtures/stream-iterate-consumer.mjs", import.meta.url).pathname;
    // Handed: s, s, 1, 2 — the fifth next() acknowledges those four and hands out 3.
    const proc = spawn(process.execPath, [fixture, d.url, ch.path, "5"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      proc.stdout.setEncoding("utf8").on("data", (s: string) => {
        out += s;
        if (out.includes("stopped\n")) resolve();
      });
      proc.once("exit", () => reject(new Error(`consumer exited early: ${out}`)));
    });
    assert.deepEqual(out.trim().split("\n"), ["s", "s", "1", "2", "3", "stopped"]);
    proc.kill("SIGKILL");
    await exited(proc);
    // 3 was handed out and not acknowledged (it may come again); 4, 5 and 6 were never handed out.
    const left: number[] = [];
    await ch.close();
    for await (const v of ch.iterate()) left.push(v as number);
    assert.ok(left.includes(4) && left.includes(5) && left.includes(6), `left in the channel: ${left.join(", ")}`);
    assert.deepEqual(
      left.filter((v) => v !== 3),
      [4, 5, 6],
    );
  } finally {
    await client.close();
  }
});
