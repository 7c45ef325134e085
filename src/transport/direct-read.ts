// Reading a socket straight into buffers of our own (`onread` of net.connect and tls.connect)
// instead of through its Readable stream: each read then goes from the handle to the frame decoder
// without the stream's per-read work (push, addChunk, the 'data' event), which on a connection
// busy with small frames is several functions run once a read, and the last to be optimised in a
// fresh process. Used by a client's connection to its server (FrameConn takes the bytes over).
//
// The bytes land in slices of one 64 KiB slab after another and are never written over: the frame
// decoder hands values out as views of what was read, as it does of the stream's own buffers, so a
// value kept by a program keeps at most one slab alive (a read through the stream keeps the read's
// own buffer, up to 64 KiB, alive the same way).

import type { OnReadOpts } from "node:net";
import type { Duplex } from "node:stream";

const SLAB_BYTES = 64 * 1024;
/** A read is given at least this much room; a slab with less left is put aside for a new one. */
const MIN_READ_BYTES = 16 * 1024;

interface Sink {
  /** Takes each read's bytes once a FrameConn has taken the socket over. */
  deliver: ((chunk: Buffer) => void) | undefined;
  /** Reads that came before that, in order. */
  early: Buffer[];
}

/** Sockets made with directReadOptions that nothing has taken over yet. */
const sinks = new WeakMap<object, Sink>();

/** The `onread` option for a socket that `adoptDirectReads` hands to whoever takes it over. */
export function directReadOptions(): { onread: OnReadOpts; bind(sock: Duplex): void } {
  const sink: Sink = { deliver: undefined, early: [] };
  let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  let used = 0;
  return {
    onread: {
      buffer: () => {
        if (slab.length - used < MIN_READ_BYTES) {
          slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
          used = 0;
        }
        return slab.subarray(used);
      },
      callback: (n, buf) => {
        used += n;
        const chunk = (buf as Buffer).subarray(0, n);
        if (sink.deliver) sink.deliver(chunk);
        else sink.early.push(chunk);
        return true;
      },
    },
    bind(sock) {
      sinks.set(sock, sink);
    },
  };
}

/**
 * Has `deliver` take the bytes of a socket made with directReadOptions, in order: those read so
 * far once the microtasks queued now have run (as a stream's 'data' events would start, after the
 * caller has set up what handles them), and each later read as it comes. False for any other
 * stream: read it through its 'data' events.
 */
export function adoptDirectReads(stream: Duplex, deliver: (chunk: Buffer) => void): boolean {
  const sink = sinks.get(stream);
  if (!sink) return false;
  sinks.delete(stream);
  queueMicrotask(() => {
    for (const chunk of sink.early.splice(0)) deliver(chunk);
    sink.deliver = deliver;
  });
  return true;
}
