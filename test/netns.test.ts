// test-runner: heavy (network namespaces and timed partitions)
// Multi-machine behaviour on hosts this test makes itself: network namespaces joined by veth pairs
// to a bridge in a hub namespace, all removed afterwards. Multicast discovery, a silent member
// (its link cut) and a partition that heals. Nothing here touches the host's own interfaces.
// Needs root and iproute2 (CI has both); without them the test fails and says why.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CLI, ROOT } from "./helpers/daemon.ts";
import { until } from "./helpers/wait.ts";

const tag = randomBytes(3).toString("hex");
const hub = `cirhub-${tag}`;
const hosts = ["a", "b", "c"].map((h, i) => ({
  ns: `cir${h}-${tag}`,
  dev: `cv${h}${tag}`,
  peer: `cp${h}${tag}`,
  // Private addresses that exist only inside this test's own netns hosts.
  ip: `10.77.${Number.parseInt(tag.slice(0, 2), 16) % 250}.${i + 1}`,
}));
// The multicast group lives only on the netns bridge: every netns host routes 224.0.0.0/4 to it.
const group = `239.77.0.${(Number.parseInt(tag.slice(2, 4), 16) % 250) + 1}:7799`;
const procs = new Set<ChildProcess>();
const dir = mkdtempSync(join(tmpdir(), "circuit-netns-"));
const keyFile = join(dir, "key");

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

function setUp(): void {
  ip("netns", "add", hub);
  ip("-n", hub, "link", "set", "lo", "up");
  ip("-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0");
  ip("-n", hub, "link", "set", "br0", "up");
  for (const h of hosts) {
    ip("netns", "add", h.ns);
    ip("link", "add", h.dev, "netns", h.ns, "type", "veth", "peer", "name", h.peer, "netns", hub);
    ip("-n", h.ns, "link", "set", "lo", "up");
    ip("-n", h.ns, "addr", "add", `${h.ip}/24`, "dev", h.dev);
    ip("-n", h.ns, "link", "set", h.dev, "up");
    ip("-n", h.ns, "link", "set", h.dev, "multicast", "on");
    ip("-n", h.ns, "route", "add", "224.0.0.0/4", "dev", h.dev);
    ip("-n", hub, "link", "set", h.peer, "master", "br0");
    ip("-n", hub, "link", "set", h.peer, "up");
  }
}

function tearDown(): void {
  for (const p of procs) p.kill("SIGKILL");
  for (const ns of [hub, ...hosts.map((h) => h.ns)]) {
    try {
      ip("netns", "del", ns);
    } catch {
      // not created
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Runs the CLI inside a host's namespace. */
function cli(ns: string, args: string[], timeoutMs = 15_000): { code: number; out: string; err: string } {
  try {
    const out = execFileSync("ip", ["netns", "exec", ns, process.execPath, CLI, ...args], {
      cwd: ROOT,
      timeout: timeoutMs,
      env: { ...process.env, CIRCUIT: "", CIRCUIT_KEY: keyFile, CIRCUIT_DISCOVER: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return { code: 0, out: out.toString(), err: "" };
  } catch (e) {
    const err = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
    return { code: err.status ?? -1, out: err.stdout?.toString() ?? "", err: err.stderr?.toString() ?? "" };
  }
}

/** Starts a daemon in a host's namespace; resolves with its URL. */
function daemon(h: (typeof hosts)[number]): Promise<{ url: string; id: string; proc: ChildProcess }> {
  const p = spawn(
    "ip",
    [
      "netns",
      "exec",
      h.ns,
      process.execPath,
      CLI,
      "start",
      "--addr",
      `${h.ip}:7711`,
      "--key",
      keyFile,
      "--discover",
      group,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  procs.add(p);
  let err = "";
  p.stderr?.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error(`daemon in ${h.ns} printed no URL: ${err}`)), 10_000);
    p.stdout?.on("data", (d) => {
      out += d;
      const line = out.split("\n")[0] as string;
      if (out.includes("\n")) {
        clearTimeout(t);
        resolve({ url: line, id: line.slice(line.lastIndexOf("/") + 1), proc: p });
      }
    });
    p.on("exit", (code) => reject(new Error(`daemon in ${h.ns} exited ${code}: ${err}`)));
  });
}

function view(ns: string, url?: string): string[] {
  const r = cli(ns, url ? ["-d", url, "ls", "/"] : ["--discover", group, "ls", "/"], 8000);
  return r.code === 0 ? r.out.trim().split("\n").filter(Boolean).sort() : [];
}

describe("on separate network hosts (namespaces)", () => {
  let ids: string[] = [];
  let urls: string[] = [];
  before(async () => {
    try {
      setUp();
    } catch (e) {
      tearDown();
      const why = (e as { stderr?: Buffer }).stderr?.toString() ?? String(e);
      throw new Error(`cannot create network namespaces (needs root and iproute2): ${why}`);
    }
    writeFileSync(keyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const ds = [];
    for (const h of hosts) ds.push(await daemon(h));
    ids = ds.map((d) => `/${d.id}`).sort();
    urls = ds.map((d) => d.url);
  });
  after(tearDown);

  test("servers find each other by multicast discovery, and a client dials by discovery", async () => {
    for (const h of hosts) await until(`${h.ns} sees all three`, 10_000, () => view(h.ns).join() === ids.join(), 100);
  });

  test("a silent member (link cut) is declared dead within 5 s; the partition heals", async () => {
    const c = hosts[2]!;
    // Cut c's link at the bridge: no packets either way, like a machine that went silent.
    ip("-n", hub, "link", "set", c.peer, "down");
    // Each poll is a CLI run (~0.3 s); the exact 5 s bound is checked with SIGSTOP in cluster.test.ts.
    const took = await until(
      "a and b drop c",
      6500,
      () => [0, 1].every((i) => view(hosts[i]!.ns, urls[i]).length === 2),
      100,
    );
    assert.ok(took <= 6500);
    await until("c, alone, drops a and b", 6500, () => view(c.ns, urls[2]).length === 1, 100);
    // Heal: everybody converges back to one view of three.
    ip("-n", hub, "link", "set", c.peer, "up");
    for (const [i, h] of hosts.entries()) {
      await until(`${h.ns} sees all three again`, 15_000, () => view(h.ns, urls[i]).join() === ids.join(), 100);
    }
  });
});
