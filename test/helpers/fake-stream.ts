// A stand-in for the one JetStream stream a replicated channel's host (src/daemon/replicated-chan.ts)
// talks to: publish with "expected last sequence", read back, purge (by subject). Shared by the
// host's model tests.

import { unpack } from "msgpackr";
import type { JetStreamClient, JetStreamManager, MsgHdrs } from "nats";
import type { ReplicatedChan } from "../../src/daemon/replicated-chan.ts";

export interface Rec {
  seq: number;
  subject: string;
  headers: MsgHdrs;
  data: Uint8Array;
}

/** One stream, as much of JetStream as ReplicatedChan uses. */
export class FakeStream {
  recs: Rec[] = [];
  last = 0;
  writers: string[] = [];
  /** Ids of every value ever stored (read from the value records as they are appended). */
  ids = new Set<string>();
  subjects = ["circuit.log.S"];
  /** While set, appends wait for it (see hold). */
  gate: Promise<void> | undefined;
  /** Appends take this many turns of the event loop (in order), as over a network. */
  lag = 0;

  js = {
    publish: async (subject: string, data: Uint8Array, o: { headers: MsgHdrs; expect: { lastSequence: number } }) => {
      await (this.gate ?? Promise.resolve());
      for (let i = 0; i < this.lag; i++) await new Promise((r) => setImmediate(r));
      if (!this.subjects.includes(subject)) throw new Error(`no stream takes ${subject}`);
      if (o.expect.lastSequence !== this.last) throw new Error("wrong last sequence");
      const seq = ++this.last;
      this.recs.push({ seq, subject, headers: o.headers, data });
      if (o.headers.get("C-T") === "b") for (const id of (unpack(data) as [string[]])[0]) this.ids.add(id);
      this.writers.push(o.headers.get("C-H"));
      return { seq, duplicate: false };
    },
    consumers: {
      get: async (_stream: string, o: { opt_start_seq: number }) => ({
        fetch: async ({ max_messages }: { max_messages: number }) => {
          const out = this.recs.filter((r) => r.seq >= o.opt_start_seq).slice(0, max_messages);
          o.opt_start_seq = (out[out.length - 1]?.seq ?? o.opt_start_seq - 1) + 1;
          return (async function* () {
            yield* out;
          })();
        },
      }),
    },
  } as unknown as JetStreamClient;

  jsm = {
    streams: {
      info: async () => this.info(),
      update: async (_s: string, c: { subjects: string[] }) => {
        this.subjects = [...c.subjects];
        return this.info();
      },
      purge: async (_s: string, o: { seq: number; filter?: string }) => {
        this.recs = this.recs.filter((r) => r.seq >= o.seq || (o.filter !== undefined && r.subject !== o.filter));
        return { success: true, purged: 0 };
      },
    },
  } as unknown as JetStreamManager;

  /** Holds every append from now on; the function returned lets them go. */
  hold(): () => void {
    let open!: () => void;
    this.gate = new Promise<void>((r) => {
      open = r;
    });
    return open;
  }

  private info() {
    return {
      config: { subjects: [...this.subjects] },
      state: { first_seq: this.recs[0]?.seq ?? this.last + 1, last_seq: this.last, messages: this.recs.length },
    };
  }
}

export const settle = async () => {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
};

/**
 * Receives, one at a time and acknowledging each, every value `host` hands out to one receiver
 * (`opid()` names each receive); returns them in the order received.
 */
export async function drainHost(host: ReplicatedChan, opid: () => number): Promise<{ seq: number; bytes: Buffer }[]> {
  const owner = {};
  const out: { seq: number; bytes: Buffer }[] = [];
  for (;;) {
    let got: { seq: number; bytes: Buffer } | undefined;
    host.recv(owner, opid(), (err, v) => {
      if (!err) got = v;
    });
    await settle();
    if (!got) return out;
    const g = got as { seq: number; bytes: Buffer };
    await host.ack(g.seq);
    out.push(g);
  }
}

/** One receive on `host` for `owner` (opid `opid`): resolves with the value handed out. */
export function takeFrom(host: ReplicatedChan, owner: object, opid: number): Promise<{ seq: number; bytes: Buffer }> {
  return new Promise((res, rej) => host.recv(owner, opid, (e, v) => (e || !v ? rej(e) : res(v))));
}
