// test-runner: heavy (process timing)
// Processes (DESIGN.md §3.2) through the library against a real daemon: real OS processes, live
// output with backpressure, interactive stdin, signals, scrub, the kept tail, bad commands.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AnchorBusy,
  BadSignal,
  type Client,
  dial,
  type Proc,
  type ProcStat,
  SpawnFailed,
  StreamBroken,
  WrongKind,
} from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { alive, readAll } from "./helpers/streams.ts";
import { until } from "./helpers/wait.ts";

after(killAll);

let d: Daemon;
let c: Client;
let n = 0;
const anchor = (name: string) => c.walk(`/${d.id}/t/${name}-${++n}`);

before(async () => {
  d = await startDaemon();
  c = await dial(d.url);
});
after(async () => {
  await c?.close();
  await d?.stop();
});

const pending = new WeakMap<Readable, { text: string; wake?: () => void; ended: boolean }>();

/**
 * Reads `r` until the text read since the last call satisfies `done` (fails after `ms`); returns
 * that text. The stream stays open for the next call.
 */
async function readUntil(r: Readable, done: (s: string) => boolean, ms = 5000): Promise<string> {
  let st = pending.get(r);
  if (!st) {
    const s: { text: string; wake?: () => void; ended: boolean } = { text: "", ended: false };
    st = s;
    pending.set(r, s);
    r.on("data", (c: Buffer) => {
      s.text += c.toString();
      s.wake?.();
    });
    r.on("end", () => {
      s.ended = true;
      s.wake?.();
    });
    r.on("error", () => {
      s.ended = true;
      s.wake?.();
    });
  }
  const deadline = Date.now() + ms;
  while (!done(st.text)) {
    if (st.ended || Date.now() > deadline) {
      throw new Error(`read ${JSON.stringify(st.text.slice(-200))} without the expected text within ${ms} ms`);
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 100);
      (st as { wake?: () => void }).wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  const got = st.text;
  st.text = "";
  return got;
}

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  return Number(m?.[1] ?? 0) * 1024;
}

