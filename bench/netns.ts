// Two network namespaces joined by a veth pair, for a scenario whose server is on another host:
// "near" (10.79.0.1), where the clients run, and "far" (10.79.0.2), where the server runs. Between
// them a real network device with an Ethernet MTU of 1,500 bytes, where loopback has 65,536. The
// addresses exist only inside the two namespaces. Needs root and iproute2; names carry a random
// tag, so runs never collide; down() removes both, and an exit hook does if the bench exits first.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
}

export class Link {
  readonly tag = randomBytes(3).toString("hex");
  readonly near = `cbnear-${this.tag}`;
  readonly far = `cbfar-${this.tag}`;
  readonly nearAddr = "10.79.0.1";
  readonly farAddr = "10.79.0.2";
  private readonly nearDev = `cbn${this.tag}`;
  private readonly farDev = `cbf${this.tag}`;
  private readonly onExit = () => this.down();

  /** Why no link can be made here, or undefined if one can. */
  static unavailable(): string | undefined {
    if (process.platform !== "linux") return "needs Linux network namespaces";
    if (process.getuid?.() !== 0) return "needs root (ip netns add)";
    try {
      execFileSync("ip", ["-V"], { stdio: "ignore", timeout: 10_000 });
    } catch {
      return "needs iproute2 (the ip command)";
    }
    return undefined;
  }

  up(): void {
    process.on("exit", this.onExit);
    ip("netns", "add", this.near);
    ip("netns", "add", this.far);
    ip("link", "add", this.nearDev, "netns", this.near, "type", "veth", "peer", "name", this.farDev, "netns", this.far);
    for (const [ns, dev, addr] of [
      [this.near, this.nearDev, this.nearAddr],
      [this.far, this.farDev, this.farAddr],
    ] as const) {
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", ns, "addr", "add", `${addr}/24`, "dev", dev);
      ip("-n", ns, "link", "set", dev, "up");
    }
    // A veth pair's carrier comes up a moment after both ends are set up; a daemon bound to
    // 0.0.0.0 before then would find no address but loopback's to name.
    const until = Date.now() + 5_000;
    for (const [ns, dev] of [
      [this.near, this.nearDev],
      [this.far, this.farDev],
    ] as const) {
      while (!/state UP/.test(execFileSync("ip", ["-n", ns, "-o", "link", "show", "dev", dev], { encoding: "utf8" }))) {
        if (Date.now() > until) throw new Error(`${dev} in ${ns} is not up after 5 s`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  }

  /** Removes both namespaces (and with them the veth pair); safe to call twice. */
  down(): void {
    process.off("exit", this.onExit);
    for (const ns of [this.near, this.far]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // not there (never made, or removed already)
      }
    }
  }
}
