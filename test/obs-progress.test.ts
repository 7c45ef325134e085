// Long CLI transfers say how far they are on a terminal (tmux) and nothing when stderr is piped:
// `send` of a large stdin and `fs put`.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { CLI, killAll, runCli, startDaemon } from "./helpers/daemon.ts";

after(killAll);
const dir = mkdtempSync(join(tmpdir(), "circuit-obs-progress-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const socket = `circuit-progress-${process.pid}`;
const session = `progress-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const tmux = (...args: string[]) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" });
after(() => {
  try {
    tmux("kill-session", "-t", session);
  } catch {
    // already gone
  }
});

async function until(what: string, ms: number, ok: (s: string) => boolean): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const s = tmux("capture-pane", "-p", "-t", session);
    if (ok(s)) return s;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms; the screen:\n${s}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("send and fs put show progress on a terminal, wipe it when done, and are silent when piped", async () => {
  const root = join(dir, "root");
  execFileSync("mkdir", ["-p", root]);
  const d = await startDaemon(["--fs-root", root]);
  const c = await dial(d.url);
  try {
    const ch = await c.walk(`/${d.id}/big`).makeChan(1);
    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "20", "sh");
    // stdin stalls for 2 s after 6 MiB: the line says how much has come so far.
    tmux(
      "send-keys",
      "-t",
      session,
      `clear; (head -c 6291456 /dev/zero; sleep 2; head -c 1048576 /dev/zero) | node ${CLI} -d ${d.url} send /${d.id}/big; echo SENT=$?`,
      "Enter",
    );
    await until("send progress", 5000, (s) => /circuit: reading stdin 6\.0 MiB/.test(s));
    const done = await until("send done", 10_000, (s) => s.includes("SENT="));
    assert.match(done, /SENT=0/);
    assert.doesNotMatch(done, /circuit: (reading|sending)/, "the progress line is wiped");
    const v = (await ch.recv()) as Uint8Array;
    assert.equal(v.length, 7 * 1024 * 1024);

    tmux(
      "send-keys",
      "-t",
      session,
      `clear; (head -c 3145728 /dev/zero; sleep 2; head -c 1048576 /dev/zero) | node ${CLI} -d ${d.url} fs put /${d.id}:up.bin; echo PUT=$?`,
      "Enter",
    );
    await until("put progress", 5000, (s) => new RegExp(`circuit: writing /${d.id}:up\\.bin: 3\\.0 MiB`).test(s));
    const put = await until("put done", 10_000, (s) => s.includes("PUT="));
    assert.match(put, /PUT=0/);
    assert.doesNotMatch(put, /circuit: writing/);
    assert.equal(statSync(join(root, "up.bin")).size, 4 * 1024 * 1024);

    // Piped (stderr not a terminal): nothing but the transfer.
    const big = Buffer.alloc(8 * 1024 * 1024, 7);
    const piped = await runCli(["-d", d.url, "fs", "put", `/${d.id}:piped.bin`], { input: big });
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stderr, "");
    assert.equal(readFileSync(join(root, "piped.bin")).length, big.length);
    const recv = ch.recv();
    const sent = await runCli(["-d", d.url, "send", `/${d.id}/big`], { input: big });
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(sent.stderr, "");
    assert.equal(((await recv) as Uint8Array).length, big.length);
  } finally {
    await c.close();
    await d.stop();
  }
});
