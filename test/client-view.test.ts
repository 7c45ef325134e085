// The client's member view (issue #11): a membership push read in the same chunk as the answer to
// the client's watch request, before the dial finishes, must not be undone by the watch list.
// Driven with a stand-in for the dial-in connection, so the ordering is exact every run.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "../src/client/client.ts";
import type { Connection } from "../src/client/connection.ts";

function fakeHome(pushAfterAnswer: Record<string, unknown>[]): Connection {
  const home = {
    serverId: "Xaaaaaaaaaaaaaaaa",
    url: "circuit://127.0.0.1:1/Xaaaaaaaaaaaaaaaa",
    isClosed: false,
    closed: new Promise(() => {}),
    onPush: (_m: Record<string, unknown>) => {},
    async close() {},
    request(req: { op: string }) {
      assert.equal(req.op, "watch");
      return new Promise((resolve) => {
        resolve([{ id: home.serverId, url: home.url, path: `/${home.serverId}`, joinedAt: new Date(0).toISOString() }]);
        // Same turn as the answer: the pushes are handled before the awaiting code resumes.
        for (const m of pushAfterAnswer) home.onPush(m);
      });
    },
  };
  return home as unknown as Connection;
}

test("a member that joins while the client dials stays in its view", async () => {
  const joined = "Xbbbbbbbbbbbbbbbb";
  const client = new Client(
    fakeHome([{ ev: "join", id: joined, url: `circuit://127.0.0.1:1/${joined}`, joinedAt: new Date().toISOString() }]),
    {},
    undefined,
  );
  await client.init();
  // Known: the client tries to reach it (nothing listens on port 1); unknown would be NotFound.
  const err = await client.connFor(joined).then(
    () => undefined,
    (e: unknown) => e as { code?: string },
  );
  assert.ok(err, "nothing listens there");
  assert.notEqual(err.code, "NotFound", "the joined member is in the view");
  await client.close();
});

test("a member that leaves while the client dials is gone from its view", async () => {
  const left = "Xcccccccccccccccc";
  const client = new Client(
    fakeHome([
      { ev: "join", id: left, url: `circuit://127.0.0.1:1/${left}`, joinedAt: new Date().toISOString() },
      { ev: "leave", id: left, url: `circuit://127.0.0.1:1/${left}`, joinedAt: new Date().toISOString() },
    ]),
    {},
    undefined,
  );
  await client.init();
  await assert.rejects(client.connFor(left), { code: "NotFound" });
  await client.close();
});
