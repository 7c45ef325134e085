// test-runner: alone (RSS and CPU figures)
// /metrics (`circuit start --http`): Prometheus text that a Prometheus parser reads, with the
// series DESIGN.md §13 names, whose values move when channels and processes are used; on a keyed
// circuit nothing without the token `circuit dashboard` hands out.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { dial } from "../src/index.ts";
import { killAll, runCli, startDaemon } from "./helpers/daemon.ts";
import { httpUrl } from "./helpers/obs.ts";

after(killAll);
const dir = mkdtempSync(join(tmpdir(), "circuit-obs-metrics-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }[];
}
const parse = createRequire(import.meta.url)("parse-prometheus-text-format") as (text: string) => Family[];

async function scrape(url: string): Promise<Map<string, Family>> {
  const r = await fetch(`${url}metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
  return new Map(parse(await r.text()).map((f) => [f.name, f]));
}

function value(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = m.get(name);
  assert.ok(f, `series ${name} is there`);
  const s = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  assert.ok(s, `${name}${JSON.stringify(labels)} is there`);
  return Number(s.value);
}

test("/metrics parses as Prometheus text and its values move with the traffic", async () => {
  const d = await startDaemon(["--http", "127.0.0.1:0", "--data", join(dir, "data")]);
  const url = await httpUrl(d);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const m0 = await scrape(url);
  for (const name of [
    "circuit_connections",
    "circuit_members",
    "circuit_elements",
    "circuit_values_in_total",
    "circuit_values_out_total",
    "circuit_bytes_in_total",
    "circuit_bytes_out_total",
    "circuit_blocked_operations",
    "circuit_processes",
    "circuit_failure_detector_events_total",
    "circuit_store_ops_total",
    "circuit_store_op_seconds_total",
    "circuit_store_op_max_seconds",
    "circuit_daemon_process_cpu_seconds_total",
    "circuit_daemon_process_resident_memory_bytes",
  ]) {
    assert.ok(m0.has(name), `${name} is served`);
  }
  assert.equal(m0.get("circuit_values_in_total")?.type, "COUNTER");
  assert.equal(value(m0, "circuit_members"), 1);
  assert.equal(value(m0, "circuit_elements", { kind: "chan" }), 0);
  assert.equal(value(m0, "circuit_values_in_total", { kind: "chan" }), 0);

  const c = await dial(d.url);
  try {
    const ch = await c.walk(`/${d.id}/work`).makeChan<string>(10);
    for (let i = 0; i < 10; i++) await ch.send(`v${i}`.repeat(100));
    // Blocked: the channel holds 10 and nobody receives.
    const blocked = ch.send("blocked").catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    const p = await runCli(["-d", d.url, "mkproc", `/${d.id}/sleeper`, "--", "sleep", "30"]);
    assert.equal(p.code, 0, p.stderr);
    // The process's RSS is sampled about once a second: wait (bounded) until it has been.
    let m1 = await scrape(url);
    const rssOf = (m: typeof m1): number => {
      try {
        return value(m, "circuit_process_rss_bytes", { path: `/${d.id}/sleeper` });
      } catch {
        return 0; // not sampled yet
      }
    };
    for (let i = 0; i < 50 && !(rssOf(m1) > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
      m1 = await scrape(url);
    }
    assert.equal(value(m1, "circuit_elements", { kind: "chan" }), 1);
    assert.equal(value(m1, "circuit_elements", { kind: "proc" }), 1);
    assert.equal(value(m1, "circuit_values_in_total", { kind: "chan" }), 10, "10 stored, 1 waiting for room");
    assert.ok(value(m1, "circuit_blocked_operations") >= 1);
    assert.ok(value(m1, "circuit_connections") >= 1);
    assert.ok(value(m1, "circuit_bytes_in_total") > 10 * 200, "the values' bytes came in");
    assert.equal(value(m1, "circuit_processes"), 1);
    assert.ok(value(m1, "circuit_process_rss_bytes", { path: `/${d.id}/sleeper` }) > 0);
    // Received: values out moves, and the senders get through.
    let got = 0;
    for await (const _ of ch) if (++got === 11) break;
    await blocked;
    const m2 = await scrape(url);
    assert.equal(value(m2, "circuit_values_out_total", { kind: "chan" }), 11);
    assert.equal(value(m2, "circuit_values_in_total", { kind: "chan" }), 11);
    assert.equal(value(m2, "circuit_blocked_operations"), 0);
    assert.ok(value(m2, "circuit_bytes_out_total") > value(m1, "circuit_bytes_out_total"));

    // A durable channel (--data): its writes are timed until synced.
    const durable = await c.walk(`/${d.id}/kept`).makeChan<string>(8, { durable: true });
    for (let i = 0; i < 5; i++) await durable.send(`d${i}`);
    const m3 = await scrape(url);
    assert.ok(value(m3, "circuit_store_ops_total", { op: "put" }) >= 5);
    assert.ok(value(m3, "circuit_store_op_seconds_total", { op: "put" }) > 0);
    assert.ok(value(m3, "circuit_store_op_max_seconds", { op: "put" }) > 0);
    assert.equal(value(m3, "circuit_store_ops_total", { op: "create" }), 1);
  } finally {
    await c.close();
    await d.stop();
  }
});

test("on a keyed circuit /metrics and the dashboard answer 401 without the token; circuit dashboard prints it", async () => {
  const key = join(dir, "k");
  assert.equal((await runCli(["keygen", key])).code, 0);
  const d = await startDaemon(["--key", key, "--http", "127.0.0.1:0"]);
  try {
    const url = await httpUrl(d);
    for (const p of ["", "metrics", "api/state", "api/events", "app.js"]) {
      const r = await fetch(`${url}${p}`);
      assert.equal(r.status, 401, `/${p} without the token`);
      const body = await r.text();
      assert.doesNotMatch(body, /circuit_|X[0-9a-f]{16}/, "nothing but 401");
    }
    assert.equal((await fetch(`${url}metrics?token=${"A".repeat(32)}`)).status, 401, "a wrong token");
    const r = await runCli(["-d", d.url.replace(/\/X.*$/, ""), "--key", key, "dashboard"]);
    assert.equal(r.code, 0, r.stderr);
    const dash = r.stdout.toString().trim();
    assert.match(dash, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/);
    const page = await fetch(dash);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>circuit<\/title>/);
    const token = new URL(dash).searchParams.get("token") as string;
    const m = await fetch(`${url}metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(m.status, 200, "a scraper may send the token as a bearer token");
    assert.match(await m.text(), /circuit_members\{server="X[0-9a-f]{16}"\} 1/);
    // Without a key, `circuit dashboard` prints the bare URL; a daemon without --http has none.
    const plain = await startDaemon();
    const none = await runCli(["-d", plain.url, "dashboard"]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /serves no dashboard \(start it with --http/);
    await plain.stop();
    assert.equal(readFileSync(key, "utf8").includes(token), false, "the token is not the key");
  } finally {
    await d.stop();
  }
});
