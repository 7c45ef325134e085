// Entry point of every role process: `role.ts SCENARIO ROLE ARGS_JSON DEADLINE_MS`, forked by
// Procs.role with an IPC channel. It runs one role of one scenario and then waits to be killed,
// so the orchestrator decides when sockets close.
import type { Message, RoleContext, Scenario } from "./harness.ts";
import { scenarioModules } from "./scenarios.ts";

const [scenarioName = "", roleName = "", argsJson = "{}", deadline = "60000"] = process.argv.slice(2);

// A role must never outlive its orchestrator: the IPC channel closes when the parent dies, and
// the deadline covers a parent that lives on but forgot us.
process.on("disconnect", () => process.exit(3));
setTimeout(() => process.exit(4), Number(deadline)).unref();
// Stopped with SIGTERM: exit (rather than die by the signal) so that --cpu-prof writes its profile.
process.on("SIGTERM", () => process.exit(0));

const queue: Message[] = [];
const waiters: { type: string; resolve: (m: Message) => void }[] = [];
process.on("message", (m: Message) => {
  const i = waiters.findIndex((w) => w.type === m.type);
  if (i >= 0) waiters.splice(i, 1)[0]?.resolve(m);
  else queue.push(m);
});

const ctx: RoleContext = {
  report(type, data = {}) {
    process.send?.({ ...data, type });
  },
  next(type) {
    const i = queue.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0] as Message);
    return new Promise((resolve) => waiters.push({ type, resolve }));
  },
};

try {
  const load = Object.hasOwn(scenarioModules, scenarioName) ? scenarioModules[scenarioName] : undefined;
  if (!load) throw new Error(`unknown scenario ${scenarioName}`);
  const scenario: Scenario = await load();
  const role = scenario.roles[roleName];
  if (!role) throw new Error(`scenario ${scenarioName} has no role ${roleName}`);
  await role(JSON.parse(argsJson) as Record<string, unknown>, ctx);
} catch (e) {
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  process.send?.({ type: "error", message }, () => process.exit(1));
}
