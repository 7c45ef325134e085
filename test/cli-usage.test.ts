// Every command, given missing, extra or malformed arguments, answers with one line on stderr and
// exit code 2 — never a stack trace, and never after touching the network (the dial address here
// has nobody listening, so a command that dialled would fail with exit 1 instead).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { killAll, runCli } from "./helpers/daemon.ts";

after(killAll);

const ID = "X0123456789abcdef";
const P = `/${ID}/a`;
/** Port 9 (discard) on loopback: nothing of ours listens there. */
const DEAD = ["-d", "circuit://127.0.0.1:9"];

// [command words, a valid argument list]
const commands: [string[], string[]][] = [
  [["peek"], [P]],
  [["scrub"], [P]],
  [["mkchan"], [P, "1"]],
  [["mk@join"], [P]],
  [["mk@leave"], [P]],
  [["send"], [P]],
  [["recv"], [P]],
  [["close"], [P]],
  [["stop"], [`/${ID}`]],
  [["wait"], [P]],
  [["signal"], [P, "TERM"]],
  [["stdin"], [P]],
  [["stdout"], [P]],
  [["stderr"], [P]],
  [["ports"], [`/${ID}`]],
  [["fs", "cat"], [`/${ID}:f`]],
  [["fs", "put"], [`/${ID}:f`]],
  [["fs", "stat"], [`/${ID}:f`]],
  [["fs", "ls"], [`/${ID}:`]],
];

function assertUsage(r: { code: number | null; stderr: string; stdout: Buffer }, what: string): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}; stderr: ${r.stderr}`);
  assert.match(
    r.stderr,
    /^circuit: [^\n]+\n$/,
    `${what}: one line starting "circuit:" — got ${JSON.stringify(r.stderr)}`,
  );
  assert.ok(!r.stderr.includes("    at "), `${what}: stack trace`);
  assert.equal(r.stdout.length, 0, `${what}: nothing on stdout`);
}

describe("usage errors of every command", () => {
  for (const [words, valid] of commands) {
    const name = words.join(" ");
    test(`${name}: missing, extra and malformed arguments`, async () => {
      assertUsage(await runCli([...DEAD, ...words], { input: "" }), `${name} (no arguments)`);
      assertUsage(
        await runCli([...DEAD, ...words, ...valid, "extra", "more"], { input: "" }),
        `${name} (extra arguments)`,
      );
      const bad = valid.map((a, i) => (i === 0 ? a.replace(/^\//, "") : a));
      assertUsage(await runCli([...DEAD, ...words, ...bad], { input: "" }), `${name} (relative path)`);
      const badId = valid.map((a, i) => (i === 0 ? a.replace(ID, "Xnot-an-id") : a));
      assertUsage(await runCli([...DEAD, ...words, ...badId], { input: "" }), `${name} (bad server ID)`);
    });
  }

  test("malformed values: capacity, signal, timeout, key, discovery group, unknown options", async () => {
    for (const args of [
      ["mkchan", P, "-1"],
      ["mkchan", P, "lots"],
      ["signal", P, "SIGNOPE"],
      ["recv", "--timeout", "soon", P],
      ["send", "--timeout", "-5", P],
      ["--key", "/nonexistent/key", "ls", "/"],
      ["--discover", "not-a-group", "ls", "/"],
      ["ls", "--no-such-option", "/"],
      ["keygen", "a", "b"],
      ["start", "--addr", "nonsense"],
      ["start", "--handshake-ms", "0"],
      ["bogus-command"],
    ]) {
      assertUsage(await runCli([...DEAD, ...args], { input: "", timeoutMs: 10_000 }), args.join(" "));
    }
  });
});
