// `circuit join` on one machine (loopback): merging two circuits, and failing with one clear line.
// The same across hosts is in multihost-merge.test.ts.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dial } from "../src/index.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";

const keyA = join(tmpdir(), `circuit-join-a-${process.pid}.key`);
const keyB = join(tmpdir(), `circuit-join-b-${process.pid}.key`);
writeFileSync(keyA, randomBytes(32).toString("hex"), { mode: 0o600 });
writeFileSync(keyB, randomBytes(32).toString("hex"), { mode: 0o600 });

after(async () => {
  await killAll();
  rmSync(keyA, { force: true });
  rmSync(keyB, { force: true });
});

/** The servers a client dialled into `url` sees, as sorted paths, one per line. */
async function view(url: string): Promise<string> {
  const c = await dial(url);
  try {
    return (await c.servers())
      .map((x) => x.path)
      .sort()
      .join("\n");
  } finally {
    await c.close();
  }
}

/** Waits until the view through `url` is `want` (at most `ms`). */
async function converge(url: string, want: string, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  let got = await view(url);
  while (got !== want && Date.now() - t0 < ms) {
    await sleep(100);
    got = await view(url);
  }
  assert.equal(got, want, `view through ${url}`);
}

/** A port on 127.0.0.1 where nothing listens (it did a moment ago). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("circuit join", () => {
  test("merges two circuits: every member of both sees all four", async () => {
    const [a1, b1] = await Promise.all([startDaemon([]), startDaemon([])]);
    const [a2, b2] = await Promise.all([startDaemon(["--join", a1.url]), startDaemon(["--join", b1.url])]);
    await Promise.all([
      converge(
        a2.url,
        [a1, a2]
          .map((d) => `/${d.id}`)
          .sort()
          .join("\n"),
      ),
      converge(
        b2.url,
        [b1, b2]
          .map((d) => `/${d.id}`)
          .sort()
          .join("\n"),
      ),
    ]);
    const r = await runCli(["-d", b2.url, "join", a2.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^joined circuit:\/\/127\.0\.0\.1:\d+\/X[0-9a-f]{16} \([34] members\)\n$/);
    const all = [a1, a2, b1, b2]
      .map((d) => `/${d.id}`)
      .sort()
      .join("\n");
    await Promise.all([a1, a2, b1, b2].map((d) => converge(d.url, all)));
  });

  test("an unreachable URL or a refused key fails with one line and exit 1; a bad URL is usage", async () => {
    const keyed = await startDaemon(["--key", keyA]);
    const other = await startDaemon(["--key", keyB]);
    const gone = await deadPort();
    let r = await runCli(["--key", keyA, "-d", keyed.url, "join", `circuit://127.0.0.1:${gone}`]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^circuit: ServerGone: join circuit://127\\.0\\.0\\.1:${gone}: unreachable \\(ECONNREFUSED\\)\\n$`),
    );
    r = await runCli(["--key", keyA, "-d", keyed.url, "join", other.url]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      // (How the refusal shows depends on timing: a TLS alert, or the connection reset or closed.)
      /^circuit: AuthFailed: join circuit:\/\/.*: refused our cluster key[^\n]*\n$/,
    );
    r = await runCli(["--key", keyA, "-d", keyed.url, "join", "circuit://fd00::1:7711"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^circuit: bad circuit URL .*IPv6 address in brackets/);
    for (const args of [["join"], ["join", "circuit://127.0.0.1:1", "extra"]]) {
      r = await runCli(["-d", keyed.url, ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^circuit: [^\n]+\n$/);
    }
  });
});
