// The built `circuit` command line, driven the way a user drives it: one OS process per command
// against real daemons on 127.0.0.1 port 0. Blocking is shown by a process that is still running;
// every wait is bounded, and every process a test spawns is killed when the file ends.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChanStat } from "../src/wire/shapes.ts";
import {
  type CliOptions,
  type CliProcess,
  type CliResult,
  type Daemon,
  killAll,
  type RunCliOptions,
  runCli,
  running,
  spawnCli,
  startDaemon,
} from "./helpers/daemon.ts";
import { within } from "./helpers/wait.ts";

after(killAll);

/** One line on stderr, no stack trace. */
function assertOneLine(stderr: string): void {
  assert.match(stderr, /^[^\n]+\n$/, `expected one line on stderr, got ${JSON.stringify(stderr)}`);
  assert.ok(!stderr.includes("    at "), `stack trace on stderr: ${stderr}`);
}

function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
}

/** Exit 1 with `circuit: CODE: message` (or exit 2 with any one line when `code` is omitted). */
function assertFails(r: CliResult, exit: 1 | 2, code?: string): void {
  assert.equal(r.code, exit, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}`);
  assertOneLine(r.stderr);
  if (code) assert.match(r.stderr, new RegExp(`^circuit: ${code}: `));
}

/** Exit 1 because a --timeout expired. */
function assertTimedOut(r: CliResult): void {
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  assertOneLine(r.stderr);
  assert.match(r.stderr, /time/i);
}

/** A port on 127.0.0.1 with nothing listening (it was free a moment ago). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** Commands against one daemon, dialled with `-d URL` before the command. */
class Cli {
  private n = 0;
  constructor(readonly d: Daemon) {}

  get root(): string {
    return `/${this.d.id}`;
  }

  /** A fresh path under the server, so tests never share an anchor. */
  path(name: string): string {
    return `${this.root}/${name}-${++this.n}`;
  }

  run(args: string[], opts?: RunCliOptions): Promise<CliResult> {
    return runCli(["-d", this.d.url, ...args], opts);
  }

  spawn(args: string[], opts?: CliOptions): CliProcess {
    return spawnCli(["-d", this.d.url, ...args], opts);
  }

  async ok(args: string[], opts?: RunCliOptions): Promise<CliResult> {
    const r = await this.run(args, opts);
    assertOk(r);
    return r;
  }

  async mkchan(cap: number, name = "c"): Promise<string> {
    const p = this.path(name);
    await this.ok(["mkchan", p, String(cap)]);
    return p;
  }

  async send(path: string, value: string | Buffer): Promise<void> {
    await this.ok(["send", path], { input: value, timeoutMs: 5_000 });
  }

  async recv(path: string): Promise<string> {
    return (await this.ok(["recv", path], { timeoutMs: 5_000 })).stdout.toString();
  }

  async ls(path: string, ...flags: string[]): Promise<string[]> {
    const out = (await this.ok(["ls", ...flags, path])).stdout.toString();
    return out.split("\n").filter((l) => l !== "");
  }

  async stat(path: string): Promise<ChanStat> {
    return JSON.parse((await this.ok(["peek", path])).stdout.toString()) as ChanStat;
  }

  /** Polls `peek` until `pred` holds (at most 5 s). */
  async until(path: string, pred: (s: ChanStat) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const s = await this.stat(path);
      if (pred(s)) return;
      if (Date.now() > deadline)
        assert.fail(`${path}: ${what} did not happen within 5 s; last stat ${JSON.stringify(s)}`);
      await sleep(50);
    }
  }

  /**
   * Shows that `proc` is blocked: the daemon counts it as waiting, and ~500 ms later the process
   * is still running.
   */
  async assertBlocked(proc: CliProcess, path: string, side: "waitingSenders" | "waitingReceivers"): Promise<void> {
    await this.until(path, (s) => s[side] >= 1, `${side} >= 1`);
    await sleep(500);
    if (!running(proc)) {
      const r = await proc.result;
      assert.fail(`expected a blocked process, but it exited ${r.code}; stderr: ${r.stderr}`);
    }
  }
}

/** A daemon for the tests of one describe block, stopped after them whatever happened. */
function daemonFor(): () => Cli {
  let cli: Cli | undefined;
  before(async () => {
    cli = new Cli(await startDaemon());
  });
  after(async () => {
    await cli?.d.stop();
  });
  return () => {
    assert.ok(cli, "daemon did not start");
    return cli;
  };
}

describe("ls", () => {
  const cli = daemonFor();

  test("ls / prints exactly the server path", async () => {
    const c = cli();
    assert.equal((await c.ok(["ls", "/"])).stdout.toString(), `/${c.d.id}\n`);
  });

  test("ls -l / shows the server's kind and URL", async () => {
    const c = cli();
    const lines = await c.ls("/", "-l");
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0]!.split(/\s+/), [`/${c.d.id}`, "server", c.d.url]);
  });

  test("PATH/... lists recursively, with the intermediate anchors", async () => {
    const c = cli();
    const base = c.path("jobs");
    await c.ok(["mkchan", `${base}/a/q`, "2"]);
    await c.ok(["mkchan", `${base}/b`, "0"]);

    assert.deepEqual(await c.ls(`${base}/...`), [`${base}/a`, `${base}/a/q`, `${base}/b`]);
    assert.deepEqual(await c.ls(base), [`${base}/a`, `${base}/b`]);
    assert.deepEqual(await c.ls(`${base}/a/q`), [], "a channel's anchor has no children");

    const all = await c.ls("/...");
    assert.ok(all.includes(c.root), "/... starts at the servers");
    for (const p of [base, `${base}/a`, `${base}/a/q`, `${base}/b`]) assert.ok(all.includes(p), `${p} in ls /...`);
  });

  test("ls -l PATH/... shows kind and state for elements and none for bare anchors", async () => {
    const c = cli();
    const base = c.path("long");
    await c.ok(["mkchan", `${base}/a/q`, "2"]);
    await c.send(`${base}/a/q`, "x");
    const rows = new Map((await c.ls(`${base}/...`, "-l")).map((l) => [l.split(/\s+/)[0]!, l]));
    assert.deepEqual([...rows.keys()], [`${base}/a`, `${base}/a/q`]);
    assert.match(rows.get(`${base}/a/q`)!, /\schan\s.*cap=2.*len=1/);
    assert.doesNotMatch(rows.get(`${base}/a`)!, /chan/);
  });

  test("--json output parses, before or after the command", async () => {
    const c = cli();
    const base = c.path("json");
    await c.ok(["mkchan", `${base}/q`, "1"]);

    const plain = JSON.parse((await c.ok(["--json", "ls", `${base}/...`])).stdout.toString()) as { path: string }[];
    assert.deepEqual(
      plain.map((e) => e.path),
      [`${base}/q`],
    );
    const long = JSON.parse((await c.ok(["ls", "-l", `${base}/...`, "--json"])).stdout.toString()) as {
      path: string;
      kind?: string;
      state?: string;
    }[];
    assert.equal(long.length, 1);
    assert.equal(long[0]!.path, `${base}/q`);
    assert.equal(long[0]!.kind, "chan");
    assert.equal(typeof long[0]!.state, "string");

    const servers = JSON.parse((await c.ok(["ls", "--json", "/"])).stdout.toString()) as { path: string }[];
    assert.deepEqual(
      servers.map((e) => e.path),
      [c.root],
    );
  });

  test("ls of a missing anchor or server exits 1 with NotFound", async () => {
    const c = cli();
    assertFails(await c.run(["ls", `${c.root}/missing`]), 1, "NotFound");
    assertFails(await c.run(["ls", `${c.root}/missing/...`]), 1, "NotFound");
    assertFails(await c.run(["ls", "/Xffffffffffffffff"]), 1, "NotFound");
  });
});

describe("send and recv", () => {
  const cli = daemonFor();

  test("1 MiB of random bytes arrives byte for byte, buffered and unbuffered", async () => {
    const c = cli();
    const data = randomBytes(1 << 20);

    const buffered = await c.mkchan(1);
    await c.ok(["send", buffered], { input: data });
    const r = await c.ok(["recv", buffered]);
    assert.ok(r.stdout.equals(data), `recv wrote ${r.stdout.length} bytes that differ from the 1 MiB sent`);

    const unbuffered = await c.mkchan(0);
    const s = c.spawn(["send", unbuffered], { input: data });
    const r2 = await c.ok(["recv", unbuffered]);
    assert.ok(r2.stdout.equals(data), `recv wrote ${r2.stdout.length} bytes that differ from the 1 MiB sent`);
    assertOk(await within(5_000, s.result, "send to exit"));
  });

  test("byte values are written raw: an empty value and trailing newlines survive", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    await c.send(ch, "");
    await c.send(ch, "two\nlines\n\n");
    await c.send(ch, Buffer.from([0, 255, 10, 13, 0]));
    assert.equal((await c.ok(["recv", ch])).stdout.length, 0);
    assert.equal(await c.recv(ch), "two\nlines\n\n");
    assert.deepEqual([...(await c.ok(["recv", ch])).stdout], [0, 255, 10, 13, 0]);
  });

  test("--json send of an object: recv prints it as JSON and a newline", async () => {
    const c = cli();
    const ch = await c.mkchan(2);
    const obj = { job: "resize", sizes: [64, 128], meta: { done: false, note: null, ratio: 1.5, name: "ünï" } };
    await c.ok(["--json", "send", ch], { input: JSON.stringify(obj, null, 2) });
    await c.ok(["send", ch, "--json"], { input: JSON.stringify(obj) });
    for (const args of [
      ["recv", ch],
      ["--json", "recv", ch],
    ]) {
      const out = (await c.ok(args)).stdout.toString();
      assert.ok(out.endsWith("\n") && !out.slice(0, -1).includes("\n"), `one line of JSON: ${JSON.stringify(out)}`);
      assert.deepEqual(JSON.parse(out), obj);
    }
  });

  test("--json carries strings, numbers, booleans, null and arrays", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    for (const v of ["hello", "", 42, -0.25, true, null, [1, "a", [false]]]) {
      await c.ok(["--json", "send", ch], { input: JSON.stringify(v) });
      const out = (await c.ok(["recv", ch])).stdout.toString();
      assert.ok(out.endsWith("\n"), `JSON plus a newline: ${JSON.stringify(out)}`);
      assert.deepEqual(JSON.parse(out), v);
    }
  });

  test("--json send of invalid JSON is a usage error and sends nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    assertFails(await c.run(["--json", "send", ch], { input: "{not json" }), 2);
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("values come out in the order they went in", async () => {
    const c = cli();
    const ch = await c.mkchan(5);
    for (const v of ["1", "2", "3", "4", "5"]) await c.send(ch, v);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(await c.recv(ch));
    assert.deepEqual(got, ["1", "2", "3", "4", "5"]);
  });

  test("wrong targets fail with the matching error code", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    assertFails(await c.run(["mkchan", ch, "1"]), 1, "AnchorBusy");
    assertFails(await c.run(["send", `${c.root}/nowhere`], { input: "x" }), 1, "NotFound");
    assertFails(await c.run(["recv", `${c.root}/nowhere`]), 1, "NotFound");
    assertFails(await c.run(["recv", c.root]), 1, "WrongKind");
    assertFails(await c.run(["mkchan", c.root, "1"]), 1, "WrongKind");
  });
});

describe("blocking", () => {
  const cli = daemonFor();

  test("send on an unbuffered channel blocks until a recv takes the value", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "hello" });
    await c.assertBlocked(s, ch, "waitingSenders");
    assert.equal(await c.recv(ch), "hello");
    assertOk(await within(5_000, s.result, "send to exit after the recv"));
  });

  test("recv on an empty channel blocks until a send arrives", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    await c.send(ch, "late");
    const got = await within(5_000, r.result, "recv to exit after the send");
    assertOk(got);
    assert.equal(got.stdout.toString(), "late");
  });

  test("a cap-2 channel takes two sends at once; the third blocks until a recv", async () => {
    const c = cli();
    const ch = await c.mkchan(2);
    await c.send(ch, "a");
    await c.send(ch, "b");
    const third = c.spawn(["send", ch], { input: "c" });
    await c.assertBlocked(third, ch, "waitingSenders");
    assert.equal((await c.stat(ch)).len, 2);

    assert.equal(await c.recv(ch), "a");
    assertOk(await within(5_000, third.result, "third send to exit after a recv"));
    assert.equal(await c.recv(ch), "b");
    assert.equal(await c.recv(ch), "c");
  });

  test("blocked receivers are served first come, first served", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const first = c.spawn(["recv", ch]);
    await c.until(ch, (s) => s.waitingReceivers === 1, "first receiver waiting");
    const second = c.spawn(["recv", ch]);
    await c.until(ch, (s) => s.waitingReceivers === 2, "second receiver waiting");
    const s1 = c.spawn(["send", ch], { input: "one" });
    assertOk(await within(5_000, s1.result, "first send"));
    const s2 = c.spawn(["send", ch], { input: "two" });
    assertOk(await within(5_000, s2.result, "second send"));
    assert.equal((await within(5_000, first.result, "first recv")).stdout.toString(), "one");
    assert.equal((await within(5_000, second.result, "second recv")).stdout.toString(), "two");
  });

  test("a blocked send whose process is killed delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "ghost" });
    await c.assertBlocked(s, ch, "waitingSenders");
    s.kill("SIGKILL");
    await s.result;
    await c.until(ch, (st) => st.waitingSenders === 0, "the dead sender to be forgotten");
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("a blocked recv whose process is killed consumes nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    r.kill("SIGKILL");
    await r.result;
    await c.until(ch, (st) => st.waitingReceivers === 0, "the dead receiver to be forgotten");
    const s = c.spawn(["send", ch], { input: "kept" });
    const got = await c.run(["recv", "--timeout", "5000", ch]);
    assertOk(got);
    assert.equal(got.stdout.toString(), "kept");
    assertOk(await within(5_000, s.result, "send to exit"));
  });
});

describe("close", () => {
  const cli = daemonFor();

  test("buffered values stay receivable after close, then recv fails with ChannelClosed", async () => {
    const c = cli();
    const ch = await c.mkchan(3);
    await c.send(ch, "a");
    await c.send(ch, "b");
    await c.ok(["close", ch]);
    const st = await c.stat(ch);
    assert.equal(st.closed, true);
    assert.equal(st.len, 2);
    assert.equal(await c.recv(ch), "a");
    assert.equal(await c.recv(ch), "b");
    assertFails(await c.run(["recv", ch]), 1, "ChannelClosed");
  });

  test("send after close and a second close fail with ChannelClosed", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.ok(["close", ch]);
    assertFails(await c.run(["send", ch], { input: "late" }), 1, "ChannelClosed");
    assertFails(await c.run(["close", ch]), 1, "ChannelClosed");
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("a blocked send fails with ChannelClosed when the channel is closed", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const s = c.spawn(["send", ch], { input: "v" });
    await c.assertBlocked(s, ch, "waitingSenders");
    await c.ok(["close", ch]);
    assertFails(await within(5_000, s.result, "blocked send to fail"), 1, "ChannelClosed");
  });

  test("a blocked recv fails with ChannelClosed when the channel is closed", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");
    await c.ok(["close", ch]);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ChannelClosed");
  });
});

describe("scrub", () => {
  const cli = daemonFor();

  test("scrub aborts a blocked recv and removes the element and its empty anchors", async () => {
    const c = cli();
    const dir = c.path("scrubbed");
    const ch = `${dir}/q`;
    await c.ok(["mkchan", ch, "0"]);
    const keep = await c.mkchan(0, "keep");
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");

    await c.ok(["scrub", ch]);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ChannelAborted");
    const all = await c.ls(`${c.root}/...`);
    assert.ok(!all.includes(ch), `${ch} still listed`);
    assert.ok(!all.includes(dir), `empty ancestor ${dir} still listed`);
    assert.ok(all.includes(keep), "other anchors stay");
    assertFails(await c.run(["peek", ch]), 1, "NotFound");
    assertFails(await c.run(["scrub", ch]), 1, "NotFound");
  });

  test("scrub aborts a blocked send and drops the buffered values", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "buffered");
    const s = c.spawn(["send", ch], { input: "waiting" });
    await c.assertBlocked(s, ch, "waitingSenders");
    await c.ok(["scrub", ch]);
    assertFails(await within(5_000, s.result, "blocked send to fail"), 1, "ChannelAborted");
    // A new channel at the same anchor starts empty.
    await c.ok(["mkchan", ch, "1"]);
    assert.equal((await c.stat(ch)).len, 0);
  });

  test("scrub of the server element is refused", async () => {
    const c = cli();
    assertFails(await c.run(["scrub", c.root]), 1, "WrongKind");
    assert.deepEqual(await c.ls("/"), [c.root]);
  });
});

describe("--timeout", () => {
  const cli = daemonFor();

  test("recv --timeout on an empty channel exits 1 and consumes nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    const t0 = Date.now();
    assertTimedOut(await c.run(["recv", "--timeout", "300", ch], { timeoutMs: 10_000 }));
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 5_000, `recv --timeout 300 took ${took} ms`);
    await c.until(ch, (s) => s.waitingReceivers === 0, "the timed-out receiver to be gone");

    // Were the timed-out recv still registered, this send would hand it the value and the recv
    // below would wait in vain.
    const s = c.spawn(["send", ch], { input: "after" });
    const r = await c.run(["recv", "--timeout", "5000", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "after");
    assertOk(await within(5_000, s.result, "send to exit"));
  });

  test("send --timeout on a full channel exits 1 and delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "first");
    const t0 = Date.now();
    assertTimedOut(await c.run(["send", "--timeout", "300", ch], { input: "late", timeoutMs: 10_000 }));
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 5_000, `send --timeout 300 took ${took} ms`);
    await c.until(ch, (s) => s.waitingSenders === 0, "the timed-out sender to be gone");
    assert.equal((await c.stat(ch)).len, 1);

    assert.equal(await c.recv(ch), "first");
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("send --timeout on an unbuffered channel with no receiver exits 1 and delivers nothing", async () => {
    const c = cli();
    const ch = await c.mkchan(0);
    assertTimedOut(await c.run(["send", ch, "--timeout", "300"], { input: "late", timeoutMs: 10_000 }));
    assertTimedOut(await c.run(["recv", "--timeout", "500", ch]));
  });

  test("recv --timeout with a value ready returns it", async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "ready");
    const r = await c.run(["recv", "--timeout", "1000", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "ready");
  });

  test("recv --timeout 0 takes a value that is already there", {}, async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    await c.send(ch, "ready");
    const r = await c.run(["recv", "--timeout", "0", ch]);
    assertOk(r);
    assert.equal(r.stdout.toString(), "ready");
  });

  test("send --timeout limits the wait for the channel, not for stdin", {}, async () => {
    const c = cli();
    const ch = await c.mkchan(1);
    const s = c.spawn(["send", "--timeout", "500", ch], { openStdin: true });
    s.stdin!.write("slow ");
    await sleep(1_000);
    s.stdin!.end("producer");
    assertOk(await within(5_000, s.result, "send to exit"));
    assert.equal(await c.recv(ch), "slow producer");
  });
});

describe("peek", () => {
  const cli = daemonFor();

  test("peek /XID prints the server element with its id, url and pid", async () => {
    const c = cli();
    const s = JSON.parse((await c.ok(["peek", c.root])).stdout.toString()) as Record<string, unknown>;
    assert.equal(s.id, c.d.id);
    assert.equal(s.url, c.d.url);
    for (const k of ["startedAt", "joinedAt", "version", "host", "process", "elements"])
      assert.ok(k in s, `${k} in ${Object.keys(s)}`);
    assert.equal((s.process as { pid: number }).pid, c.d.pid);
    assert.equal(typeof (s.host as { cpus: unknown }).cpus, "number");
  });

  test("peek of a channel prints exactly the stat fields", async () => {
    const c = cli();
    const ch = await c.mkchan(4);
    await c.send(ch, "one");
    await c.send(ch, "two");
    await c.recv(ch);
    assert.deepEqual(await c.stat(ch), {
      cap: 4,
      len: 1,
      closed: false,
      aborted: false,
      numSend: 2,
      numRecv: 1,
      waitingSenders: 0,
      waitingReceivers: 0,
    });
    await c.ok(["close", ch]);
    assert.equal((await c.stat(ch)).closed, true);
  });

  test("peek of an anchor without an element exits 1 with NotFound", async () => {
    const c = cli();
    const dir = c.path("dir");
    await c.ok(["mkchan", `${dir}/q`, "0"]);
    assertFails(await c.run(["peek", dir]), 1, "NotFound");
    assertFails(await c.run(["peek", `${c.root}/nothing`]), 1, "NotFound");
  });
});

describe("dial selection", () => {
  const cli = daemonFor();
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "circuit-cli-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("-d and --dial before or after the command", async () => {
    const c = cli();
    const want = `${c.root}\n`;
    for (const args of [
      ["-d", c.d.url, "ls", "/"],
      ["ls", "/", "-d", c.d.url],
      ["ls", "-d", c.d.url, "/"],
      ["--dial", c.d.url, "ls", "/"],
      [`--dial=${c.d.url}`, "ls", "/"],
    ]) {
      const r = await runCli(args);
      assertOk(r);
      assert.equal(r.stdout.toString(), want, args.join(" "));
    }
  });

  test("a URL without the server ID dials too", async () => {
    const c = cli();
    const r = await runCli(["-d", c.d.url.replace(/\/X[0-9a-f]{16}$/, ""), "ls", "/"]);
    assertOk(r);
    assert.equal(r.stdout.toString(), `${c.root}\n`);
  });

  test("env CIRCUIT as a URL and as a file holding one", async () => {
    const c = cli();
    const file = join(dir, "circuit.url");
    writeFileSync(file, `${c.d.url}\n`);
    for (const value of [c.d.url, file]) {
      const r = await runCli(["ls", "/"], { env: { CIRCUIT: value } });
      assertOk(r);
      assert.equal(r.stdout.toString(), `${c.root}\n`, `CIRCUIT=${value}`);
    }
  });

  test("-d wins over env CIRCUIT", async () => {
    const c = cli();
    const r = await runCli(["-d", c.d.url, "ls", "/"], { env: { CIRCUIT: `circuit://127.0.0.1:${await deadPort()}` } });
    assertOk(r);
    assert.equal(r.stdout.toString(), `${c.root}\n`);
  });

  test("env CIRCUIT that is neither a URL nor a file is a usage error", async () => {
    assertFails(await runCli(["ls", "/"], { env: { CIRCUIT: join(dir, "no-such-file") } }), 2);
  });

  test("dialling a port with nothing listening exits 1 with one line naming the address", async () => {
    const port = await deadPort();
    const r = await runCli(["-d", `circuit://127.0.0.1:${port}`, "ls", "/"], { timeoutMs: 12_000 });
    assertFails(r, 1);
    assert.ok(r.stderr.includes(`127.0.0.1:${port}`), r.stderr);
  });

  test("the error for an unreachable server says it cannot be reached", {}, async () => {
    const port = await deadPort();
    const r = await runCli(["-d", `circuit://127.0.0.1:${port}`, "ls", "/"], { timeoutMs: 12_000 });
    assertFails(r, 1);
    assert.match(r.stderr, /(can ?not|could not|unable to) (reach|connect)|unreachable/i);
    assert.doesNotMatch(r.stderr, /lost connection/i);
  });
});

