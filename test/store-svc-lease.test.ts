// Who supervises a service under /@ (src/daemon/store-svc.ts), over an in-memory store at the
// Store seam: leases with revisions and compare-and-set, and a switch that makes the next
// compare-and-set succeed whatever its revision (as nats-server before 2.9.21 may for two
// concurrent updates, issue 4320). The drivers are recorders: what is checked is which daemon
// supervises, and that a daemon stepping down stops no replica (it detaches, it never closes).

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Lease, namesOfKey, Store, type TreeEntry } from "../src/daemon/store.ts";
import { StoreServices } from "../src/daemon/store-svc.ts";
import type { ServiceHost } from "../src/daemon/svc-host.ts";
import { silentLogger } from "../src/util/log.ts";
import type { FullServiceSpec } from "../src/wire/svc-spec.ts";

const key = (names: readonly string[]) => names.join("/");

/** The store's tree and leases in memory; leases do not expire by themselves (`expire` does it). */
class FakeStore {
  config = { leaseMs: 2000, renewMs: 100, requestMs: 500, startMs: 1000, replicas: 3 };
  connected = true;
  tree = new Map<string, TreeEntry>();
  held = new Map<string, { lease: Lease; revision: number }>();
  private rev = 0;
  /** The next update by revision succeeds whatever the revision (issue 4320). */
  lax = false;
  leases = {
    delete: async (k: string, o: { previousSeq: number }) => {
      const names = namesOfKey(k);
      if (this.held.get(key(names))?.revision === o.previousSeq) this.held.delete(key(names));
    },
  };
  async entry(names: readonly string[]) {
    return this.tree.get(key(names)) ?? null;
  }
  async create(names: readonly string[], e: TreeEntry) {
    if (this.tree.has(key(names))) throw new Error("busy");
    this.tree.set(key(names), e);
  }
  async put(names: readonly string[], e: TreeEntry) {
    this.tree.set(key(names), e);
  }
  async remove(names: readonly string[]) {
    this.tree.delete(key(names));
    this.held.delete(key(names));
  }
  async paths() {
    return [...this.tree].map(([k, entry]) => ({ names: k.split("/"), entry }));
  }
  async lease(names: readonly string[]) {
    return this.held.get(key(names)) ?? null;
  }
  /** One copy of the leases here: the stream leader's view is the only one. */
  async leaseAtLeader(names: readonly string[]) {
    return this.held.get(key(names)) ?? null;
  }
  /** The claim is the store's own (confirmation at the leader included). */
  claimLease = Store.prototype.claimLease;
  async takeLease(names: readonly string[], me: Lease, revision?: number) {
    await sleep(1);
    const cur = this.held.get(key(names));
    if (revision === undefined ? cur !== undefined : cur?.revision !== revision && !this.lax) return null;
    if (revision !== undefined && cur?.revision !== revision) this.lax = false;
    const r = ++this.rev;
    this.held.set(key(names), { lease: me, revision: r });
    return r;
  }
  renewLease(names: readonly string[], me: Lease, revision: number) {
    return this.takeLease(names, me, revision);
  }
  expire(names: readonly string[]) {
    this.held.delete(key(names));
  }
}

interface Recorder {
  id: string;
  detached: number;
  closed: number;
}

function daemon(store: FakeStore, id: string, dead: Set<string>, members: string[]) {
  const rec: Recorder = { id, detached: 0, closed: 0 };
  const svcs = new StoreServices({
    store: store as unknown as Store,
    me: { id, url: `circuit://127.0.0.1:1/${id}` },
    alive: (x) => !dead.has(x),
    members: () => members.filter((m) => !dead.has(m)),
    log: silentLogger,
    checkSpec: (raw) => raw as FullServiceSpec,
    newHost: () =>
      ({
        detach: () => void rec.detached++,
        close: async () => void rec.closed++,
        serverGone: () => {},
        scale: () => {},
        stat: () => ({ supervisor: id }),
      }) as unknown as ServiceHost,
  });
  return { svcs, rec };
}

const spec = { cmd: { path: "sleep", args: ["60"] }, replicas: 2, min: 0, max: 10 } as unknown as FullServiceSpec;
const WEB = ["@", "web"];

async function hosts(...ds: { svcs: StoreServices }[]): Promise<number> {
  let n = 0;
  for (const d of ds) if ("svc" in (await d.svcs.where(WEB).catch(() => ({ moved: "" })))) n++;
  return n;
}

