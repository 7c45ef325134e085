// The message types of the circuit protocol. One connection per peer pair carries requests with ids,
// responses, server pushes and the channel data path. Control frames carry MessagePack; data frames
// carry the sender's encoded value as an opaque tail that the daemon never decodes.
//
// Fields listed per type are the u32 fields at the start of the body (see frame.ts). The protocol
// is described for implementers of other clients in docs/protocol.md.
//
// Handshake
//   HELLO      c→s, s→c  tail {v, role, ...}: the first frame each way. A client names itself
//                        with `cid` (stable across its reconnections): a HELLO with the cid of a
//                        session that is still open ends that session first.
//   BYE        c→s  []                   the client is closing on purpose: its sends need no
//                                        de-duplication record any more.
// Control
//   REQ        c→s  [id]                 tail {op, ...args}
//   RES        s→c  [id]                 tail result
//   ERR        s→c  [id]                 tail {code, message}
//   PUSH       s→c  []                   tail {ev, ...}: membership changes for a watching client;
//                                        {ev: "released", handle}: that channel was scrubbed and the
//                                        server let go of its handle (later uses: ChannelAborted).
//   CANCEL     c→s  [id]                 withdraw a blocked SEND/SOPEN; it then fails with code
//                                        Cancelled, unless its RES is already on the way.
//   TICK       s→c  []                   the server is alive and reading: sent when bytes arrived
//                                        from the client in the last second but the server had
//                                        nothing to say for a second. A client whose own output
//                                        keeps the answers to its pings waiting (a slow link) sees
//                                        the server live through these.
// Channel sends (credit flow control: a grant is buffer slots reserved for this connection).
// Every send of a client on a channel carries a sequence number (`seq`, from 1, per cid and
// channel, 2^32 − 1 followed by 1; compared around that wrap, seqAtMost); the daemon keeps the
// highest stored per cid and channel and stores a send whose seq is not above it only once: a
// client resends what it has not seen acknowledged after reconnecting.
//   SEND       c→s  [id, handle, want, seq]  tail value: a send that may block; RES [id] when
//                                        done (at once, storing nothing, if seq was stored before).
//                                        `want` asks for up to that many credits afterwards.
//   CSEND      c→s  [handle, seq]        tail entries: sends into slots granted earlier, in order,
//                                        the first with sequence number seq, the next seq+1, ...;
//                                        no reply but CACK. Each entry is [u32 length][value
//                                        bytes]; the sends of one turn on one channel share a frame.
//   CACK       s→c  [handle, seq]        every send of this handle through seq is stored: the
//                                        client may forget the copies it kept for a resend.
//   CNAK       s→c  [handle, seq]        tail {code, message}: the credited sends of this handle
//                                        through seq (not acknowledged before) failed: a durable
//                                        channel could not store them (StorageFull).
//   GRANT      s→c  [handle, n]          n more credits. To a client that still holds credit the
//                                        server may tell them late: with its next CACK, on CWAIT,
//                                        or before a REVOKE.
//   REVOKE     s→c  [handle]             give back unused credits (another sender waits, or the
//                                        channel is closing); answered by RELEASE. A server whose
//                                        HELLO says grantWait revokes a holder that holds none and
//                                        said CWAIT only when the channel closes, and answers a
//                                        CWAIT it cannot take (from one it does not count a holder,
//                                        without a want; or the channel is closing) with REVOKE.
//   RELEASE    c→s  [handle]             the answer to REVOKE: the client now holds no credits.
//   CWAIT      c→s  [handle, waits, want?]  (to a grantWait server) waits 1: every credit is spent
//                                        and a send waits in the client for the next GRANT; it
//                                        counts as a blocked sender meanwhile and is served in its
//                                        turn among them (Go's order): before holders that still
//                                        have credit, and, while sends that may block wait, as one
//                                        of them, with a GRANT of 1 then a REVOKE. waits 0: that
//                                        send was cancelled. `want` (to a server whose HELLO says
//                                        grantAsk): the client holds no credit and asks for up to
//                                        that many; it becomes a holder waiting as above.
// Channel receives (a receiver id `rid` is a request id; each credit is one blocked receive)
//   RECV       c→s  [rid, handle, ack, n]  ack the first `ack` undelivered-to-user values of rid
//                                          and add n receive credits (creates rid on first use).
//   VAL        s→c  [rid]                tail entries ([u32 length][value bytes] each): values for
//                                        rid, in order (kept until acked).
//   RCLOSE     c→s  [rid, ack, quiet]    ack `ack` values; the rest of rid's unacked values go back
//                                        to the head of the channel; its credits are withdrawn;
//                                        answered by an empty REND unless quiet.
//   REND       s→c  [rid]                tail {code, message} or empty: rid is finished (after its
//                                        last VAL); empty after RCLOSE, an error otherwise.
// Streams (one channel message carried as bytes with end marker and byte credits)
//   SOPEN      c→s  [id, handle, sid]    a stream message `sid` enters the channel like a send;
//                                        RES [id] when a receiver took it or the buffer had room.
//   SDATA      both [sid]                tail bytes
//   SCREDIT    both [sid, n]             n more bytes may be sent on sid
//   SFIN       both [sid]                the end marker
//   SABORT     c→s  [sid], s→c [pid]     tail {code, message}: the sender broke off; the message
//                                        is delivered as an error, never as a short message
//   SATTACH    s→c  [rid, pid]           delivery of a stream message to receiver rid (instead of
//                                        VAL); pid names the message on this connection: SDATA,
//                                        SFIN and SABORT s→c, SCREDIT c→s carry it.
//   SDROP      c→s  [pid]                the receiver stops reading;
//              s→c  [sid]                tail {code, message}: your stream message was dropped
//                                        (receiver stopped, channel scrubbed): stop writing.
// Select (docs/select.md); a selector id is a 53-bit number sent as [hi, lo]
//   SELECT     c→s  [hi, lo, poll]       tail {cases: [[idx, handle, op (0 recv, 1 send), value?]]}:
//                                        register cases; with poll, POLLED follows the offers that
//                                        could be made at once.
//   OFFER      s→c  [hi, lo, idx, flags] tail value | error: case idx is reserved for us
//   WITHDRAW   s→c  [hi, lo, idx]        the reservation behind that offer is gone
//   DECIDE     c→s  [hi, lo, idx]        commit case idx (ALL_CASES: release every case here);
//                                        a commit that is done releases the other cases here too.
//                                        ALL_CASES, sent once the select has resolved, also
//                                        acknowledges a value DONE/SETTLED delivered: until then the
//                                        server keeps it, and puts it back at the head of its
//                                        channel if the connection closes.
//   DONE       s→c  [hi, lo, idx, flags, pid] tail value | error: the answer to a commit
//   SETTLED    s→c  [hi, lo, idx, flags, pid] tail value | error: a pair we committed to completed
//                                        (or failed: flags has F_FAILED, the case waits again)
//   POLLED     s→c  [hi, lo]             every offer possible at registration has been sent
// Between servers
//   SWIM       s→s  []                   tail: one membership message (src/cluster)
// A stream is acknowledged as soon as it is attached: bytes that have flowed cannot be taken back.

