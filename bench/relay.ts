// Scenario `relay`: producer → relay → consumer over loopback TCP with 100-byte length-prefixed
// frames and writes coalesced per event-loop turn. No broker can beat a Node process that only
// moves frames, so this is the ceiling for a Node daemon on this machine. Two relays are measured:
// one that walks frame boundaries and re-batches each frame (what a daemon must at least do) and
// one that pipes bytes blindly. Round trips are measured through the byte pipe, and through a hub
// that does only what Go's rendezvous over two unbuffered channels needs (the floor of that pattern).
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Procs, RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencyRow, latencySummary } from "./harness.ts";

const FRAME_BYTES = 100;
const FRAMES = 5_000_000;
const SECONDS = 5;
const CHUNK_BYTES = 64 * 1024;
// A fresh chunk is taken once the current one has less room than this, so small flushes share
// one allocation and big ones do not fragment.
const MIN_ROOM = 4 * 1024;
const FRAMES_PER_TURN = Math.floor(CHUNK_BYTES / FRAME_BYTES);

/**
 * Copies frames into large chunks and writes them once per event-loop turn; one write per frame
 * costs a syscall per frame and caps a Node relay at roughly a tenth of this rate.
 */
class WriteBatcher {
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private start = 0;
  private used = 0;
  private sealed: Buffer[] = [];
  private scheduled = false;

  constructor(
    private readonly socket: Socket,
    private readonly afterFlush: () => void = () => {},
  ) {}

  push(bytes: Uint8Array): void {
    if (this.used + bytes.length > this.chunk.length) this.seal(true);
    if (bytes.length > this.chunk.length) {
      this.sealed.push(Buffer.from(bytes));
    } else {
      this.chunk.set(bytes, this.used);
      this.used += bytes.length;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private seal(full: boolean): void {
    // Bytes before `used` are never written again, so the slice can go to the socket as is.
    if (this.used > this.start) this.sealed.push(this.chunk.subarray(this.start, this.used));
    this.start = this.used;
    if (full || this.chunk.length - this.used < MIN_ROOM) {
      this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      this.start = 0;
      this.used = 0;
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    this.seal(false);
    const out = this.sealed;
    this.sealed = [];
    if (out.length === 1) {
      this.socket.write(out[0] as Buffer);
    } else if (out.length > 1) {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
    this.afterFlush();
  };
}

/**
 * Returns a function to feed with socket chunks; it calls `onFrame` once per whole frame (4-byte
 * big-endian length, then that many bytes), including frames split across chunks.
 */
function frameSplitter(onFrame: (buf: Buffer, start: number, end: number) => void): (chunk: Buffer) => void {
  let partial: Buffer | null = null;
  return (chunk) => {
    let off = 0;
    if (partial) {
      if (partial.length < 4) {
        const take = Math.min(4 - partial.length, chunk.length);
        partial = Buffer.concat([partial, chunk.subarray(0, take)]);
        off = take;
        if (partial.length < 4) return;
      }
      const total = 4 + partial.readUInt32BE(0);
      const take = Math.min(total - partial.length, chunk.length - off);
      partial = Buffer.concat([partial, chunk.subarray(off, off + take)]);
      off += take;
      if (partial.length < total) return;
      onFrame(partial, 0, total);
      partial = null;
    }
    while (chunk.length - off >= 4) {
      const end = off + 4 + chunk.readUInt32BE(off);
      if (end > chunk.length) break;
      onFrame(chunk, off, end);
      off = end;
    }
    if (off < chunk.length) partial = Buffer.from(chunk.subarray(off));
  };
}

async function listen(): Promise<{ server: ReturnType<typeof createServer>; port: number }> {
  const server = createServer({ noDelay: true });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return { server, port: addr.port };
}

async function dialPort(port: number): Promise<Socket> {
  const socket = connect({ port, host: "127.0.0.1", noDelay: true });
  await once(socket, "connect");
  return socket;
}

async function relayRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const input = await listen();
  const output = await listen();
  ctx.report("ready", { inPort: input.port, outPort: output.port });
  const [[consumer], [producer]] = (await Promise.all([
    once(output.server, "connection"),
    once(input.server, "connection"),
  ])) as [[Socket], [Socket]];
  consumer.setNoDelay(true);
  producer.setNoDelay(true);
  if (args.mode === "pipe") {
    producer.pipe(consumer);
    return;
  }
  if (args.mode === "echo") {
    // Both ways, for round trips: the pinger is the "producer", the echoer the "consumer".
    producer.pipe(consumer);
    consumer.pipe(producer);
    return;
  }
  const out = new WriteBatcher(consumer, () => {
    if (consumer.writableNeedDrain && !producer.isPaused()) {
      producer.pause();
      consumer.once("drain", () => producer.resume());
    }
  });
  producer.on(
    "data",
    frameSplitter((buf, start, end) => out.push(buf.subarray(start, end))),
  );
}

async function producerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const count = Number(args.count);
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  const socket = await dialPort(Number(args.port));
  const frame = Buffer.alloc(FRAME_BYTES, 0x61);
  frame.writeUInt32BE(FRAME_BYTES - 4, 0);
  const out = new WriteBatcher(socket);
  let sent = 0;
  const pump = (): void => {
    const end = Math.min(count, sent + FRAMES_PER_TURN);
    while (sent < end) {
      out.push(frame);
      sent++;
    }
    if (sent >= count || performance.now() > stopAt) {
      ctx.report("sent", { sent });
      return;
    }
    if (socket.writableNeedDrain) socket.once("drain", pump);
    else setImmediate(pump);
  };
  pump();
}

async function consumerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const count = Number(args.count);
  const limitMs = Number(args.seconds) * 1000;
  const socket = await dialPort(Number(args.port));
  let frames = 0;
  let firstChunkFrames = 0;
  let t0 = 0;
  let tLast = 0;
  let finished = false;
  const finish = (why: string): void => {
    if (finished) return;
    finished = true;
    socket.destroy();
    const seconds = (tLast - t0) / 1000;
    const rate = seconds > 0 ? (frames - firstChunkFrames) / seconds : 0;
    ctx.report("done", { frames, seconds, rate, why });
  };
  const split = frameSplitter(() => {
    frames++;
  });
  socket.on("data", (chunk: Buffer) => {
    if (finished) return;
    split(chunk);
    // Timed per chunk rather than per frame: a clock read per frame would cost more than the
    // frame; the frames of the first chunk arrived at t0 and are left out of the rate.
    const now = performance.now();
    if (t0 === 0) {
      t0 = now;
      firstChunkFrames = frames;
      setTimeout(() => finish("time limit"), limitMs + 1000).unref();
    }
    tLast = now;
    if (frames >= count) finish("count reached");
    else if (now - t0 > limitMs) finish("time limit");
  });
  socket.on("error", () => {});
  ctx.report("ready");
}

const PING_WARMUP = 500;
const PING_ROUNDS = 5_000;

/** Sends each frame back as it came. */
async function echoRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const socket = await dialPort(Number(args.port));
  socket.on(
    "data",
    frameSplitter((buf, start, end) => socket.write(buf.subarray(start, end))),
  );
  socket.on("error", () => {});
  ctx.report("ready");
}

