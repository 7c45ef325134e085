// Values that would not come back exactly are refused before anything is sent (DESIGN §3.1), with
// a TypeError or RangeError that says where in the value and why; everything else round-trips
// exactly through a real daemon.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { type Chan, type Client, dial, select } from "../src/index.ts";
import { MAX_DEPTH } from "../src/wire/value-check.ts";
import { type Daemon, killAll, runCli, startDaemon } from "./helpers/daemon.ts";

let d: Daemon;
let client: Client;
let n = 0;

before(async () => {
  d = await startDaemon();
  client = await dial(d.url);
});

after(async () => {
  await client?.close();
  await killAll();
});

async function chan(cap = 1): Promise<Chan> {
  return client.walk(`/${d.id}/values/c${n++}`).makeChan(cap);
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { v };
  return v;
}

/** [1, <hole>, 3] */
function sparse(): unknown[] {
  const a = [1];
  a[2] = 3;
  return a;
}

class Job {
  id = 1;
}

const circular: Record<string, unknown> = { name: "loop" };
circular.self = circular;

/** [what, value, error class, message] */
const refused: [string, unknown, typeof TypeError | typeof RangeError, RegExp][] = [
  ["a Map", { jobs: [0, 1, 2, { tags: new Map([["a", 1]]) }] }, TypeError, /^value\.jobs\[3\]\.tags is a Map\b/],
  [
    "a Set",
    { jobs: [0, 1, 2, { tags: new Set(["a"]) }] },
    TypeError,
    /^value\.jobs\[3\]\.tags is a Set, which would come back as an array/,
  ],
  [
    "a Float32Array",
    [new Float32Array([1.5])],
    TypeError,
    /^value\[0\] is a Float32Array, which would come back as a Buffer/,
  ],
  ["a DataView", { v: new DataView(new ArrayBuffer(4)) }, TypeError, /^value\.v is a DataView/],
  ["an ArrayBuffer", new ArrayBuffer(4), TypeError, /^value is a ArrayBuffer/],
  ["a Uint8ClampedArray", { px: new Uint8ClampedArray(3) }, TypeError, /^value\.px is a Uint8ClampedArray/],
  [
    "a lone surrogate",
    { name: "ab\ud800c" },
    TypeError,
    /^value\.name is a string with a lone surrogate at index 2, which would come back as U\+FFFD/,
  ],
  ["a lone surrogate in a key", { "k\udc00": 1 }, TypeError, /^value has a key with a lone surrogate at index 1/],
  ["a bigint beyond 64 bits", { big: 2n ** 64n }, RangeError, /^value\.big is a bigint beyond 64 bits/],
  ["a bigint below -2^63", [-(2n ** 63n) - 1n], RangeError, /^value\[0\] is a bigint beyond 64 bits/],
  [
    "nesting too deep",
    nested(MAX_DEPTH + 1),
    RangeError,
    new RegExp(`is nested deeper than ${MAX_DEPTH} arrays and objects`),
  ],
  ["a circular reference", circular, RangeError, /^value\.self\.self\.self\.self….*a circular reference\?/],
  ["a function", { run() {} }, TypeError, /^value\.run is a function, which cannot be sent/],
  ["a symbol", [1, Symbol("x")], TypeError, /^value\[1\] is a symbol/],
  ["a class instance", { job: new Job() }, TypeError, /^value\.job is a Job, not a plain object/],
  ["a RegExp", /a/, TypeError, /^value is a RegExp/],
  ["an Error", { e: new Error("x") }, TypeError, /^value\.e is a Error/],
  ["a boxed string", { s: new String("x") }, TypeError, /^value\.s is a String/],
  ["-0", { x: [0, -0] }, RangeError, /^value\.x\[1\] is -0, which would come back as 0/],
  ["a sparse array", { a: sparse() }, TypeError, /^value\.a\[1\] is a hole in a sparse array/],
  ["a __proto__ key", JSON.parse('{"o": {"__proto__": 1}}'), TypeError, /^value\.o has a key "__proto__"/],
  ["an odd key", { "a b": { c: new Set() } }, TypeError, /^value\["a b"\]\.c is a Set/],
];

describe("values that would not come back exactly", () => {
  for (const [what, value, cls, msg] of refused) {
    test(`${what} is refused before anything is sent`, async () => {
      const ch = await chan();
      await assert.rejects(ch.send(value), (e: Error) => {
        assert.ok(e instanceof cls, `${e.constructor.name}: ${e.message}`);
        assert.match(e.message, msg);
        return true;
      });
      assert.throws(() => ch.sendCase(value), cls);
      const st = await ch.stat();
      assert.equal(st.len, 0);
      assert.equal(st.numSend, 0);
    });
  }

  test("the CLI says why in one line and exits 2", async () => {
    const ch = await chan();
    const r = await runCli(["-d", d.url, "send", "--json", ch.path], { input: '{"name": "\\ud800"}' });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "circuit: value.name is a string with a lone surrogate at index 0, which would come back as U+FFFD\n",
    );
    assert.equal((await ch.stat()).len, 0);
  });
});

