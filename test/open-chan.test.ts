// Get-or-create in one step (anchor.openChan), typed getters that fail with NotFound or WrongKind,
// error codes that survive the wire, and handles that let go at the end of an `await using` scope.
// Races run in separate OS processes so that the daemon, not one client's event loop, has to keep
// them apart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { fromWire } from "../src/errors.ts";
import {
  AddressInUse,
  AnchorBusy,
  CircuitError,
  type Client,
  dial,
  ERROR_CODES,
  NotFound,
  WrongKind,
} from "../src/index.ts";
import { type Daemon, killAll, ROOT, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let c: Client;

before(async () => {
  d = await startDaemon();
  c = await dial(d.url);
});

after(async () => {
  await c?.close();
  await killAll();
});

/**
 * A client process that opens PATH with openChan(CAP) at the moment GO arrives on its stdin, sends
 * its own number once, and prints the capacity it got.
 */
const opener = `
import { dial } from "circuit-ts";
const [url, path, cap, me] = process.argv.slice(1);
const client = await dial(url);
await new Promise((r) => process.stdin.once("data", r));
const ch = await client.walk(path).openChan(Number(cap));
await ch.send(Number(me));
console.log(ch.cap);
await client.close();
`;

test("processes opening one anchor at the same moment all get the same channel, made once", async () => {
  const N = 6;
  const path = `/${d.id}/race/q`;
  const procs = Array.from({ length: N }, (_, i) =>
    spawn(process.execPath, ["--input-type=module", "-e", opener, d.url, path, String(8 + i), String(i)], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    }),
  );
  try {
    const outs = procs.map((p) => {
      let out = "";
      let err = "";
      p.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
      p.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
      return once(p, "close").then(([code]) => ({ code, out: out.trim(), err }));
    });
    // Every client has dialled once the daemon sees N connections; a short wait is enough here.
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of procs) p.stdin.end("go\n");
    const results = await Promise.all(outs);
    for (const r of results) assert.equal(r.code, 0, r.err);
    // One of them made it, with its own capacity; everybody else got that channel and its capacity.
    const caps = new Set(results.map((r) => r.out));
    assert.equal(caps.size, 1, `capacities seen: ${[...caps]}`);
    const ch = await c.walk(path).getChan<number>();
    assert.equal(String(ch.cap), [...caps][0]);
    const got: number[] = [];
    for (let i = 0; i < N; i++) got.push(await ch.recv({ signal: AbortSignal.timeout(5000) }));
    assert.deepEqual(
      got.sort((a, b) => a - b),
      Array.from({ length: N }, (_, i) => i),
    );
    assert.equal((await c.walk(`/${d.id}/race`).list()).length, 1);
  } finally {
    for (const p of procs) p.kill("SIGKILL");
  }
});

test("openChan returns the channel that is there (whatever its cap) and refuses other kinds", async () => {
  const made = await c.walk(`/${d.id}/o/a`).makeChan<string>(3);
  const opened = await c.walk(`/${d.id}/o/a`).openChan<string>(100);
  assert.equal(opened.cap, 3);
  await opened.send("x");
  assert.equal(await made.recv(), "x");
  await assert.rejects(c.walk(`/${d.id}/o/a`).makeChan(1), AnchorBusy);

  await c.walk(`/${d.id}/o/p`).makeProc({ path: "sleep", args: ["30"] });
  await assert.rejects(c.walk(`/${d.id}/o/p`).openChan(1), (e: unknown) => {
    assert.ok(e instanceof WrongKind);
    assert.match(e.message, /holds a proc, not a channel/);
    return true;
  });
  await assert.rejects(c.walk(`/${d.id}`).openChan(1), WrongKind);
  await assert.rejects(c.walk(`/${d.id}/o/b`).openChan(-1), RangeError);
  await assert.rejects(c.walk(`/${d.id}/o/b`).openChan(1.5), RangeError);
  await c.walk(`/${d.id}/o/p`).scrub();
});

test("typed getters return their kind and fail with NotFound or WrongKind", async () => {
  const base = `/${d.id}/g`;
  await c.walk(`${base}/ch`).makeChan<number>(1);
  await c.walk(`${base}/sub`).makeOnJoin();
  await c.walk(`${base}/ns`).makeNameserver();
  await c.walk(`${base}/p`).makeProc({ path: "sleep", args: ["30"] });

  const ch = await c.walk(`${base}/ch`).getChan<number>();
  assert.equal(ch.kind, "chan");
  await ch.send(7);
  assert.equal(await ch.recv(), 7);
  assert.equal((await c.walk(`${base}/sub`).getSubscription()).kind, "@join");
  assert.equal((await c.walk(`${base}/ns`).getNameserver()).kind, "dns");
  assert.equal((await c.walk(`${base}/p`).getProc()).kind, "proc");
  const srv = await c.walk(`/${d.id}`).getServer();
  assert.equal((await srv.peek()).id, d.id);

  await assert.rejects(c.walk(`${base}/ch`).getProc(), WrongKind);
  await assert.rejects(c.walk(`${base}/p`).getChan(), WrongKind);
  await assert.rejects(c.walk(`${base}/sub`).getChan(), WrongKind);
  await assert.rejects(c.walk(`${base}/ns`).getServer(), WrongKind);
  await assert.rejects(c.walk(`/${d.id}`).getNameserver(), WrongKind);
  await assert.rejects(c.walk(`${base}/none`).getChan(), (e: unknown) => {
    assert.ok(e instanceof NotFound);
    assert.equal(e.code, "NotFound");
    return true;
  });
  for (const p of ["ch", "sub", "ns", "p"]) await c.walk(`${base}/${p}`).scrub();
});

test("an error from the daemon comes back as its class, with a code from ERROR_CODES", async () => {
  const ns = await c.walk(`/${d.id}/e/ns1`).makeNameserver();
  const err = await c
    .walk(`/${d.id}/e/ns2`)
    .makeNameserver(ns.address)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(err instanceof AddressInUse, String(err));
  assert.ok(err instanceof CircuitError);
  assert.ok(ERROR_CODES.includes(err.code));
  assert.equal(err.code, "AddressInUse");
  await ns.scrub();
  // A code this release does not know (from a newer peer) becomes Internal, keeping its name.
  const odd = fromWire({ code: "FromTheFuture", message: "something new" });
  assert.equal(odd.code, "Internal");
  assert.equal(odd.message, "FromTheFuture: something new");
  assert.ok(fromWire({ code: "NotFound", message: "x" }) instanceof NotFound);
});

test("await using: a channel's iterations end and give back what they prefetched; a subscription is scrubbed", async () => {
  const path = `/${d.id}/dispose/q`;
  const ch = await c.walk(path).makeChan<number>(10);
  for (let i = 0; i < 5; i++) await ch.send(i);
  {
    await using mine = await c.walk(path).openChan<number>(10);
    const it = mine.iterate({ prefetch: 5 });
    assert.deepEqual(await it.next(), { value: 0, done: false });
    // Four values sit prefetched in this process; leaving the scope gives them back.
  }
  assert.equal((await ch.stat()).len, 4);
  assert.deepEqual(await ch.recv(), 1);
  {
    await using sub = await c.walk(`/${d.id}/dispose/leaves`).makeOnLeave();
    assert.equal(sub.kind, "@leave");
  }
  assert.equal(await c.walk(`/${d.id}/dispose/leaves`).get(), null);
  {
    await using srv = await c.walk(`/${d.id}`).getServer();
    assert.equal((await srv.peek()).id, d.id);
  }
  // The server is untouched by its handle's disposal.
  assert.equal((await c.servers()).length, 1);
  await ch.scrub();
});
