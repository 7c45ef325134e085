// A stand-in for the one JetStream stream a replicated channel's host (src/daemon/replicated-chan.ts)
// talks to: publish with "expected last sequence" and message ids, read back, purge. Shared by
// the host's model tests.

import type { JetStreamClient, JetStreamManager, MsgHdrs } from "nats";
import type { ReplicatedChan } from "../../src/daemon/replicated-chan.ts";

export interface Rec {
  seq: number;
  headers: MsgHdrs;
  data: Uint8Array;
  id?: string;
}

/** One stream, as much of JetStream as ReplicatedChan uses. */
export class FakeStream {
  recs: Rec[] = [];
  last = 0;
  ids = new Map<string, number>();
  writers: string[] = [];

  js = {
    publish: async (
      _subj: string,
      data: Uint8Array,
      o: { headers: MsgHdrs; expect: { lastSequence: number }; msgID?: string },
    ) => {
      await Promise.resolve();
      if (o.msgID && this.ids.has(o.msgID)) return { seq: this.ids.get(o.msgID), duplicate: true };
      if (o.expect.lastSequence !== this.last) throw new Error("wrong last sequence");
      const seq = ++this.last;
      this.recs.push({ seq, headers: o.headers, data, id: o.msgID });
      if (o.msgID) this.ids.set(o.msgID, seq);
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
      info: async () => ({
        state: { first_seq: this.recs[0]?.seq ?? this.last + 1, last_seq: this.last, messages: this.recs.length },
      }),
      purge: async (_s: string, o: { seq: number }) => {
        this.recs = this.recs.filter((r) => r.seq >= o.seq);
        return { success: true, purged: 0 };
      },
    },
  } as unknown as JetStreamManager;
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