/** Runs PING_WARMUP rounds, then times PING_ROUNDS of them one after another. */
async function timeRounds(round: () => Promise<void>): Promise<ReturnType<typeof latencySummary>> {
  for (let i = 0; i < PING_WARMUP; i++) await round();
  const samples = new Float64Array(PING_ROUNDS);
  for (let i = 0; i < PING_ROUNDS; i++) {
    const t = performance.now();
    await round();
    samples[i] = performance.now() - t;
  }
  return latencySummary(samples);
}

/** One frame out, wait for it to come back, PING_ROUNDS times after PING_WARMUP. */
async function pingerRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const socket = await dialPort(Number(args.port));
  const frame = Buffer.alloc(FRAME_BYTES, 0x61);
  frame.writeUInt32BE(FRAME_BYTES - 4, 0);
  let back: (() => void) | undefined;
  socket.on(
    "data",
    frameSplitter(() => back?.()),
  );
  const round = (): Promise<void> =>
    new Promise((resolve) => {
      back = resolve;
      socket.write(frame);
    });
  ctx.report("done", await timeRounds(round));
}

// The message pattern of a ping-pong over two unbuffered channels with Go's semantics, through a
// hub that does nothing else: a send is done only once a receiver has taken the value, and a
// receive is a request made when the program asks for the next value. Per round the hub reads 4
// frames and writes 4 (the relay: 2 and 2), each client writes 2 and reads 2 (the relay's ends: 1
// and 1). Frames: [u32 length][type][channel][value]; a value frame is FRAME_BYTES long.
const RZ_SEND = 1; // c→hub: a value for channel ch (a send)
const RZ_RECV = 2; // c→hub: receive once from channel ch
const RZ_VALUE = 3; // hub→c: the value a receive took
const RZ_DONE = 4; // hub→c: your send on ch was taken

function rzFrame(type: number, ch: number, value?: Uint8Array): Buffer {
  const n = value ? value.length : 0;
  const b = Buffer.allocUnsafe(6 + n);
  b.writeUInt32BE(2 + n, 0);
  b[4] = type;
  b[5] = ch;
  if (value) b.set(value, 6);
  return b;
}

/** Matches sends with receives on two channels, one frame per event each way. */
async function hubRole(_args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const { server, port } = await listen();
  const sends: ({ from: Socket; value: Buffer } | undefined)[] = [undefined, undefined];
  const recvs: (Socket | undefined)[] = [undefined, undefined];
  server.on("connection", (s: Socket) => {
    s.setNoDelay(true);
    s.on("error", () => {});
    s.on(
      "data",
      frameSplitter((buf, start, end) => {
        const type = buf[start + 4];
        const ch = buf[start + 5] as number;
        if (type === RZ_SEND) {
          const value = buf.subarray(start + 6, end);
          const to = recvs[ch];
          if (to) {
            recvs[ch] = undefined;
            to.write(rzFrame(RZ_VALUE, ch, value));
            s.write(rzFrame(RZ_DONE, ch));
          } else sends[ch] = { from: s, value: Buffer.from(value) };
        } else if (type === RZ_RECV) {
          const parked = sends[ch];
          if (parked) {
            sends[ch] = undefined;
            s.write(rzFrame(RZ_VALUE, ch, parked.value));
            parked.from.write(rzFrame(RZ_DONE, ch));
          } else recvs[ch] = s;
        }
      }),
    );
  });
  ctx.report("ready", { port });
}

