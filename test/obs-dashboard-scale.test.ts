// The dashboard with 10,000 elements on one server: the page's live updates stay small and quick
// to draw (the busiest 200 channels, counts of the rest), and the anchor tree pages through all of
// them, 200 at a time, with a filter.
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { chromium } from "playwright-core";
import { dial } from "../src/index.ts";
import { killAll, ROOT, startDaemon } from "./helpers/daemon.ts";
import { httpUrl } from "./helpers/obs.ts";

after(killAll);
const CHROMIUM = process.env.CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
const N = 10_000;

test("10,000 channels: small live updates drawn quickly, the tree pages through all of them", async () => {
  assert.ok(CHROMIUM, "chromium is installed (.ci/run installs Debian's chromium)");
  const d = await startDaemon(["--http", "127.0.0.1:0"]);
  const c = await dial(d.url);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const url = await httpUrl(d);
    const name = (i: number) => `/${d.id}/many/c${String(i).padStart(5, "0")}`;
    for (let i = 0; i < N; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, N - i) }, (_, j) => c.walk(name(i + j)).makeChan<number>(4)),
      );
    }
    const hot = await c.walk(name(1234)).get();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(url);
    await page
      .locator("#totals")
      .filter({ hasText: `${N} channels` })
      .waitFor({ timeout: 8000 });
    // Traffic on one of them: it climbs to the top of the channels table.
    const ch = hot as unknown as { send(v: number): Promise<void>; recv(): Promise<unknown> };
    const busy = (async () => {
      for (let k = 0; k < 400; k++) {
        await ch.send(k);
        await ch.recv();
      }
    })();
    await busy;
    await page
      .locator("#channels tbody tr")
      .first()
      .filter({ hasText: name(1234) })
      .waitFor({ timeout: 5000 });
    assert.equal(await page.locator("#channels tbody tr").count(), 200, "the busiest 200 are drawn");
    assert.match(String(await page.locator("#chan-note").textContent()), new RegExp(`200 busiest of ${N}`));

    const state = await (await fetch(`${url}api/state`)).text();
    assert.ok(state.length < 600_000, `one live update is ${state.length} bytes`);
    // Each update is drawn well within its one-second period.
    const times: number[] = [];
    for (let k = 0; k < 3; k++) {
      const round = Number(await page.locator("body").getAttribute("data-round"));
      await page.waitForFunction((r) => Number(document.body.dataset.round) > r, round, { timeout: 5000 });
      times.push(Number(await page.locator("body").getAttribute("data-render-ms")));
    }
    // Typically well within it (the median); a test file running beside this one on a 2-core machine
    // may stretch one, but none may take the period (349 ms once seen so, with 139 and 123 beside it).
    const sorted = [...times].sort((x, y) => x - y);
    assert.ok((sorted[1] as number) < 250 && (sorted[2] as number) < 1000, `updates drawn in ${times.join(", ")} ms`);

    // The tree: all 10,000, 200 a page, and a filter.
    await page.locator(`#tree tr[data-go="/${d.id}"]`).click();
    await page.locator(`#tree tr[data-go="/${d.id}/many"]`).click();
    await page
      .locator("#page")
      .filter({ hasText: `1–200 of ${N}` })
      .waitFor({ timeout: 5000 });
    assert.equal(await page.locator("#tree tbody tr").count(), 200);
    await page.locator("#next").click();
    await page
      .locator("#page")
      .filter({ hasText: `201–400 of ${N}` })
      .waitFor({ timeout: 5000 });
    assert.equal(await page.locator("#tree tbody tr").first().getAttribute("data-path"), name(200));
    await page.locator("#filter").fill("c09999");
    await page.locator("#page").filter({ hasText: "1–1 of 1" }).waitFor({ timeout: 5000 });
    mkdirSync(join(ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "test-results", "dashboard-10k.png"), fullPage: true });
  } finally {
    await browser.close();
    await c.close();
    await d.stop();
  }
});
