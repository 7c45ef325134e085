// test-runner: heavy (a real terminal's timing)
// `circuit top` in a real terminal (tmux: send-keys and capture-pane): it shows every server,
// redraws in place as the circuit changes, re-sorts on a key, and `q` leaves the terminal as it
// was (alternate screen gone, cursor shown, exit 0). `--once` prints one plain snapshot.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { CLI, killAll, runCli, startDaemon } from "./helpers/daemon.ts";

after(killAll);

const socket = `circuit-top-${process.pid}`;
const session = `top-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const tmux = (...args: string[]) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" });
after(() => {
  try {
    tmux("kill-session", "-t", session);
  } catch {
    // already gone
  }
});

const screen = () => tmux("capture-pane", "-p", "-t", session);

async function until(what: string, ms: number, ok: (s: string) => boolean): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const s = screen();
    if (ok(s)) return s;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms; the screen:\n${s}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("top shows the servers, refreshes in place, sorts on a key, and q leaves the terminal clean", async () => {
  const a = await startDaemon();
  const b = await startDaemon(["--join", a.url]);
  const c = await dial(a.url);
  let cb: Awaited<ReturnType<typeof dial>> | undefined;
  try {
    for (let i = 0; i < 100 && (await c.servers()).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40", "sh");
    tmux(
      "send-keys",
      "-t",
      session,
      `clear; echo BEFORE-TOP; node ${CLI} -d ${a.url} top --interval 300; echo EXIT=$?`,
      "Enter",
    );
    const s1 = await until("both servers", 10_000, (s) => s.includes(a.id) && s.includes(b.id));
    assert.match(s1, /sort: cpu/);
    assert.equal(tmux("display", "-p", "-t", session, "#{alternate_on}").trim(), "1", "top uses the alternate screen");
    assert.doesNotMatch(s1, /BEFORE-TOP/, "drawn over a clean screen");

    // Refreshes: a channel made now shows up with its len, in place (one header, not two).
    // Made through a client of b itself: this test is about top, not about a client's view of
    // the members (which can miss a member for a while: see the issue #11 note of 2026-12-03).
    cb = await dial(b.url);
    const ch = await cb.walk(`/${b.id}/fresh`).makeChan<string>(4);
    await ch.send("x");
    const s2 = await until("the new channel", 5000, (s) => s.includes(`/${b.id}/fresh`));
    assert.match(s2, new RegExp(`/${b.id}/fresh\\s+chan .*len 1/4`));
    assert.equal(s2.match(/circuit top/g)?.length, 1, "redrawn in place");

    tmux("send-keys", "-t", session, "m");
    await until("sorted by memory", 3000, (s) => /sort: mem/.test(s));
    tmux("send-keys", "-t", session, "r");
    await until("sorted by rate", 3000, (s) => /sort: rate/.test(s));

    tmux("send-keys", "-t", session, "q");
    const after = await until("top quit", 5000, (s) => s.includes("EXIT="));
    assert.match(after, /BEFORE-TOP\s*\nEXIT=0/, "the screen from before top, and exit 0");
    assert.doesNotMatch(after, /circuit top|SERVER/, "nothing of top is left");
    assert.equal(tmux("display", "-p", "-t", session, "#{alternate_on}").trim(), "0");
    assert.equal(tmux("display", "-p", "-t", session, "#{cursor_flag}").trim(), "1", "the cursor is shown again");
  } finally {
    await c.close();
    await cb?.close();
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("top --once prints one plain snapshot with every server and no escape codes", async () => {
  const a = await startDaemon();
  try {
    const p = await runCli(["-d", a.url, "mkproc", `/${a.id}/p`, "--", "sleep", "20"]);
    assert.equal(p.code, 0, p.stderr);
    const r = await runCli(["-d", a.url, "top", "--once", "--interval", "200", "--sort", "mem"]);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.toString();
    assert.ok(!out.includes("\x1b"), "no escape codes");
    assert.match(out, new RegExp(`^${a.id}\\s+127\\.0\\.0\\.1:\\d+`, "m"));
    assert.match(out, new RegExp(`^/${a.id}/p\\s+proc`, "m"));
    assert.match(out, /sort: mem/);
    const json = await runCli(["-d", a.url, "--json", "top", "--once", "--interval", "200"]);
    assert.equal(json.code, 0, json.stderr);
    const snap = JSON.parse(json.stdout.toString()) as {
      servers: { id: string }[];
      rows: { path: string; kind: string }[];
    };
    assert.deepEqual(
      snap.servers.map((s) => s.id),
      [a.id],
    );
    assert.ok(snap.rows.some((r) => r.path === `/${a.id}/p` && r.kind === "proc"));
    const bad = await runCli(["-d", a.url, "top", "--sort", "size"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^circuit: --sort is cpu, mem or rate\n$/);
  } finally {
    await a.stop();
  }
});