import { Packr } from "msgpackr";
import { binHeadBytes, writeBinHead } from "./frame.js";

/**
 * 3: TICK, BYE, send sequence numbers and CACK (2: CSEND and VAL carry batches of entries; 1
 * carried one value each).
 */
export const PROTOCOL_VERSION = 3;

export const T = {
  HELLO: 0x01,
  REQ: 0x02,
  RES: 0x03,
  ERR: 0x04,
  PUSH: 0x05,
  CANCEL: 0x06,
  TICK: 0x07,
  BYE: 0x08,
  SEND: 0x10,
  CSEND: 0x11,
  CACK: 0x15,
  CNAK: 0x16,
  CWAIT: 0x17,
  GRANT: 0x12,
  REVOKE: 0x13,
  RELEASE: 0x14,
  RECV: 0x20,
  VAL: 0x21,
  RCLOSE: 0x22,
  REND: 0x23,
  SOPEN: 0x30,
  SDATA: 0x31,
  SCREDIT: 0x32,
  SFIN: 0x33,
  SABORT: 0x34,
  SATTACH: 0x35,
  SDROP: 0x36,
  SELECT: 0x50,
  OFFER: 0x51,
  WITHDRAW: 0x52,
  DECIDE: 0x53,
  DONE: 0x54,
  SETTLED: 0x55,
  POLLED: 0x56,
  SWIM: 0x40,
} as const;

