// The pure parts behind processes and host resources: /proc parsers fed literal text, signal names,
// and the output fan-out (tail, pacing by the slowest reader) driven through a PassThrough.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { ProcOutput, TAIL_BYTES } from "../src/daemon/proc-output.ts";
import { parseNetTcp, parseStat, parseStatusRss } from "../src/daemon/procfs.ts";
import type { PipeReceiver } from "../src/daemon/stream-pipe.ts";
import { STREAM_WINDOW } from "../src/wire/protocol.ts";
import { signalName } from "../src/wire/signals.ts";

describe("procfs parsers", () => {
  test("stat: state and utime+stime, with a command name holding spaces and parens", () => {
    const line =
      "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 180 0 0 0 37 5 0 0 20 0 1 0 123456 1234567 300 18446744073709551615";
    assert.deepEqual(parseStat(line), { state: "S", ticks: 42 });
    assert.equal(parseStat("garbage"), undefined);
  });

  test("status: VmRSS in bytes, 0 when absent", () => {
    assert.equal(parseStatusRss("Name:\tsh\nVmPeak:\t 9000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n"), 1536 * 1024);
    assert.equal(parseStatusRss("Name:\tzombie\nState:\tZ (zombie)\n"), 0);
  });

  test("net/tcp: listening sockets only, addresses in network order", () => {
    const v4 = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1456 1",
      "   1: 0100007F:1E1F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1",
      "   2: 0100007F:9C40 0100007F:1E1F 01 00000000:00000000 00:00000000 00000000  1000        0 3 1",
    ].join("\n");
    assert.deepEqual(parseNetTcp(v4, 4), [
      { port: 2024, address: "0.0.0.0", family: 4 },
      { port: 7711, address: "127.0.0.1", family: 4 },
    ]);
    const v6 = [
      "  sl  local_address                         remote_address                        st",
      "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A",
      "   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A",
      "   2: 000080FE00000000FF005002FE9D0F0B:01BB 00000000000000000000000000000000:0000 0A",
    ].join("\n");
    assert.deepEqual(
      parseNetTcp(v6, 6).map((p) => `[${p.address}]:${p.port}`),
      ["[::]:22", "[::1]:80", "[fe80::250:ff:b0f:9dfe]:443"],
    );
  });
});

describe("signal names", () => {
  test("POSIX names with or without SIG, in any case; anything else is unknown", () => {
    assert.equal(signalName("TERM"), "SIGTERM");
    assert.equal(signalName("SIGKILL"), "SIGKILL");
    assert.equal(signalName("usr1"), "SIGUSR1");
    assert.equal(signalName("sigHup"), "SIGHUP");
    for (const bad of ["FOO", "SIG", "", "9", "TERM ", 15, null]) assert.equal(signalName(bad), undefined, String(bad));
  });
});

/** A reader of a ProcOutput that grants credit by hand. */
function reader(out: ProcOutput, id: number) {
  const got: Buffer[] = [];
  let ended = false;
  const pipe = out.attach(id);
  const r: PipeReceiver = {
    data: (c) => got.push(Buffer.from(c)),
    fin: () => {
      ended = true;
    },
    broken: () => {},
  };
  pipe.attach(r);
  return {
    pipe,
    text: () => Buffer.concat(got).toString(),
    bytes: () => got.reduce((n, c) => n + c.length, 0),
    ended: () => ended,
  };
}

describe("process output fan-out", () => {
  test("a late reader gets the last 64 KiB, then live output, then the end", () => {
    const src = new PassThrough();
    const out = new ProcOutput(src);
    src.write(Buffer.alloc(100 * 1024, "a"));
    src.write("tail-end\n");
    const r = reader(out, 1);
    r.pipe.grant(1 << 20);
    assert.equal(r.bytes(), TAIL_BYTES);
    assert.ok(r.text().endsWith("tail-end\n"));
    src.write("live\n");
    assert.ok(r.text().endsWith("tail-end\nlive\n"));
    src.end();
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        assert.ok(r.ended(), "the reader got the end marker");
        resolve();
      }),
    );
  });

  test("with no reader the output never pauses; a reader that lacks credit pauses it; credit resumes it", () => {
    const src = new PassThrough();
    const out = new ProcOutput(src);
    for (let i = 0; i < 40; i++) src.write(Buffer.alloc(64 * 1024));
    assert.equal(src.isPaused(), false, "nobody reads: output only feeds the tail");
    const fast = reader(out, 1);
    const slow = reader(out, 2);
    fast.pipe.grant(1 << 30);
    // The slow reader's pipe window (STREAM_WINDOW, a reader being attached) fills: it grants nothing.
    const most = STREAM_WINDOW / (64 * 1024) + 10;
    let wrote = 0;
    for (; wrote < most && !src.isPaused(); wrote++) src.write(Buffer.alloc(64 * 1024));
    assert.ok(wrote >= STREAM_WINDOW / (64 * 1024), `paused only once the window is full (${wrote} chunks)`);
    assert.equal(src.isPaused(), true, "the slowest reader paces the source");
    // Node resumes a child's stdio when the child exits; the next chunk pauses it again.
    src.resume();
    src.write(Buffer.alloc(64 * 1024));
    assert.equal(src.isPaused(), true, "paused again after an outside resume");
    const before = fast.bytes();
    slow.pipe.grant(1 << 30);
    assert.equal(src.isPaused(), false);
    assert.equal(slow.bytes(), fast.bytes(), "lossless: both readers got the same bytes");
    assert.ok(fast.bytes() >= before);
    slow.pipe.drop("gone");
    src.write(Buffer.alloc(64 * 1024));
    assert.equal(src.isPaused(), false, "a reader that leaves no longer paces");
  });
});