test("two daemons that both took the lease (issue 4320): one steps down within a renewal, stopping nothing", async () => {
  const store = new FakeStore();
  const dead = new Set<string>();
  const a = daemon(store, "XA", dead, ["XA", "XB"]);
  const b = daemon(store, "XB", dead, ["XA", "XB"]);
  try {
    await a.svcs.make(WEB, spec);
    assert.equal(store.held.get(key(WEB))?.lease.id, "XA");
    // B believes A dead while A renews: both updates succeed (the store's defect).
    dead.add("XA");
    store.lax = true;
    const [wb] = await Promise.all([b.svcs.where(WEB), sleep(0)]);
    assert.ok("svc" in wb, "B supervises");
    dead.delete("XA");
    // Within a few renewals exactly one supervises; the other detached and closed nothing.
    await sleep(5 * store.config.renewMs);
    const holder = store.held.get(key(WEB))?.lease.id;
    const [win, lose] = holder === "XA" ? [a, b] : [b, a];
    assert.ok(holder === "XA" || holder === "XB");
    assert.equal(win.rec.detached, 0, "the holder supervises on");
    assert.equal(lose.rec.detached, 1, "the other stepped down");
    assert.equal(a.rec.closed + b.rec.closed, 0, "no replica was stopped");
    assert.deepEqual(await lose.svcs.where(WEB), { moved: holder }, "it sends requests to the holder");
    assert.equal(await hosts(a, b), 1);
  } finally {
    await a.svcs.close();
    await b.svcs.close();
  }
});

test("a sweep takes over what a dead daemon held and what nobody holds, and leaves a live holder alone", async () => {
  const store = new FakeStore();
  const dead = new Set<string>();
  const a = daemon(store, "XA", dead, ["XA", "XB", "XC"]);
  const b = daemon(store, "XB", dead, ["XA", "XB", "XC"]);
  const c = daemon(store, "XC", dead, ["XA", "XB", "XC"]);
  const names = (p: string) => ["@", p];
  try {
    for (const p of ["one", "two", "three"]) await store.create(names(p), { kind: "svc", spec, desired: 2 });
    assert.ok("svc" in (await a.svcs.where(names("one"))));
    assert.ok("svc" in (await c.svcs.where(names("two"))));
    assert.ok("svc" in (await c.svcs.where(names("three"))));
    // C dies; A's lease of "one" expires as if A were paused.
    dead.add("XC");
    await c.svcs.close();
    store.held.set(key(names("two")), { lease: { id: "XC", url: "" }, revision: 999 });
    a.svcs.memberLeft("XC");
    b.svcs.memberLeft("XC");
    await sleep(3 * store.config.renewMs);
    const live = (p: string) => ["XA", "XB"].includes(store.held.get(key(names(p)))?.lease.id ?? "");
    assert.ok(live("two"), "the dead daemon's service is supervised by a live one");
    assert.ok(live("three"), "so is the one whose lease it handed back on close");
    assert.equal(store.held.get(key(names("one")))?.lease.id, "XA", "a live holder keeps its service");
    store.expire(names("one"));
    await b.svcs.sweep();
    const one = store.held.get(key(names("one")))?.lease.id;
    assert.ok(one === "XB" || one === "XA", `an expired lease is taken again: ${one}`);
    assert.equal(a.rec.closed + b.rec.closed + c.rec.closed, 0, "takeovers stop no replica");
  } finally {
    await a.svcs.close();
    await b.svcs.close();
  }
});

test("a scrub removes the service and its lease: no daemon supervises it afterwards", async () => {
  const store = new FakeStore();
  const dead = new Set<string>();
  const a = daemon(store, "XA", dead, ["XA", "XB"]);
  const b = daemon(store, "XB", dead, ["XA", "XB"]);
  try {
    await a.svcs.make(WEB, spec);
    const w = await a.svcs.where(WEB);
    assert.ok("svc" in w);
    await a.svcs.scrub(WEB, w.svc);
    assert.equal(a.rec.closed, 1, "the replicas were stopped");
    await b.svcs.sweep();
    await a.svcs.sweep();
    assert.equal(store.tree.size, 0);
    assert.equal(store.held.size, 0);
    await assert.rejects(b.svcs.where(WEB), { code: "NotFound" });
  } finally {
    await a.svcs.close();
    await b.svcs.close();
  }
});
