// test-runner: heavy (a browser)
// The dashboard in a real browser (Debian's chromium driven by playwright-core): one daemon of a
// 3-daemon circuit shows every server, a channel made after the page opened (with its len)
// within 2 s, a process's output as it is written, and a server killed -9 going away; a keyed
// circuit's page answers 401 without the token. Screenshots land in test-results/.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { dial } from "../src/index.ts";
import { killAll, ROOT, runCli, startDaemon } from "./helpers/daemon.ts";
import { httpUrl } from "./helpers/obs.ts";

after(killAll);
const dir = mkdtempSync(join(tmpdir(), "circuit-obs-browser-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const shots = join(ROOT, "test-results");
mkdirSync(shots, { recursive: true });

const CHROMIUM = process.env.CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

let browser: Browser | undefined;
after(async () => {
  await browser?.close();
});

async function launch(): Promise<Browser> {
  assert.ok(CHROMIUM, "chromium is installed (.ci/run installs Debian's chromium)");
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  return browser;
}

test("one daemon's page shows the whole circuit, live", async () => {
  const a = await startDaemon(["--http", "127.0.0.1:0"]);
  const [b, c] = await Promise.all([startDaemon(["--join", a.url]), startDaemon(["--join", a.url])]);
  const url = await httpUrl(a);
  const client = await dial(a.url);
  const page = await (await launch()).newPage({ viewport: { width: 1400, height: 1000 } });
  try {
    // Wait until a sees all three (the joins may take a probe period).
    for (let i = 0; i < 100 && (await client.servers()).length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    await page.goto(url);
    for (const d of [a, b, c]) {
      await page.locator(`.card[data-server="${d.id}"] .kv`).first().waitFor({ timeout: 5000 });
    }
    assert.equal(await page.locator(".card[data-server]").count(), 3);
    assert.match(
      String(await page.locator(`.card[data-server="${b.id}"]`).textContent()).toLowerCase(),
      /load[\s\S]*memory[\s\S]*uptime/,
    );

    // A channel made on another server after the page opened: there within 2 s, with its len.
    // Right after the joins a server may still be settling into everyone's view: retry NotFound briefly.
    let ch: Awaited<ReturnType<ReturnType<typeof client.walk>["makeChan"]>> | undefined;
    for (let i = 0; !ch; i++) {
      try {
        ch = await client.walk(`/${b.id}/made-later`).makeChan<string>(8);
      } catch (err) {
        if ((err as { code?: string }).code !== "NotFound" || i >= 30) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await ch.send("one");
    await ch.send("two");
    await ch.send("three");
    const t0 = Date.now();
    const row = page.locator(`#channels tr[data-path="/${b.id}/made-later"]`);
    await row.locator(".len").filter({ hasText: /^3$/ }).waitFor({ timeout: 2000 });
    const took = Date.now() - t0;
    assert.ok(took <= 2000, `the channel appeared after ${took} ms`);
    assert.match(String(await row.textContent()), /3\s*\/\s*8/);

    // A process on the third server: its output appears as it is written.
    const p = await runCli([
      "-d",
      a.url,
      "mkproc",
      `/${c.id}/ticker`,
      "--",
      "sh",
      "-c",
      'i=0; while [ $i -lt 200 ]; do echo "tick $i"; i=$((i+1)); sleep 0.2; done',
    ]);
    assert.equal(p.code, 0, p.stderr);
    const procRow = page.locator(`#procs tr[data-path="/${c.id}/ticker"]`);
    await procRow.waitFor({ timeout: 3000 });
    await procRow.click();
    await page.locator("#output").filter({ hasText: "tick 2" }).waitFor({ timeout: 3000 });
    const first = await page.locator("#output").textContent();
    const last = Number(/tick (\d+)\s*$/.exec(String(first))?.[1]);
    await page
      .locator("#output")
      .filter({ hasText: `tick ${last + 5}` })
      .waitFor({ timeout: 4000 });
    // A service: its row says how many replicas run, and the replicas are among the processes.
    const svc = await runCli(["-d", a.url, "mksvc", `/${a.id}/svc/web`, "--replicas", "2", "--", "sleep", "60"]);
    assert.equal(svc.code, 0, svc.stderr);
    await page
      .locator(`#services tr[data-path="/${a.id}/svc/web"]`)
      .filter({ hasText: /2 \/ 2/ })
      .waitFor({ timeout: 5000 });
    await page.locator('#procs tr[data-path*="/svc/web/"]').nth(1).waitFor({ timeout: 5000 });
    await page.locator('#feed li[data-event="svc-start"]').first().waitFor({ timeout: 3000 });
    await page.screenshot({ path: join(shots, "dashboard-circuit.png"), fullPage: true });

    // The feed says who joined and what started.
    assert.ok((await page.locator('#feed li[data-event="proc-start"]').count()) >= 1);

    // Killed -9: the server leaves the page once the circuit knows it is dead.
    c.kill("SIGKILL");
    await page.locator(`.card[data-server="${c.id}"]`).waitFor({ state: "detached", timeout: 8000 });
    assert.equal(await page.locator(".card[data-server]").count(), 2);
    await page.locator(`#procs tr[data-path="/${c.id}/ticker"]`).waitFor({ state: "detached", timeout: 3000 });
    await page.locator('#feed li[data-event="leave"]').first().waitFor({ timeout: 3000 });
    await page.screenshot({ path: join(shots, "dashboard-after-kill.png"), fullPage: true });
  } finally {
    await page.close();
    await client.close();
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
});

test("a keyed circuit's page: 401 without the token, the page with it", async () => {
  const key = join(dir, "k");
  assert.equal((await runCli(["keygen", key])).code, 0);
  const d = await startDaemon(["--key", key, "--http", "127.0.0.1:0"]);
  const page = await (await launch()).newPage();
  try {
    const url = await httpUrl(d);
    const denied = await page.goto(url);
    assert.equal(denied?.status(), 401);
    assert.doesNotMatch(await page.content(), new RegExp(d.id));
    const r = await runCli(["-d", d.url.replace(/\/X.*$/, ""), "--key", key, "dashboard"]);
    assert.equal(r.code, 0, r.stderr);
    const ok = await page.goto(r.stdout.toString().trim());
    assert.equal(ok?.status(), 200);
    await page.locator(`.card[data-server="${d.id}"] .kv`).first().waitFor({ timeout: 5000 });
    assert.ok(await page.locator("#dot.on").count(), "the event stream is connected");
  } finally {
    await page.close();
    await d.stop();
  }
});