describe("process output and input", () => {
  test("output streams live: the first line arrives long before the process exits", async () => {
    const p = await anchor("live").makeProc({ path: "sh", args: ["-c", "echo first; sleep 2; echo second"] });
    const t0 = Date.now();
    const out = p.stdout;
    await readUntil(out, (s) => s.includes("first\n"));
    const first = Date.now() - t0;
    const rest = await readUntil(out, (s) => s.includes("second\n"));
    const second = Date.now() - t0;
    assert.equal(rest, "second\n");
    assert.ok(first < 1000, `first line after ${first} ms`);
    assert.ok(second - first > 1500, `second line ${second - first} ms after the first`);
    assert.equal((await p.wait()).exitCode, 0);
    await p.scrub();
  });

  test("stdin is interactive: cat echoes each line as it is written; ending stdin ends cat", async () => {
    const p = await anchor("cat").makeProc({ path: "cat" });
    const out = p.stdout;
    for (const line of ["hello\n", "interactive world\n", "third\n"]) {
      p.stdin.write(line);
      assert.equal(await readUntil(out, (s) => s.endsWith(line)), line);
    }
    p.stdin.end();
    const st = await p.wait({ signal: AbortSignal.timeout(5000) });
    assert.equal(st.phase, "exited");
    assert.equal(st.exitCode, 0);
    await p.scrub();
  });

  test("a process is reaped when it exits, whatever its stdin; writing after the exit fails", async () => {
    const p = await anchor("exit3").makeProc({ path: "sh", args: ["-c", "exit 3"] });
    const st = await p.wait({ signal: AbortSignal.timeout(5000) });
    assert.equal(st.phase, "exited");
    assert.equal(st.exitCode, 3);
    assert.equal(st.signal, null);
    p.stdin.on("error", () => {}); // the failed write destroys the stream, as for any Writable
    const err = await new Promise<Error | null | undefined>((resolve) => p.stdin.write("late\n", resolve));
    assert.ok(err instanceof StreamBroken, String(err));
    await p.scrub();
  });

  test("with no reader the process never blocks; a late reader gets the last 64 KiB", async () => {
    const p = await anchor("tail").makeProc({
      path: "sh",
      args: ["-c", "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo END"],
    });
    const st = await p.wait({ signal: AbortSignal.timeout(10_000) });
    assert.equal(st.exitCode, 0);
    const tail = await readAll(p.stdout);
    assert.equal(tail.length, 64 * 1024);
    assert.ok(tail.toString().endsWith("xxx\nEND\n"));
    // Each reader is independent and gets the tail again.
    assert.equal((await readAll(p.output(1))).length, 64 * 1024);
    assert.equal((await readAll(p.stderr)).length, 0);
    await p.scrub();
  });

  test("several readers attach and each gets every line", async () => {
    const p = await anchor("multi").makeProc({
      path: "sh",
      args: ["-c", "for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.2; done"],
    });
    const [a, b, e] = await Promise.all([readAll(p.output(1)), readAll(p.output(1)), readAll(p.stderr)]);
    assert.equal(a.toString(), "line1\nline2\nline3\n");
    assert.equal(b.toString(), "line1\nline2\nline3\n");
    assert.equal(e.toString(), "err1\nerr2\nerr3\n");
    await p.scrub();
  });

  test("backpressure: 100 MiB to a slow reader arrives whole, paces the process, and the daemon's memory stays bounded", async () => {
    const total = 100 * 1024 * 1024;
    // stdout: true attaches the reader at the start: every byte, from the first.
    const p = await anchor("flood").makeProc(
      { path: "head", args: ["-c", String(total), "/dev/zero"] },
      { stdout: true },
    );
    const base = rssOf(d.pid);
    let peak = base;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssOf(d.pid));
    }, 50);
    try {
      const it = p.stdout[Symbol.asyncIterator]();
      let got = ((await it.next()).value as Buffer).length;
      // The reader stops for 2 s: head must be blocked, not done.
      await sleep(2000);
      assert.equal((await p.peek()).phase, "running", "a reader that does not read pauses the process");
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        got += (r.value as Buffer).length;
        if (got % (8 * 1024 * 1024) < (r.value as Buffer).length) await sleep(20); // still a slowish reader
      }
      assert.equal(got, total, "lossless");
      const st = await p.wait();
      assert.equal(st.exitCode, 0);
    } finally {
      clearInterval(sampler);
      await p.scrub();
    }
    const grew = peak - base;
    console.log(`daemon RSS: base ${(base / 2 ** 20).toFixed(1)} MiB, peak +${(grew / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(grew < 64 * 1024 * 1024, `daemon RSS grew by ${(grew / 2 ** 20).toFixed(1)} MiB`);
  });
});

describe("process control", () => {
  test("peek shows the command, pid and phase; CPU and RSS move when the child works", async () => {
    const script = [
      "const t = Date.now() + 2500; while (Date.now() < t) {}",
      "globalThis.b = Buffer.alloc(96e6, 1);",
      "setTimeout(() => {}, 30000);",
    ].join("\n");
    const p = await anchor("burn").makeProc({ path: process.execPath, args: ["-e", script] });
    try {
      let st: ProcStat = await p.peek();
      assert.deepEqual(Object.keys(st).sort(), [
        "cmd",
        "cpuPercent",
        "exitCode",
        "exitedAt",
        "limits",
        "oomKilled",
        "phase",
        "pid",
        "rssBytes",
        "signal",
        "startedAt",
      ]);
      assert.equal(st.pid, p.pid);
      assert.equal(st.cmd.path, process.execPath);
      assert.equal(st.phase, "running");
      assert.equal(st.exitedAt, null);
      await until("CPU above 50 %", 5000, async () => (st = await p.peek()).cpuPercent > 50);
      await until("RSS above 96 MB and CPU back down", 8000, async () => {
        st = await p.peek();
        return st.rssBytes > 96e6 && st.cpuPercent < 20;
      });
    } finally {
      await p.scrub();
    }
  });

  test("signals: STOP and CONT change the phase; TERM ends it as signaled SIGTERM; unknown names fail", async () => {
    const p = await anchor("sig").makeProc({ path: "sleep", args: ["100"] });
    await p.signal("STOP");
    await until("stopped", 3000, async () => (await p.peek()).phase === "stopped");
    await p.signal("SIGCONT");
    await until("running", 3000, async () => (await p.peek()).phase === "running");
    await assert.rejects(p.signal("FOO"), BadSignal);
    await assert.rejects(p.signal("SIGNOPE"), BadSignal);
    await p.signal("term");
    const st = await p.wait({ signal: AbortSignal.timeout(5000) });
    assert.equal(st.phase, "signaled");
    assert.equal(st.signal, "SIGTERM");
    assert.equal(st.exitCode, null);
    assert.ok(st.exitedAt);
    await p.signal("KILL"); // after the exit: nothing to signal, not an error
    await p.scrub();
  });

  test("scrub kills the whole process group and removes the element", async () => {
    const a = anchor("group");
    const p = await a.makeProc({ path: "sh", args: ["-c", "sleep 100 & echo $!; wait"] });
    const child = Number((await readUntil(p.stdout, (s) => s.includes("\n"))).trim());
    assert.ok(alive(p.pid) && alive(child));
    await p.scrub();
    assert.equal(alive(p.pid), false, "the leader is gone when scrub resolves");
    await until("the group's other member is gone", 2000, () => !alive(child));
    assert.equal(await a.get(), null);
    const st = await p.wait(); // the handle still learns how it ended
    assert.equal(st.signal, "SIGTERM");
  });

  test("scrub kills a process that ignores TERM with KILL after 5 s", async () => {
    const p = await anchor("stubborn").makeProc({ path: "sh", args: ["-c", "trap '' TERM; echo ready; sleep 100"] });
    await readUntil(p.stdout, (s) => s.includes("ready"));
    const t0 = Date.now();
    await p.scrub();
    const took = Date.now() - t0;
    assert.equal(alive(p.pid), false);
    assert.ok(took >= 4500 && took < 8000, `took ${took} ms`);
    assert.equal((await p.wait()).signal, "SIGKILL");
  });

  test("scrub({ keep: true }) removes the element and lets the process run on", async () => {
    const a = anchor("keep");
    const p = await a.makeProc({ path: "sleep", args: ["100"] });
    await p.scrub({ keep: true });
    assert.equal(await a.get(), null);
    assert.ok(alive(p.pid));
    process.kill(p.pid, "SIGKILL");
  });

  test("scrub: true in the command removes the element at the exit; the handle still waits", async () => {
    const a = anchor("self");
    const p = await a.makeProc({ path: "sh", args: ["-c", "exit 7"], scrub: true });
    const st = await p.wait();
    assert.equal(st.exitCode, 7);
    await until("element gone", 2000, async () => (await a.get()) === null);
    assert.equal((await p.wait()).exitCode, 7);
  });

  test("a wait that is aborted rejects with the reason and leaves the process alone", async () => {
    const p = await anchor("abort").makeProc({ path: "sleep", args: ["100"] });
    await assert.rejects(p.wait({ signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });
    assert.equal((await p.peek()).phase, "running");
    await p.scrub();
  });

  test("env replaces the environment, or is laid over the daemon's with inheritEnv; PATH lookup is the server's", async () => {
    // `env` prints the environment it got; it is found in the daemon's PATH although it gets none.
    const only = await anchor("env").makeProc({ path: "env", env: { FOO: "bar" } });
    assert.equal((await readAll(only.stdout)).toString(), "FOO=bar\n");
    const over = await anchor("env").makeProc({ path: "env", env: { FOO: "baz" }, inheritEnv: true });
    const lines = (await readAll(over.stdout)).toString().split("\n");
    assert.ok(lines.includes("FOO=baz"));
    assert.ok(
      lines.some((l) => l.startsWith("PATH=")),
      "the daemon's environment is there too",
    );
    const dir = await anchor("dir").makeProc({ path: "pwd", dir: "/tmp" });
    assert.equal((await readAll(dir.stdout)).toString(), "/tmp\n");
    await Promise.all([only.scrub(), over.scrub(), dir.scrub()]);
  });

  test("a program that cannot start fails with SpawnFailed and leaves the anchor empty", async () => {
    for (const cmd of [
      { path: "no-such-program-here" },
      { path: "/etc/passwd" },
      { path: "./nope", dir: "/tmp" },
      { path: "sh", dir: "/no/such/dir" },
    ]) {
      const a = anchor("bad");
      await assert.rejects(a.makeProc(cmd), SpawnFailed, JSON.stringify(cmd));
      assert.equal(await a.get(), null, JSON.stringify(cmd));
    }
    const a = anchor("busy");
    const p = await a.makeProc({ path: "sleep", args: ["100"] });
    await assert.rejects(a.makeProc({ path: "true" }), AnchorBusy);
    await p.scrub();
    await assert.rejects(c.walk(`/${d.id}`).makeProc({ path: "true" }), WrongKind);
    await assert.rejects(anchor("t").makeProc({ path: 3 as unknown as string }), TypeError);
    await assert.rejects(anchor("t").makeProc({ path: "sh", args: "x" as unknown as string[] }), TypeError);
  });

  test("get() returns a Proc for a process anchor; peek through the anchor works too", async () => {
    const a = anchor("get");
    await a.makeProc({ path: "sleep", args: ["100"] });
    const p = (await a.get()) as Proc;
    assert.equal(p.kind, "proc");
    assert.equal(((await a.peek()) as ProcStat).pid, p.pid);
    await p.scrub();
  });
});
