// Host resources of a server element: listening ports, port reservations, and files under
// --fs-root, streamed both ways; everything outside the root is refused, symlinks included.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, describe, test } from "node:test";
import { AccessDenied, type Client, dial, NotFound, type ServerHandle, StreamBroken, WrongKind } from "../src/index.ts";
import { type Daemon, killAll, startDaemon } from "./helpers/daemon.ts";
import { readAll } from "./helpers/streams.ts";

after(killAll);

const root = mkdtempSync(join(tmpdir(), "circuit-fsroot-"));
const outside = mkdtempSync(join(tmpdir(), "circuit-outside-"));
let d: Daemon;
let bare: Daemon;
let c: Client;
let srv: ServerHandle;

before(async () => {
  writeFileSync(join(outside, "secret"), "outside the root\n");
  mkdirSync(join(root, "docs"));
  writeFileSync(join(root, "docs", "a.txt"), "alpha\n");
  symlinkSync(outside, join(root, "out-dir"));
  symlinkSync(join(outside, "secret"), join(root, "out-file"));
  symlinkSync(join(root, "docs", "a.txt"), join(root, "in-link"));
  symlinkSync(join(root, "nowhere"), join(root, "dangling"));
  [d, bare] = await Promise.all([startDaemon(["--fs-root", root]), startDaemon()]);
  c = await dial(d.url);
  srv = (await c.walk(`/${d.id}`).get()) as ServerHandle;
});
after(async () => {
  await c?.close();
  await Promise.all([d?.stop(), bare?.stop()]);
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("ports", () => {
  test("the host's listening TCP ports include the daemon's own and a test server's", async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    try {
      const mine = (s.address() as { port: number }).port;
      const ports = await srv.ports();
      const daemonPort = Number(/:(\d+)\//.exec(d.url)?.[1]);
      assert.ok(ports.some((p) => p.port === daemonPort && p.address === "127.0.0.1" && p.family === 4));
      assert.ok(ports.some((p) => p.port === mine));
      assert.deepEqual(
        ports.map((p) => p.port),
        [...ports.map((p) => p.port)].sort((x, y) => x - y),
      );
    } finally {
      s.close();
    }
  });

  test("reservePort hands out a free port, and not the same one again", async () => {
    const got = new Set<number>();
    for (let i = 0; i < 20; i++) got.add(await srv.reservePort());
    assert.equal(got.size, 20);
    const port = [...got][0] as number;
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", resolve);
    });
    s.close();
    assert.ok((await srv.reservePort({ address: "127.0.0.1" })) > 0);
  });
});

describe("files under --fs-root", () => {
  test("write, stat, list and read back a 5 MB file, streamed both ways", async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const w = srv.writeFile("up/deep/blob.bin");
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), w);
    await w.done;
    assert.equal(sha(readFileSync(join(root, "up", "deep", "blob.bin"))), sha(data));
    const st = await srv.statFile("up/deep/blob.bin");
    assert.equal(st.type, "file");
    assert.equal(st.size, data.length);
    assert.equal(st.path, "up/deep/blob.bin");
    assert.deepEqual(
      (await srv.listFiles("up/deep")).map((e) => [e.name, e.type, e.size]),
      [["blob.bin", "file", data.length]],
    );
    assert.equal(sha(await readAll(srv.readFile("up/deep/blob.bin"))), sha(data));
    const top = (await srv.listFiles()).map((e) => `${e.name}:${e.type}`);
    assert.deepEqual(top, [
      "dangling:symlink",
      "docs:dir",
      "in-link:symlink",
      "out-dir:symlink",
      "out-file:symlink",
      "up:dir",
    ]);
  });

  test("a write replaces the file only when complete; a broken upload leaves no trace", async () => {
    const w1 = srv.writeFile("docs/a.txt");
    w1.end("replaced\n");
    await w1.done;
    assert.equal(readFileSync(join(root, "docs", "a.txt"), "utf8"), "replaced\n");
    const w2 = srv.writeFile("docs/a.txt");
    w2.write("half of a new vers");
    await new Promise((r) => setTimeout(r, 200));
    w2.destroy(new Error("changed my mind"));
    await assert.rejects(w2.done, StreamBroken);
    assert.equal(readFileSync(join(root, "docs", "a.txt"), "utf8"), "replaced\n");
    assert.deepEqual(readdirSync(join(root, "docs")), ["a.txt"], "no temporary file left");
  });

  test("symlinks inside the root work", async () => {
    assert.equal(
      (await readAll(srv.readFile("in-link"))).toString(),
      readFileSync(join(root, "docs", "a.txt"), "utf8"),
    );
  });

  test("paths outside the root are refused: '..', absolute paths, symlinks that lead out or nowhere", async () => {
    for (const bad of ["../x", "docs/../../x", "..", "/etc/passwd", "out-dir/secret", "out-file", "dangling"]) {
      await assert.rejects(readAll(srv.readFile(bad)), AccessDenied, `read ${bad}`);
      await assert.rejects(srv.statFile(bad), AccessDenied, `stat ${bad}`);
    }
    await assert.rejects(srv.listFiles("out-dir"), AccessDenied);
    await assert.rejects(srv.listFiles("../"), AccessDenied);
    for (const bad of ["../x", "/tmp/x", "out-dir/new", "out-dir/sub/new", "out-file", "dangling"]) {
      const w = srv.writeFile(bad);
      w.end("nope");
      await assert.rejects(w.done, AccessDenied, `write ${bad}`);
    }
    assert.equal(readFileSync(join(outside, "secret"), "utf8"), "outside the root\n");
    assert.deepEqual(readdirSync(outside), ["secret"]);
  });

  test("missing files are NotFound, directories are not files", async () => {
    await assert.rejects(readAll(srv.readFile("no/such")), NotFound);
    await assert.rejects(srv.statFile("nope"), NotFound);
    await assert.rejects(readAll(srv.readFile("docs")), WrongKind);
    const w = srv.writeFile("docs");
    w.end("x");
    await assert.rejects(w.done, WrongKind);
  });

  test("a server started without --fs-root refuses every file operation", async () => {
    const c2 = await dial(bare.url);
    try {
      const s2 = (await c2.walk(`/${bare.id}`).get()) as ServerHandle;
      await assert.rejects(s2.statFile("x"), (e: Error) => e instanceof AccessDenied && /--fs-root/.test(e.message));
      await assert.rejects(readAll(s2.readFile("x")), AccessDenied);
      await assert.rejects(s2.listFiles(), AccessDenied);
      const w = s2.writeFile("x");
      w.end("x");
      await assert.rejects(w.done, AccessDenied);
    } finally {
      await c2.close();
    }
  });
});
