// A 3-node nats-server cluster with JetStream on free loopback ports, for the store tests
// (DESIGN §12). Each node runs in its own process with its own store directory; every node is
// tracked and killed when the test file ends, and the directories are removed.

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { connect } from "nats";
import { exited, running } from "./daemon.js";

/** Debian installs nats-server in /usr/sbin, which a non-login PATH may lack. */
export function natsServerPath(): string {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(join(d, "nats-server"), constants.X_OK);
      return join(d, "nats-server");
    } catch {
      // not here
    }
  }
  throw new Error("nats-server is not installed (Debian: apt-get install -y nats-server; .ci/run does it)");
}

/** A free loopback TCP port (the kernel's choice; closed again before nats-server takes it). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface NatsNode {
  port: number;
  clusterPort: number;
  proc: ChildProcess | undefined;
  /** SIGKILLs the node; resolves once it has exited. */
  kill(): Promise<void>;
  /** Starts the node again on the same ports and store directory. */
  restart(): Promise<void>;
}

export interface NatsCluster {
  nodes: NatsNode[];
  /** `nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: the value of `circuit start --store`. */
  url: string;
  /** Kills every node and removes the store directories. */
  stop(): Promise<void>;
}

/** A node that exited before it listened (most often: another process took its port meanwhile). */
class ExitedEarly extends Error {}

/**
 * Waits until `port` takes connections; fails at once, with the last of its stderr, if `proc` exits
 * first, and after `ms` if it neither listens nor exits.
 */
function waitListening(proc: ChildProcess, port: number, ms: number, stderr: () => string): Promise<void> {
  const deadline = performance.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (!running(proc)) {
        reject(new ExitedEarly(`nats-server for port ${port} exited before it listened: ${stderr()}`));
        return;
      }
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", () => {
        s.destroy();
        if (performance.now() > deadline)
          reject(new Error(`nats-server on port ${port} did not listen within ${ms} ms: ${stderr()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** Waits until the cluster's JetStream has a meta leader: an R=size stream can be made and removed. */
async function jetStreamReady(ports: number[], ms: number): Promise<void> {
  const nc = await connect({ servers: ports.map((p) => `127.0.0.1:${p}`), timeout: 2000 });
  const deadline = performance.now() + ms;
  try {
    for (;;) {
      try {
        const jsm = await nc.jetstreamManager({ timeout: 2000 });
        await jsm.streams.add({ name: "circuit_ready", subjects: ["circuit.ready"], num_replicas: ports.length });
        await jsm.streams.delete("circuit_ready");
        return;
      } catch (err) {
        if (performance.now() > deadline)
          throw new Error(`JetStream not ready within ${ms} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await nc.close();
  }
}

/**
 * Starts `size` nats-server nodes (default 3) clustered on loopback, JetStream on, and waits until
 * each listens. The ports are free when chosen but closed again before nats-server binds them, and a
 * connection made meanwhile by another test may take one as its local port: a node that exits before
 * it listens makes the whole cluster start again on fresh ports (three tries).
 */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(size);
    } catch (err) {
      if (!(err instanceof ExitedEarly) || attempt >= 3) throw err;
    }
  }
}

async function startOnce(size: number): Promise<NatsCluster> {
  const bin = natsServerPath();
  const dir = mkdtempSync(join(tmpdir(), "circuit-nats-"));
  const ports = await Promise.all(Array.from({ length: size }, async () => [await freePort(), await freePort()]));
  const routes = ports.map(([, c]) => `nats://127.0.0.1:${c}`).join(",");
  const nodes: NatsNode[] = ports.map(([port, clusterPort], i) => {
    const node: NatsNode = {
      port: port as number,
      clusterPort: clusterPort as number,
      proc: undefined,
      async kill() {
        const p = node.proc;
        if (p && running(p)) {
          p.kill("SIGKILL");
          await exited(p);
        }
      },
      async restart() {
        await node.kill();
        const args = [
          "-a",
          "127.0.0.1",
          "-p",
          String(port),
          "-n",
          `n${i}`,
          "-js",
          "-sd",
          join(dir, `n${i}`),
          "--cluster_name",
          "circuit-test",
          "--cluster",
          `nats://127.0.0.1:${clusterPort}`,
          "--routes",
          routes,
        ];
        const p = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
        // The last lines it wrote, for an error that says why it did not come up.
        let tail = "";
        p.stderr?.setEncoding("utf8").on("data", (d: string) => {
          tail = (tail + d).slice(-600);
        });
        p.once("error", () => {});
        node.proc = p;
        await waitListening(p, port as number, 10_000, () => tail.trim().split("\n").slice(-2).join(" | "));
      },
    };
    return node;
  });
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", () => {
    for (const n of nodes) if (n.proc && running(n.proc)) n.proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await Promise.all(nodes.map((n) => n.restart()));
    await jetStreamReady(
      nodes.map((n) => n.port),
      20_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, url: `nats://${ports.map(([p]) => `127.0.0.1:${p}`).join(",")}`, stop };
}