describe("usage errors", () => {
  const cli = daemonFor();
  const X = () => cli().root;

  // Each case gets the live daemon's URL, so a case can only pass by being refused as a usage error.
  const cases: [string, () => string[], string?][] = [
    ["unknown command", () => ["frobnicate", "/"]],
    ["unknown option", () => ["ls", "--frob", "/"]],
    ["mkchan without arguments", () => ["mkchan"]],
    ["mkchan without a capacity", () => ["mkchan", `${X()}/u1`]],
    ["mkchan with an extra argument", () => ["mkchan", `${X()}/u1`, "1", "2"]],
    ["peek without a path", () => ["peek"]],
    ["send without a path", () => ["send"], "x"],
    ["recv without a path", () => ["recv"]],
    ["ls with two paths", () => ["ls", "/", "/"]],
    ["close with an extra argument", () => ["close", `${X()}/u1`, "x"]],
    ["stop without a path", () => ["stop"]],
    ["capacity -1", () => ["mkchan", `${X()}/u2`, "-1"]],
    ["capacity x", () => ["mkchan", `${X()}/u2`, "x"]],
    ["capacity 1000001", () => ["mkchan", `${X()}/u2`, "1000001"]],
    ["capacity 1.5", () => ["mkchan", `${X()}/u2`, "1.5"]],
    ["relative path", () => ["mkchan", "jobs/q", "1"]],
    ["relative path for peek", () => ["peek", "jobs"]],
    ["first name not a server ID", () => ["mkchan", "/jobs/q", "1"]],
    ["server ID in upper case", () => ["peek", X().toUpperCase()]],
    ["anchor name with a bad character", () => ["mkchan", `${X()}/bad!name`, "1"]],
    ["empty anchor name", () => ["mkchan", `${X()}/a//b`, "1"]],
    ["--timeout x", () => ["recv", `${X()}/u3`, "--timeout", "x"]],
    ["--timeout -5", () => ["recv", "--timeout", "-5", `${X()}/u3`]],
    ["--timeout 1.5", () => ["send", "--timeout", "1.5", `${X()}/u3`], "x"],
    ["--timeout without a value", () => ["recv", `${X()}/u3`, "--timeout"]],
    ["-d with a bad URL", () => ["ls", "/", "-d", "http://127.0.0.1:1"]],
    ["start --join x", () => ["start", "--addr", "127.0.0.1:0", "--join", "x"]],
    ["start --data without a directory", () => ["start", "--addr", "127.0.0.1:0", "--data"]],
    ["start --key", () => ["start", "--addr", "127.0.0.1:0", "--key", "/nonexistent"]],
    ["--key", () => ["--key", "/nonexistent", "ls", "/"]],
    ["--discover with a bad group", () => ["--discover", "nonsense", "ls", "/"]],
  ];

  for (const [name, args, input] of cases) {
    test(`${name}: exit 2, one line on stderr`, async () => {
      const r = await cli().run(args(), { input, timeoutMs: 10_000 });
      assertFails(r, 2);
      assert.equal(r.stdout.length, 0, `nothing on stdout: ${r.stdout}`);
    });
  }

  test("no usage error created anything", async () => {
    const c = cli();
    assert.deepEqual(await c.ls(`${c.root}/...`), []);
    assert.deepEqual(await c.ls("/"), [c.root], "start --join x left no second server behind");
  });

  test("bad paths are refused before dialling", {}, async () => {
    const dead = `circuit://127.0.0.1:${await deadPort()}`;
    const id = cli().d.id;
    for (const args of [
      ["mkchan", "/jobs/q", "1"],
      ["peek", `/${id.toUpperCase()}`],
      ["mkchan", `/${id}/bad!name`, "1"],
      ["recv", `/${id}/a//b`],
    ]) {
      const r = await runCli(["-d", dead, ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}; stderr: ${r.stderr}`);
    }
  });
});

describe("stop", () => {
  test("stop /XID makes the daemon exit with code 0", async (t) => {
    const d = await startDaemon();
    t.after(() => d.stop());
    const c = new Cli(d);
    assertFails(await c.run(["stop", `${c.root}/not-a-server`]), 1);
    assertFails(await c.run(["stop", "/Xffffffffffffffff"]), 1, "NotFound");
    assert.ok(running(d.proc), "a failed stop leaves the daemon running");

    assertOk(await c.run(["stop", c.root]));
    const { code, signal } = await within(5_000, d.exited, "daemon to exit after stop");
    assert.equal(code, 0, `daemon exit ${code} (signal ${signal}); stderr: ${d.stderr()}`);
    assertFails(await c.run(["ls", "/"]), 1);
  });

  test("SIGTERM stops the daemon with code 0, and a blocked client fails with ServerGone", async (t) => {
    const d = await startDaemon();
    t.after(() => d.stop());
    const c = new Cli(d);
    const ch = await c.mkchan(0);
    const r = c.spawn(["recv", ch]);
    await c.assertBlocked(r, ch, "waitingReceivers");

    d.kill("SIGTERM");
    const { code, signal } = await within(5_000, d.exited, "daemon to exit after SIGTERM");
    assert.equal(code, 0, `daemon exit ${code} (signal ${signal}); stderr: ${d.stderr()}`);
    assertFails(await within(5_000, r.result, "blocked recv to fail"), 1, "ServerGone");
  });
});
