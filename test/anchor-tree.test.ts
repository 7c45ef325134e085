// Paths (src/wire/path.ts) and the anchor tree of one server: what a path may be, and that anchors
// exist exactly while they hold an element or have descendants that do.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { AnchorTree } from "../src/element/anchor-tree.ts";
import { formatPath, parsePath } from "../src/wire/path.ts";

const XID = "X0123456789abcdef";

function isAnchorBusy(err: unknown): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === "AnchorBusy";
}

describe("parsePath", () => {
  test('"/" is the root: no names', () => {
    assert.deepEqual(parsePath("/"), []);
  });

  test("splits an absolute path that starts with a server ID", () => {
    assert.deepEqual(parsePath(`/${XID}`), [XID]);
    assert.deepEqual(parsePath(`/${XID}/a/b`), [XID, "a", "b"]);
    assert.deepEqual(parsePath(`/${XID}/jobs/queue.v2/_tmp-1/@join`), [XID, "jobs", "queue.v2", "_tmp-1", "@join"]);
  });

  test("tolerates one trailing slash", () => {
    assert.deepEqual(parsePath(`/${XID}/a/`), [XID, "a"]);
  });

  test("accepts arrays of names and checks them like strings", () => {
    assert.deepEqual(parsePath([]), []);
    assert.deepEqual(parsePath([XID, "a", "b"]), [XID, "a", "b"]);
    assert.throws(() => parsePath([XID, "a b"]), TypeError);
    assert.throws(() => parsePath(["a"]), TypeError);
    assert.throws(() => parsePath([XID, ""]), TypeError);
    assert.throws(() => parsePath([XID, 5 as unknown as string]), TypeError);
  });

  test("returns a copy of an array argument", () => {
    const input = [XID, "a"];
    const out = parsePath(input);
    out.push("b");
    assert.deepEqual(input, [XID, "a"]);
  });

  test("rejects relative paths", () => {
    for (const p of ["", XID, `${XID}/a`, "a/b", "./a", `../${XID}`]) {
      assert.throws(() => parsePath(p), TypeError, JSON.stringify(p));
    }
  });

  test("rejects bad names", () => {
    const bad = [
      `/${XID}//a`, // empty segment
      `/${XID}/a//b`,
      `/${XID}/a//`,
      `/${XID}/a b`, // space
      `/${XID}/ a`,
      `/${XID}/${"a".repeat(129)}`, // 129 characters
      `/${XID}/..`,
      `/${XID}/.`,
      `/${XID}/...`,
      `/${XID}/a/../b`,
      `/${XID}/a*`,
      `/${XID}/ä`,
      `/${XID}/a\\b`,
      `/${XID}/a:b`,
    ];
    for (const p of bad) assert.throws(() => parsePath(p), TypeError, JSON.stringify(p));
  });

  test("accepts names of 1 and 128 characters and names with dots that are not only dots", () => {
    assert.deepEqual(parsePath(`/${XID}/a`), [XID, "a"]);
    assert.deepEqual(parsePath(`/${XID}/${"z".repeat(128)}`), [XID, "z".repeat(128)]);
    assert.deepEqual(parsePath(`/${XID}/.a/a./..a`), [XID, ".a", "a.", "..a"]);
  });

  test("rejects a first name that is not a server ID", () => {
    const notIds = [
      "a",
      "X0123456789ABCDEF", // upper-case hex
      "x0123456789abcdef", // lower-case x
      "X0123456789abcde", // 15 digits
      "X0123456789abcdef0", // 17 digits
      "X0123456789abcdeg", // not hex
      "0123456789abcdef",
    ];
    for (const id of notIds) {
      assert.throws(() => parsePath(`/${id}`), TypeError, id);
      assert.throws(() => parsePath(`/${id}/a`), TypeError, id);
      assert.throws(() => parsePath([id]), TypeError, id);
    }
  });

  test("only the first name must be a server ID", () => {
    assert.deepEqual(parsePath(`/${XID}/${XID}`), [XID, XID]);
  });

  test("rejects paths deeper than 64 names", () => {
    const names = [XID, ...Array.from({ length: 63 }, (_, i) => `n${i}`)];
    assert.equal(parsePath(names).length, 64);
    assert.throws(() => parsePath([...names, "deep"]), TypeError);
  });

  test("rejects what is neither a string nor an array", () => {
    assert.throws(() => parsePath(5 as unknown as string), TypeError);
    assert.throws(() => parsePath(null as unknown as string), TypeError);
  });

  test("formatPath inverts parsePath for valid paths", () => {
    const name = fc.stringMatching(/^[A-Za-z0-9._@-]{1,20}$/).filter((s) => !/^\.+$/.test(s));
    fc.assert(
      fc.property(fc.array(name, { maxLength: 6 }), (rest) => {
        const path = formatPath([XID, ...rest]);
        assert.deepEqual(parsePath(path), [XID, ...rest]);
      }),
      { numRuns: 200 },
    );
  });
});

