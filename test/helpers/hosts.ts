// Hosts for multi-machine tests: network namespaces on a bridge that lives in a "switch"
// namespace, each host with an IPv4 and an IPv6 address that exist only inside these namespaces.
// Daemons and CLI runs happen inside a host with `ip netns exec`. Everything is removed by
// `tearDown()`, and — should the test runner kill the file on a timeout, when `after` hooks do
// not run — by a synchronous last resort on exit or SIGTERM. Names carry a random tag, so runs
// never collide. Needs root and iproute2.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CLI, ROOT } from "./daemon.ts";

export interface Host {
  name: string;
  ns: string;
  dev: string;
  /** The host's end at the switch. */
  peer: string;
  v4: string;
  v6: string;
}

export interface Run {
  code: number | null;
  out: string;
  err: string;
}

export interface HostDaemon {
  url: string;
  id: string;
  proc: ChildProcess;
  /** Date.now() when it was spawned. */
  startedAt: number;
  stderr(): string;
}

export function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Escapes text for use inside a RegExp. */
export function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class Hosts {
  readonly tag = randomBytes(3).toString("hex");
  readonly sw = `cirsw-${this.tag}`;
  readonly hosts: Host[];
  readonly dir = mkdtempSync(join(tmpdir(), "circuit-hosts-"));
  readonly keyFile = join(this.dir, "key");
  private readonly procs = new Set<ChildProcess>();
  private readonly logs: { name: string; stderr: () => string }[] = [];
  private removed = false;
  private readonly lastResort = () => this.removeSync();
  private readonly onTerm = () => {
    this.removeSync();
    process.exit(1);
  };

  /** `n` hosts named A, B, C…, with 10.77.0.i/24 and fd77::i/64. */
  constructor(n: number) {
    this.hosts = Array.from({ length: n }, (_, i) => {
      const h = String.fromCharCode(97 + i);
      return {
        name: h.toUpperCase(),
        ns: `cir${h}-${this.tag}`,
        dev: `hv${h}${this.tag}`,
        peer: `hp${h}${this.tag}`,
        v4: `10.77.0.${i + 1}`,
        v6: `fd77::${i + 1}`,
      };
    });
  }

  /** Creates the namespaces and a cluster key (made with `circuit keygen`). */
  setUp(): void {
    process.once("exit", this.lastResort);
    process.once("SIGTERM", this.onTerm);
    try {
      ip("netns", "add", this.sw);
      ip("-n", this.sw, "link", "set", "lo", "up");
      ip("-n", this.sw, "link", "add", "br0", "type", "bridge");
      ip("-n", this.sw, "link", "set", "br0", "up");
      for (const h of this.hosts) {
        ip("netns", "add", h.ns);
        ip("link", "add", h.dev, "netns", h.ns, "type", "veth", "peer", "name", h.peer, "netns", this.sw);
        ip("-n", h.ns, "link", "set", "lo", "up");
        ip("-n", h.ns, "addr", "add", `${h.v4}/24`, "dev", h.dev);
        // nodad: usable at once, instead of after duplicate address detection (a second or two).
        ip("-n", h.ns, "addr", "add", `${h.v6}/64`, "dev", h.dev, "nodad");
        ip("-n", h.ns, "link", "set", h.dev, "up");
        ip("-n", this.sw, "link", "set", h.peer, "master", "br0");
        ip("-n", this.sw, "link", "set", h.peer, "up");
      }
    } catch (e) {
      this.removeSync();
      const why = (e as { stderr?: Buffer }).stderr?.toString() ?? String(e);
      throw new Error(`cannot create network namespaces (needs root and iproute2): ${why}`);
    }
    this.writeKey(this.keyFile);
  }

  /** Writes a new cluster key made by `circuit keygen` to `file`. */
  writeKey(file: string): void {
    writeFileSync(file, execFileSync(process.execPath, [CLI, "keygen"], { cwd: ROOT }), { mode: 0o600 });
  }

  /** Kills every daemon started here (waiting until they are gone), then removes the namespaces. */
  async tearDown(): Promise<void> {
    const gone = [...this.procs].map(
      (p) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r()))),
    );
    for (const p of this.procs) p.kill("SIGKILL");
    // Unref'd: once they are gone, this wait must not hold the test file open for the rest of it.
    await Promise.race([Promise.all(gone), sleep(5000, undefined, { ref: false })]);
    this.removeSync();
  }

  private removeSync(): void {
    if (this.removed) return;
    this.removed = true;
    process.off("exit", this.lastResort);
    process.off("SIGTERM", this.onTerm);
    for (const p of this.procs) p.kill("SIGKILL");
    for (const ns of [this.sw, ...this.hosts.map((h) => h.ns)]) {
      try {
        // Processes still inside would keep the namespace alive after its name is gone.
        const pids = execFileSync("ip", ["netns", "pids", ns], { stdio: ["ignore", "pipe", "ignore"] });
        for (const pid of pids.toString().split(/\s+/).filter(Boolean)) {
          if (this.ownPid(Number(pid))) process.kill(Number(pid), "SIGKILL");
        }
      } catch {
        // not created, or already gone
      }
      try {
        ip("netns", "del", ns);
      } catch {
        // not created
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Only processes this test started (its daemons and their children) are ever killed. */
  private ownPid(pid: number): boolean {
    for (const p of this.procs) if (p.pid === pid) return true;
    return false;
  }

  private env(extra: Record<string, string>): NodeJS.ProcessEnv {
    return { ...process.env, CIRCUIT: "", CIRCUIT_KEY: "", CIRCUIT_DISCOVER: "", CIRCUIT_ADVERTISE: "", ...extra };
  }

  /** Runs the CLI inside host `h`, with this circuit's key (CIRCUIT_KEY). */
  cli(h: Host, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Run> {
    const p = spawn("ip", ["netns", "exec", h.ns, process.execPath, CLI, ...args], {
      cwd: ROOT,
      env: this.env({ CIRCUIT_KEY: this.keyFile }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    p.stdin.on("error", () => {});
    p.stdin.end(opts.input);
    const t = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
    return new Promise((resolve) =>
      p.once("close", (code) => {
        clearTimeout(t);
        resolve({ code, out, err });
      }),
    );
  }

  /** Starts `circuit start …args` inside host `h`; resolves with the URL it printed first. */
  daemon(h: Host, args: string[]): Promise<HostDaemon> {
    const startedAt = Date.now();
    // `ip netns exec` execs node, so this process is the daemon itself.
    const p = spawn("ip", ["netns", "exec", h.ns, process.execPath, CLI, "start", ...args], {
      cwd: ROOT,
      env: this.env({}),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.procs.add(p);
    let err = "";
    p.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
    this.logs.push({ name: `${h.name} ${args.join(" ")}`, stderr: () => err });
    return new Promise((resolve, reject) => {
      let out = "";
      const t = setTimeout(() => reject(new Error(`daemon on ${h.name} printed no URL: ${err}`)), 15_000);
      p.stdout?.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        if (!out.includes("\n")) return;
        clearTimeout(t);
        const url = out.split("\n")[0] as string;
        resolve({ url, id: url.slice(url.lastIndexOf("/") + 1), proc: p, startedAt, stderr: () => err });
      });
      p.on("exit", (code) => reject(new Error(`daemon on ${h.name} exited ${code}: ${err}`)));
    });
  }

  /** `until`, with every daemon's stderr in the error: what they said is what explains a failure. */
  async until<T>(what: string, ms: number, f: () => Promise<T> | T, ok: (v: T) => boolean): Promise<T> {
    try {
      return await until(what, ms, f, ok);
    } catch (err) {
      const logs = this.logs.map((l) => `--- daemon on ${l.name}:\n${l.stderr()}`).join("");
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
  }

  /** `ls /` through daemon `url` from host `h`: the sorted paths joined by spaces, or why it failed. */
  async view(h: Host, url: string): Promise<string> {
    const r = await this.cli(h, ["-d", url, "ls", "/"], { timeoutMs: 10_000 });
    return r.code === 0 ? r.out.trim().split("\n").filter(Boolean).sort().join(" ") : `failed: ${r.err.trim()}`;
  }
}

/** Polls `f` until `ok` holds of its value; throws with the last value after `ms`. */
export async function until<T>(what: string, ms: number, f: () => Promise<T> | T, ok: (v: T) => boolean): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms; last: ${JSON.stringify(v)}`);
    await sleep(200);
  }
}

/** Lines of `text` that match `pattern`. */
export function count(text: string, pattern: RegExp): number {
  return text.split("\n").filter((l) => pattern.test(l)).length;
}
