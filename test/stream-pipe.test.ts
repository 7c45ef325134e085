// A stream message inside the daemon (StreamPipe): the pieces of one big frame from the sender go
// on to the receiver together, as one frame written from the pieces, and only once the frame's last
// piece is in; whatever the receiver's credit cuts off waits, in order; the sender's window holds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type PipeReceiver, StreamPipe } from "../src/daemon/stream-pipe.ts";
import { STREAM_WAITING_WINDOW, STREAM_WINDOW } from "../src/wire/protocol.ts";

function receiver(parts: boolean) {
  const frames: Buffer[][] = [];
  let finished = false;
  const r: PipeReceiver = {
    data: (c) => frames.push([c]),
    fin: () => {
      finished = true;
    },
    broken: (why) => assert.fail(`broken: ${why}`),
  };
  if (parts) r.dataParts = (cs) => frames.push([...cs]);
  return { r, frames, finished: () => finished };
}

function sender() {
  let credit = 0;
  return {
    s: {
      credit: (n: number) => {
        credit += n;
      },
      abort: (why: string) => assert.fail(`aborted: ${why}`),
    },
    credit: () => credit,
  };
}

const bytes = (n: number, v: number) => Buffer.alloc(n, v);

test("the pieces of one frame go on as one frame once its last piece is in; credit cuts it where it must", () => {
  const snd = sender();
  const pipe = new StreamPipe(1, snd.s);
  assert.equal(snd.credit(), STREAM_WAITING_WINDOW);
  const rcv = receiver(true);
  pipe.attach(rcv.r);
  assert.equal(snd.credit(), STREAM_WINDOW);
  pipe.grant(150_000);
  // One 192,000-byte frame in three pieces: nothing goes on before the last.
  assert.ok(pipe.write(bytes(64_000, 1), true));
  assert.ok(pipe.write(bytes(64_000, 2), true));
  assert.equal(rcv.frames.length, 0);
  assert.ok(pipe.write(bytes(64_000, 3)));
  // The receiver's credit (150,000) takes the first two pieces and part of the third, in one frame.
  assert.equal(rcv.frames.length, 1);
  assert.deepEqual(
    rcv.frames[0]?.map((c) => c.length),
    [64_000, 64_000, 22_000],
  );
  assert.deepEqual(
    Buffer.concat(rcv.frames[0] as Buffer[]),
    Buffer.concat([bytes(64_000, 1), bytes(64_000, 2), bytes(22_000, 3)]),
  );
  // The sender gets back what left.
  assert.equal(snd.credit(), STREAM_WINDOW + 150_000);
  // More credit: the rest, then the end.
  pipe.grant(1_000_000);
  assert.deepEqual(rcv.frames[1], [bytes(42_000, 3)]);
  pipe.fin();
  assert.ok(rcv.finished());
});

test("a receiver without dataParts gets each piece as data, in order", () => {
  const pipe = new StreamPipe(2, sender().s);
  const rcv = receiver(false);
  pipe.attach(rcv.r);
  pipe.grant(STREAM_WINDOW);
  pipe.write(bytes(10, 1), true);
  pipe.write(bytes(20, 2));
  assert.deepEqual(rcv.frames, [[bytes(10, 1)], [bytes(20, 2)]]);
});

test("pieces count against the sender's window like whole frames: one byte over is refused", () => {
  const pipe = new StreamPipe(3, sender().s);
  // Not taken yet: the waiting window.
  assert.ok(pipe.write(bytes(STREAM_WAITING_WINDOW - 1, 0), true));
  assert.equal(pipe.write(bytes(2, 0), true), false);
  assert.ok(pipe.write(bytes(1, 0)));
});