describe("AnchorTree", () => {
  const A = [XID, "a"];
  const AB = [XID, "a", "b"];
  const ABC = [XID, "a", "b", "c"];

  test("set places an element that get and has see", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "e1");
    assert.equal(t.get(ABC), "e1");
    assert.equal(t.has(ABC), true);
    assert.equal(t.size, 1);
    // Ancestors exist (they have a descendant) but hold nothing.
    assert.equal(t.has(AB), true);
    assert.equal(t.get(AB), undefined);
    assert.equal(t.has([]), true);
  });

  test("children lists child names in sorted order", () => {
    const t = new AnchorTree<string>();
    for (const n of ["zeta", "Alpha", "beta", "_x", "10", "9", "@join"]) t.set([XID, n], n);
    t.set([XID, "beta", "deep"], "d");
    assert.deepEqual(t.children([XID]), ["10", "9", "@join", "Alpha", "_x", "beta", "zeta"]);
    assert.deepEqual(t.children([]), [XID]);
    assert.deepEqual(t.children([XID, "beta"]), ["deep"]);
    assert.deepEqual(t.children([XID, "zeta"]), []);
    assert.deepEqual(t.children([XID, "missing"]), []);
  });

  test("a second set at the same anchor fails with AnchorBusy and keeps the first element", () => {
    const t = new AnchorTree<string>();
    t.set(AB, "first");
    assert.throws(() => t.set(AB, "second"), isAnchorBusy);
    assert.equal(t.get(AB), "first");
    assert.equal(t.size, 1);
  });

  test("an anchor may hold an element and have descendants", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "below");
    t.set(AB, "here");
    assert.equal(t.get(AB), "here");
    assert.equal(t.get(ABC), "below");
    assert.equal(t.size, 2);
  });

  test("removing the only element prunes every empty ancestor", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "e");
    assert.equal(t.remove(ABC), true);
    assert.equal(t.has(ABC), false);
    assert.equal(t.has(AB), false);
    assert.equal(t.has(A), false);
    assert.equal(t.has([XID]), false);
    assert.deepEqual(t.children([]), []);
    assert.equal(t.size, 0);
  });

  test("removal keeps ancestors that still have other descendants", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "c");
    t.set([XID, "a", "x"], "x");
    t.remove(ABC);
    assert.equal(t.has(AB), false);
    assert.equal(t.has(A), true);
    assert.deepEqual(t.children(A), ["x"]);
  });

  test("removal keeps ancestors that hold their own element", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "c");
    t.set(A, "a");
    t.remove(ABC);
    assert.equal(t.has(AB), false);
    assert.equal(t.has(A), true);
    assert.equal(t.get(A), "a");
    assert.deepEqual(t.children(A), []);
  });

  test("removing an element keeps its descendants", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "c");
    t.set(AB, "b");
    assert.equal(t.remove(AB), true);
    assert.equal(t.has(AB), true);
    assert.equal(t.get(AB), undefined);
    assert.equal(t.get(ABC), "c");
  });

  test("remove with an element removes only that element", () => {
    const t = new AnchorTree<string>();
    t.set(AB, "mine");
    assert.equal(t.remove(AB, "other"), false);
    assert.equal(t.get(AB), "mine");
    assert.equal(t.remove(AB, "mine"), true);
    assert.equal(t.has(AB), false);
  });

  test("remove of a missing or empty anchor returns false and changes nothing", () => {
    const t = new AnchorTree<string>();
    t.set(ABC, "c");
    assert.equal(t.remove([XID, "nope", "deeper"]), false);
    assert.equal(t.remove(AB), false);
    assert.equal(t.has(AB), true);
    assert.equal(t.size, 1);
    assert.deepEqual(t.children(A), ["b"]);
  });

  test("the anchor can be used again after removal", () => {
    const t = new AnchorTree<string>();
    t.set(AB, "one");
    t.remove(AB);
    t.set(AB, "two");
    assert.equal(t.get(AB), "two");
  });

  test("reading never creates nodes", () => {
    const t = new AnchorTree<string>();
    t.set(A, "a");
    const ghost = [XID, "ghost", "deeper"];
    assert.equal(t.get(ghost), undefined);
    assert.equal(t.has(ghost), false);
    assert.deepEqual(t.children(ghost), []);
    assert.deepEqual([...t.walk(ghost)], []);
    assert.equal(t.remove(ghost), false);
    assert.equal(t.has([XID, "ghost"]), false);
    assert.deepEqual(t.children([XID]), ["a"]);
    assert.equal(t.size, 1);
  });

  test("walk lists elements at and below an anchor depth first, children in sorted order", () => {
    const t = new AnchorTree<string>();
    t.set([XID, "b"], "b");
    t.set([XID, "a", "y"], "ay");
    t.set([XID, "a"], "a");
    t.set([XID, "a", "x", "1"], "ax1");
    t.set([XID, "c", "z"], "cz");
    assert.deepEqual(
      [...t.walk([XID])],
      [
        [[XID, "a"], "a"],
        [[XID, "a", "x", "1"], "ax1"],
        [[XID, "a", "y"], "ay"],
        [[XID, "b"], "b"],
        [[XID, "c", "z"], "cz"],
      ],
    );
    assert.deepEqual(
      [...t.walk([XID, "a"])],
      [
        [[XID, "a"], "a"],
        [[XID, "a", "x", "1"], "ax1"],
        [[XID, "a", "y"], "ay"],
      ],
    );
    assert.deepEqual([...t.walk([XID, "b"])], [[[XID, "b"], "b"]]);
  });

  test("matches a map of paths under random set and remove", () => {
    const seg = fc.constantFrom("a", "b", "c");
    const path = fc.array(seg, { minLength: 1, maxLength: 3 }).map((p) => [XID, ...p]);
    const op = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), path, el: fc.nat(1000) }),
      fc.record({ kind: fc.constant("remove" as const), path }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const t = new AnchorTree<number>();
        const model = new Map<string, number>();
        for (const o of ops) {
          const key = o.path.join("/");
          if (o.kind === "set") {
            if (model.has(key)) assert.throws(() => t.set(o.path, o.el), isAnchorBusy);
            else {
              t.set(o.path, o.el);
              model.set(key, o.el);
            }
          } else {
            assert.equal(t.remove(o.path), model.delete(key));
          }
          assert.equal(t.size, model.size);
          // Every prefix exists exactly when some element is at or below it.
          for (const p of [[XID], [XID, "a"], [XID, "b"], [XID, "a", "b"], [XID, "c", "c"], [XID, "a", "a", "a"]]) {
            const k = p.join("/");
            const exists = [...model.keys()].some((m) => m === k || m.startsWith(`${k}/`));
            assert.equal(t.has(p), exists, k);
          }
          const walked = [...t.walk([])].map(([p, e]) => [p.join("/"), e] as const);
          assert.deepEqual(new Map(walked), model);
        }
      }),
      { numRuns: 200 },
    );
  });
});