/** Flags of OFFER, DONE and SETTLED. */
export const F = {
  VALUE: 1,
  CLOSED: 2,
  ERROR: 4,
  PAIR: 8,
  OK: 16,
  PENDING: 32,
  FAILED: 64,
  STREAM: 128,
} as const;
/** DECIDE with this index releases every case of the selector on that server. */
export const ALL_CASES = 0xffffffff;

/** Defaults shared by both ends; the server announces its own in HELLO. */
export const DEFAULT_MAX_VALUE = 16 * 1024 * 1024;
/** A frame may carry a maximal value plus its header fields. */
export const FRAME_SLACK = 64 * 1024;
/**
 * Bytes a stream may have in flight on each hop while it is being read: the sender's to the daemon,
 * the daemon's to the reader. Big enough that a fast stream keeps four of its 2 MiB frames moving
 * while credit comes back (8 MiB: 16 MiB messages 1.2× as fast as with 4 MiB here, README); the
 * daemon holds a stream's bytes while its reader's connection is backed up (Pacer).
 */
export const STREAM_WINDOW = 8 * 1024 * 1024;
/** Bytes a stream message may hold in the daemon before a receiver has taken it (a buffered one). */
export const STREAM_WAITING_WINDOW = 256 * 1024;

// Values: bigints stay bigints, Dates stay Dates, byte arrays stay byte arrays, and no record
// extension (so any MessagePack implementation can read the bytes).
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "bigint", largeBigIntToFloat: false });

export function encode(value: unknown): Buffer {
  // Byte values are the common case on the data path: bin 8/16/32 written directly.
  if (value instanceof Uint8Array) return encodeBytes(value);
  return packr.pack(value);
}

function encodeBytes(v: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(binHeadBytes(v.length) + v.length);
  out.set(v, writeBinHead(out, 0, v.length));
  return out;
}

/** Values of this many bytes or more that msgpackr decodes are followed by a decode of NIL (decode). */
const RELEASE_AFTER = 64 * 1024;
/** MessagePack's nil, for decode to read after a big value. */
const NIL = Buffer.from([0xc0]);

/** The big-endian u32 at bytes[at] (four bytes there). */
function readU32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at] as number) * 0x1000000 +
    (((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number))
  );
}

/** Decodes the one value in bytes[at, end) (default: to the end; `at` skips header fields). */
export function decode(bytes: Uint8Array, at = 0, end = bytes.length): unknown {
  // A whole-message bin (8, 16 or 32) is handed back as a view of the bytes, without the general
  // decoder.
  const t = bytes[at];
  const n = end - at;
  if (t === 0xc4 && n === 2 + (bytes[at + 1] as number))
    return Buffer.from(bytes.buffer, bytes.byteOffset + at + 2, n - 2);
  if (t === 0xc5 && n >= 3 && n === 3 + (((bytes[at + 1] as number) << 8) | (bytes[at + 2] as number))) {
    return Buffer.from(bytes.buffer, bytes.byteOffset + at + 3, n - 3);
  }
  if (t === 0xc6 && n >= 5 && n === 5 + readU32(bytes, at + 1)) {
    return Buffer.from(bytes.buffer, bytes.byteOffset + at + 5, n - 5);
  }
  try {
    return packr.unpack(at === 0 && end === bytes.length ? bytes : bytes.subarray(at, end));
  } finally {
    // msgpackr keeps a view of the last bytes it read until it reads others (even when they were
    // not valid): a big frame would stay in memory for as long as nothing else is decoded. One
    // byte read after it lets it go.
    if (n >= RELEASE_AFTER) packr.unpack(NIL);
  }
}

/** Reads the u32 field at index i of a frame body. */
export function u32(body: Buffer, i: number): number {
  if (body.length < 4 * (i + 1)) throw new RangeError("frame body too short");
  return body.readUInt32BE(4 * i);
}

/** The tail of a frame body after its first `fields` u32 fields. */
export function tail(body: Buffer, fields: number): Buffer {
  if (body.length < 4 * fields) throw new RangeError("frame body too short");
  return body.subarray(4 * fields);
}

export { MAX_CAP, MAX_DURABLE_CAP } from "./caps.js";

/**
 * Whether send sequence number `a` is `b` or comes before it, counting around the wrap from
 * 2^32 − 1 to 1: the numbers a client has in flight on a channel span far fewer than 2^31.
 */
export function seqAtMost(a: number, b: number): boolean {
  return (b - a) >>> 0 < 0x80000000;
}