/** Receives on channel 0 and sends what it got on channel 1, forever. */
async function rzPongRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const socket = await dialPort(Number(args.port));
  socket.on("error", () => {});
  socket.on(
    "data",
    frameSplitter((buf, start, end) => {
      const type = buf[start + 4];
      if (type === RZ_VALUE) socket.write(rzFrame(RZ_SEND, 1, buf.subarray(start + 6, end)));
      else if (type === RZ_DONE) socket.write(rzFrame(RZ_RECV, 0));
    }),
  );
  socket.write(rzFrame(RZ_RECV, 0));
  ctx.report("ready");
}

/** A round: send on channel 0; once that send is done, receive from channel 1. */
async function rzPingRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const socket = await dialPort(Number(args.port));
  const send = rzFrame(RZ_SEND, 0, Buffer.alloc(FRAME_BYTES - 6, 0x61));
  const recv = rzFrame(RZ_RECV, 1);
  let back: (() => void) | undefined;
  socket.on(
    "data",
    frameSplitter((buf, start) => {
      const type = buf[start + 4];
      if (type === RZ_DONE) socket.write(recv);
      else if (type === RZ_VALUE) back?.();
    }),
  );
  const round = (): Promise<void> =>
    new Promise((resolve) => {
      back = resolve;
      socket.write(send);
    });
  ctx.report("done", await timeRounds(round));
}

async function rendezvous(procs: Procs): Promise<Row> {
  const id = "relay.rendezvous";
  const label = "raw TCP hub, Go rendezvous pattern (done + recv request)";
  try {
    const hub = procs.role("relay", "hub", {});
    const { port } = await hub.next("ready");
    const pong = procs.role("relay", "rzPong", { port });
    await pong.next("ready");
    const ping = procs.role("relay", "rzPing", { port });
    return latencyRow(id, label, await ping.next("done"));
  } catch (e) {
    return latencyRow(id, label, { error: errorText(e) });
  } finally {
    await procs.closeAll();
  }
}

async function pingPong(procs: Procs): Promise<Row> {
  const id = "relay.pingpong";
  const label = "raw TCP relay ping-pong (byte pipe both ways)";
  try {
    const relay = procs.role("relay", "relay", { mode: "echo" });
    const ready = await relay.next("ready");
    const echo = procs.role("relay", "echo", { port: ready.outPort });
    await echo.next("ready");
    const pinger = procs.role("relay", "pinger", { port: ready.inPort });
    return latencyRow(id, label, await pinger.next("done"));
  } catch (e) {
    return latencyRow(id, label, { error: errorText(e) });
  } finally {
    await procs.closeAll();
  }
}

async function measure(procs: Procs, mode: "framed" | "pipe"): Promise<Row> {
  const id = `relay.${mode}`;
  const label = mode === "framed" ? "raw TCP relay, frame-aware (ceiling)" : "raw TCP relay, byte pipe";
  try {
    const relay = procs.role("relay", "relay", { mode });
    const ready = await relay.next("ready");
    const consumer = procs.role("relay", "consumer", { port: ready.outPort, count: FRAMES, seconds: SECONDS });
    await consumer.next("ready");
    procs.role("relay", "producer", { port: ready.inPort, count: FRAMES, seconds: SECONDS + 2 });
    const done = await consumer.next("done");
    const frames = Number(done.frames);
    return {
      id,
      label,
      kind: "throughput",
      msgsPerSec: Number(done.rate),
      messages: frames,
      seconds: Number(done.seconds),
      note: frames < FRAMES ? `${done.why} after ${frames} of ${FRAMES} frames` : undefined,
    };
  } catch (e) {
    return { id, label, kind: "throughput", error: errorText(e) };
  } finally {
    await procs.closeAll();
  }
}

export const scenario: Scenario = {
  name: "relay",
  description: `raw Node TCP relay, ${FRAME_BYTES}-byte frames, coalesced writes, ${FRAMES} frames or ${SECONDS} s`,
  budgetMs: 30_000,
  async run(ctx: ScenarioContext) {
    const rows: Row[] = [];
    for (const mode of ["framed", "pipe"] as const) {
      ctx.log(`relay: measuring ${mode} relay`);
      rows.push(await measure(ctx.procs, mode));
    }
    ctx.log("relay: measuring ping-pong through the relay");
    rows.push(await pingPong(ctx.procs));
    ctx.log("relay: measuring the rendezvous pattern through a bare hub");
    rows.push(await rendezvous(ctx.procs));
    return { rows };
  },
  roles: {
    relay: relayRole,
    producer: producerRole,
    consumer: consumerRole,
    echo: echoRole,
    pinger: pingerRole,
    hub: hubRole,
    rzPong: rzPongRole,
    rzPing: rzPingRole,
  },
};
