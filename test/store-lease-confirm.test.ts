// Taking over a replicated channel's lease (src/daemon/store-host.ts, through Store.claimLease, which
// the service host uses too) when the store accepted two
// compare-and-set updates made at the same moment (nats-server before 2.9.21, issue 4320): the
// daemon reads the lease back from the stream leader and, finding another daemon's later write
// there, answers where the channel lives instead of resuming it. Over a stand-in store.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type Lease, Store } from "../src/daemon/store.ts";
import { StoreHost } from "../src/daemon/store-host.ts";
import { silentLogger } from "../src/util/log.ts";

function fakeStore(atLeader: { lease: Lease; revision: number } | null) {
  const calls = { resumed: 0 };
  const store = {
    config: { leaseMs: 3000, renewMs: 1000, requestMs: 500, startMs: 1000, replicas: 3 },
    connected: true,
    entry: async () => ({ kind: "chan", cap: 4, replicas: 3, stream: "S" }),
    // The holder is a daemon membership has declared dead: take it over by its revision.
    lease: async () => ({ lease: { id: "Xdead", url: "circuit://127.0.0.1:1/Xdead" }, revision: 4 }),
    takeLease: async () => 5,
    leaseAtLeader: async () => atLeader,
    // The claim itself is the store's own, shared by the channel and service hosts.
    claimLease: Store.prototype.claimLease,
    js: {},
    jsm: {
      streams: {
        info: async () => {
          calls.resumed++;
          throw new Error("no stream here");
        },
      },
    },
  };
  return { store: store as unknown as Store, calls };
}

function host(store: Store): StoreHost {
  return new StoreHost({
    store,
    me: { id: "Xme", url: "circuit://127.0.0.1:2/Xme" },
    alive: (id) => id !== "Xdead",
    log: silentLogger,
  });
}

test("another daemon's later write of the lease: answer where the channel lives, resume nothing", async () => {
  const { store, calls } = fakeStore({ lease: { id: "Xother", url: "circuit://127.0.0.1:3/Xother" }, revision: 6 });
  assert.deepEqual(await host(store).where(["@", "q"]), { moved: "Xother" });
  assert.equal(calls.resumed, 0, "the log was not read: the other daemon hosts");
});

test("our own write is the last one: the daemon goes on to resume the channel from its log", async () => {
  const { store, calls } = fakeStore({ lease: { id: "Xme", url: "circuit://127.0.0.1:2/Xme" }, revision: 5 });
  await assert.rejects(host(store).where(["@", "q"]), { code: "StoreUnavailable" });
  assert.ok(calls.resumed > 0, "it tried to read the log");
});
