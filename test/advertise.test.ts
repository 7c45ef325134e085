// Addresses on one machine (loopback): --advertise and IPv6 URLs. `circuit join` is in
// join-cli.test.ts; the same across hosts in multihost*.test.ts.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dial } from "../src/index.ts";
import { killAll, runCli, spawnCli, startDaemon } from "./helpers/daemon.ts";

after(killAll);

/** A daemon started with `args` (not via startDaemon, which insists on a 127.0.0.1 URL). */
async function start(args: string[], env?: Record<string, string>) {
  const p = spawnCli(["start", ...args], { env });
  let out = "";
  let err = "";
  p.stderr?.on("data", (s: string) => (err += s));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no URL within 10 s: ${err}`)), 10_000);
    // spawnCli collects stdout as Buffers: no setEncoding here.
    p.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("\n")) {
        clearTimeout(t);
        resolve(out.split("\n")[0] as string);
      }
    });
    p.once("exit", (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  return { url, proc: p, stderr: () => err };
}

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

describe("advertised addresses and IPv6 URLs", () => {
  test("--advertise (and CIRCUIT_ADVERTISE) set the URL a daemon prints and gives to peers", async () => {
    const d = await start(["--addr", "127.0.0.1:0", "--advertise", "127.0.0.9"]);
    assert.match(d.url, /^circuit:\/\/127\.0\.0\.9:\d+\/X[0-9a-f]{16}$/, "the bound port, the given host");
    const e = await start(["--addr", "127.0.0.1:0"], { CIRCUIT_ADVERTISE: "[::1]:4567" });
    assert.match(e.url, /^circuit:\/\/\[::1\]:4567\/X[0-9a-f]{16}$/);
  });

  test("a wildcard --advertise, or a bad one, is a usage error", async () => {
    const bad = ["0.0.0.0", "[::]:7711", "no such:host", "[fd00::1"];
    const rs = await Promise.all(bad.map((adv) => runCli(["start", "--addr", "127.0.0.1:0", "--advertise", adv])));
    for (const [i, r] of rs.entries()) {
      assert.equal(r.code, 2, `${bad[i]}: ${r.stderr}`);
      assert.match(r.stderr, /^circuit: .*(advertise|address)/);
    }
  });

  test("a daemon on [::1] prints a bracketed URL; clients dial it and an IPv4 daemon joins it", async () => {
    const six = await start(["--addr", "[::1]:0"]);
    const m = /^circuit:\/\/\[::1\]:(\d+)\/(X[0-9a-f]{16})$/.exec(six.url);
    assert.ok(m, six.url);
    const four = await startDaemon(["--join", `circuit://[::1]:${m[1]}`]);
    const both = [`/${m[2]}`, `/${four.id}`].sort().join("\n");
    await Promise.all([converge(six.url, both), converge(four.url, both)]);
    // The CLI dials the IPv6 daemon by its bracketed URL.
    const ls = await runCli(["-d", six.url, "ls", "/"]);
    assert.equal(ls.stdout.toString().trim().split("\n").sort().join("\n"), both, ls.stderr);
    // The IPv4 daemon routes a request to the IPv6 one through its bracketed URL.
    const r = await runCli(["-d", four.url, "mkchan", `/${m[2]}/c`, "1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(four.stderr(), /joined circuit:\/\/\[::1\]:\d+ \(2 members\)/);
  });
});