describe("values that travel", () => {
  const exact: [string, unknown][] = [
    ["null", null],
    ["undefined", undefined],
    ["booleans", [true, false]],
    ["floats", [1.5, -2.25, 0, 1e300, Number.MIN_VALUE, Number.NaN, Number.POSITIVE_INFINITY, -Number.MAX_VALUE]],
    ["integers past 2^53", [2 ** 60, -(2 ** 60)]],
    ["bigints at the ends of 64 bits", [0n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 63n, -1n]],
    ["Dates", [new Date(0), new Date(1_700_000_000_123), new Date(-8.64e15), new Date(8.64e15)]],
    ["strings", ["", "héllo", "😀 pair \ud83d\ude00", "x".repeat(70_000)]],
    ["objects with undefined", { a: undefined, b: [undefined, 1] }],
    ["nesting at the limit", nested(MAX_DEPTH)],
    ["a job", { id: "job-1", at: new Date(5), tags: ["a", "b"], owner: { name: "ada", groups: [] }, size: 2n ** 40n }],
  ];
  for (const [what, value] of exact) {
    test(`${what} come back exactly`, async () => {
      const ch = await chan();
      await ch.send(value);
      assert.deepEqual(await ch.recv(), value);
    });
  }

  test("an invalid Date comes back invalid", async () => {
    const ch = await chan();
    await ch.send({ when: new Date(Number.NaN) });
    const got = (await ch.recv()) as { when: Date };
    assert.ok(got.when instanceof Date && Number.isNaN(got.when.getTime()));
  });

  test("byte values come back as Buffers (Uint8Arrays) with the same bytes", async () => {
    const ch = await chan(4);
    const u8 = new Uint8Array([0, 1, 255]);
    await ch.send(u8);
    await ch.send(Buffer.from("buf"));
    await ch.send({ nested: new Uint8Array([7]) });
    assert.deepEqual(await ch.recv(), Buffer.from(u8));
    assert.deepEqual(await ch.recv(), Buffer.from("buf"));
    assert.deepEqual(await ch.recv(), { nested: Buffer.from([7]) });
  });

  test("a select send case of a good value is delivered", async () => {
    const ch = await chan();
    const v = { k: [1, 2, { d: new Date(3) }] };
    await select([ch.sendCase(v)]);
    assert.deepEqual(await ch.recv(), v);
  });
});

/** Bytes of any Uint8Array as one class, and objects as plain objects, for comparing. */
class Bytes {
  constructor(readonly b: number[]) {}
}
function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Bytes([...v]);
  if (Array.isArray(v)) return v.map(norm);
  if (v instanceof Date || v === null || typeof v !== "object") return v;
  const o: Record<string, unknown> = {};
  for (const k in v) o[k] = norm((v as Record<string, unknown>)[k]);
  return o;
}

test("any value either comes back deep-equal or is refused before anything is sent", async () => {
  const ch = await chan();
  let sent = 0;
  let refusedCount = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.anything({
        // Small: at the default size, sparse and typed arrays take seconds to generate.
        size: "small",
        maxKeys: 5,
        maxDepth: 4,
        withBigInt: true,
        withBoxedValues: true,
        withDate: true,
        withMap: true,
        withSet: true,
        withNullPrototype: true,
        withObjectString: true,
        withSparseArray: true,
        withTypedArray: true,
        // Characters, including both halves of a surrogate pair alone: strings with lone
        // surrogates, and strings where two halves happen to pair up.
        stringUnit: fc.constantFrom("a", "Z", "_", " ", "é", "😀", "\ud83d", "\ude00"),
      }),
      async (v) => {
        try {
          await ch.send(v);
        } catch (e) {
          assert.ok(e instanceof TypeError || e instanceof RangeError, String(e));
          assert.match(e.message, /^value\S* /);
          const st = await ch.stat();
          assert.equal(st.len, 0, "a refused value reached the channel");
          assert.equal(st.numSend, sent);
          refusedCount++;
          return;
        }
        sent++;
        assert.deepEqual(norm(await ch.recv()), norm(v));
      },
    ),
    { numRuns: 300 },
  );
  console.log(`# ${sent} values came back deep-equal, ${refusedCount} were refused`);
  assert.ok(sent > 30 && refusedCount > 30, "the property saw too few values of one kind");
});
