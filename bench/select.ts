// Scenario `select`: what choosing costs. A round is A: send a 100-byte value on one of N cap-0
// chans, then recv the reply on a pong chan; B takes the value with `select` over N recv cases (only
// the one A sent on is ever ready) and sends it back. The baseline is the same round with B doing
// a plain `recv` on one chan, measured in the same run: the difference is select's extra round
// trip (offer, then commit) and its registration on every case's channel.
import { performance } from "node:perf_hooks";
import { type BenchChan, type BenchClient, checkPayload, dialCircuit, getChan, openChan } from "./circuit-lib.ts";
import type { RoleContext, Row, Scenario, ScenarioContext } from "./harness.ts";
import { errorText, latencySummary, startCircuitDaemon } from "./harness.ts";

const PAYLOAD_BYTES = 100;
const WARMUP = 300;
const ROUNDS = 3_000;
const SECONDS = 8;
/** Cases per select, and 1 for the plain-recv baseline. */
const WIDTHS = [1, 2, 8];
/** Rounds of one width before the next width's turn. */
const BLOCK = 100;

// The slice of the library this scenario needs beyond circuit-lib's, loaded the same way.
interface SelectChan extends BenchChan {
  recvCase(): unknown;
}
type SelectFn = (cases: unknown[]) => Promise<{ index: number; value?: unknown }>;

async function loadSelect(): Promise<SelectFn> {
  const lib = (await import(new URL("../src/index.ts", import.meta.url).href)) as { select: SelectFn };
  return lib.select;
}

async function chans(client: BenchClient, name: string, n: number, make: boolean): Promise<SelectChan[]> {
  const out: SelectChan[] = [];
  for (let i = 0; i < n; i++) {
    const c = make ? await openChan(client, `${name}-${i}`, 0) : await getChan(client, `${name}-${i}`);
    out.push(c as SelectChan);
  }
  return out;
}

async function chooserRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const width = Number(args.width);
  const name = String(args.name);
  const ins = await chans(client, name, width, true);
  const pong = await openChan(client, `${name}-pong`, 0);
  const select = await loadSelect();
  const cases = ins.map((c) => c.recvCase());
  const only = ins[0] as SelectChan;
  ctx.report("ready");
  // Runs until the orchestrator kills this process.
  for (;;) {
    const v = width === 1 ? await only.recv() : (await select(cases)).value;
    await pong.send(v);
  }
}

/** The measuring side: one process drives every width, in alternating blocks, so that a change in
 * the machine's load during the run hits all rows alike. */
async function senderRole(args: Record<string, unknown>, ctx: RoleContext): Promise<void> {
  const client = await dialCircuit(String(args.url));
  const names = args.names as Record<string, string>;
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const setups = await Promise.all(
    WIDTHS.map(async (width) => {
      const name = names[String(width)] as string;
      const outs = await chans(client, name, width, false);
      const pong = await getChan(client, `${name}-pong`);
      let i = 0;
      // Which chan gets each round's value: every case is the ready one in turn.
      const round = async () => {
        await (outs[(i++ * 7919) % width] as SelectChan).send(payload);
        checkPayload(await pong.recv(), PAYLOAD_BYTES);
      };
      return { width, round, samples: new Float64Array(Number(args.rounds)), done: 0 };
    }),
  );
  for (const s of setups) for (let i = 0; i < Number(args.warmup); i++) await s.round();
  const stopAt = performance.now() + Number(args.seconds) * 1000;
  const rounds = Number(args.rounds);
  while (performance.now() < stopAt && setups.some((s) => s.done < rounds)) {
    for (const s of setups) {
      for (let k = 0; k < BLOCK && s.done < rounds; k++) {
        const t = performance.now();
        await s.round();
        s.samples[s.done++] = performance.now() - t;
      }
    }
  }
  const results: Record<string, unknown> = {};
  for (const s of setups) results[String(s.width)] = latencySummary(s.samples.subarray(0, s.done));
  ctx.report("done", { results });
}

function rowOf(width: number): { id: string; label: string } {
  return width === 1
    ? { id: "select.recv", label: "circuit plain recv, cap-0 chan + reply" }
    : { id: `select.${width}`, label: `circuit select over ${width} recv cases, 1 ready + reply` };
}

export const scenario: Scenario = {
  name: "select",
  description: `select over ${WIDTHS.filter((w) => w > 1).join(" and ")} recv cases vs plain recv, ${ROUNDS} rounds each after ${WARMUP} warm-up, in alternating blocks of ${BLOCK}, ≤ ${SECONDS} s`,
  budgetMs: 60_000,
  async run(ctx: ScenarioContext) {
    const fail = (e: unknown) => ({
      rows: WIDTHS.map((w) => ({ ...rowOf(w), kind: "latency" as const, error: errorText(e) })),
    });
    try {
      const { url } = await startCircuitDaemon(ctx.procs);
      ctx.log(`select: daemon at ${url}`);
      const stamp = `${process.pid}-${Date.now().toString(36)}`;
      const names = Object.fromEntries(WIDTHS.map((w) => [String(w), `select-${w}-${stamp}`]));
      const choosers = WIDTHS.map((width) =>
        ctx.procs.role("select", "chooser", { url, name: names[String(width)], width }),
      );
      await Promise.all(choosers.map((b) => b.next("ready")));
      const a = ctx.procs.role("select", "sender", {
        url,
        names,
        warmup: WARMUP,
        rounds: ROUNDS,
        seconds: SECONDS,
      });
      const { results } = (await a.next("done")) as unknown as { results: Record<string, Record<string, number>> };
      const rows = WIDTHS.map((width): Row => {
        const s = results[String(width)] as Record<string, number>;
        const row: Row = {
          ...rowOf(width),
          kind: "latency",
          rounds: s.rounds,
          p50Us: s.p50Us,
          p99Us: s.p99Us,
          meanUs: s.meanUs,
          minUs: s.minUs,
          maxUs: s.maxUs,
        };
        if ((s.rounds as number) < ROUNDS) row.note = `time limit after ${s.rounds} of ${ROUNDS} rounds`;
        return row;
      });
      return { rows };
    } catch (e) {
      return fail(e);
    }
  },
  roles: { chooser: chooserRole, sender: senderRole },
};
