// A supervisor that keeps one process alive somewhere in the circuit. When the process exits it is
// started again on the same server; when its server leaves the circuit (it died or was stopped),
// it is started on another one. Departures come from an @leave subscription on the dial-in server,
// and a wait that fails with ServerGone says the same thing a little earlier or later.
import type { Client, Proc, ProcCommand } from "circuit-ts";

export interface WatchbotOptions {
  /** The anchor name of the process under each server: /XID/watchbot/NAME. */
  name: string;
  cmd: ProcCommand;
  /** Progress lines: "started /XID/watchbot/NAME pid N", "exited …", "lost …". */
  log: (line: string) => void;
  /** Stop supervising: the process is scrubbed and watchbot resolves. */
  signal: AbortSignal;
}

type Outcome = { kind: "exited"; how: string } | { kind: "left" } | { kind: "stop" };

export async function watchbot(client: Client, opts: WatchbotOptions): Promise<void> {
  const home = client.serverId;
  const leaves = await client.walk(`/${home}/watchbot/${opts.name}-leaves`).makeOnLeave();
  const left = new Set<string>();
  let wake: (() => void) | undefined;
  const listening = (async () => {
    for await (const path of leaves) {
      left.add(path.slice(1));
      wake?.();
    }
  })().catch(() => {});
  const serverLeft = (id: string) =>
    new Promise<Outcome>((resolve) => {
      const check = () => (left.has(id) ? resolve({ kind: "left" }) : void (wake = check));
      check();
    });
  const stopped = new Promise<Outcome>((resolve) => {
    if (opts.signal.aborted) resolve({ kind: "stop" });
    opts.signal.addEventListener("abort", () => resolve({ kind: "stop" }), { once: true });
  });

  let server: string | undefined;
  let proc: Proc | undefined;
  try {
    for (;;) {
      server = await pick(client, home, server && !left.has(server) ? server : undefined, left);
      const anchor = client.walk(`/${server}/watchbot/${opts.name}`);
      try {
        // A process left over from an earlier run of this bot would hold the anchor.
        await anchor.scrub().catch(() => {});
        proc = await anchor.makeProc(opts.cmd);
      } catch (err) {
        // The server went away between the pick and the start (ServerGone, or NotFound once the
        // circuit has dropped it): try another one.
        const code = (err as { code?: string }).code;
        if (code !== "ServerGone" && code !== "NotFound") throw err;
        opts.log(`lost ${server}: moving`);
        left.add(server);
        continue;
      }
      opts.log(`started ${proc.path} pid ${proc.pid}`);
      const outcome = await Promise.race([
        proc.wait().then(
          (st): Outcome => ({ kind: "exited", how: st.signal ?? `code ${st.exitCode}` }),
          // ServerGone: the server died; @leave will say so too.
          (): Promise<Outcome> => serverLeft(server as string),
        ),
        serverLeft(server),
        stopped,
      ]);
      if (outcome.kind === "stop") break;
      if (outcome.kind === "left") {
        opts.log(`lost ${server}: moving`);
        proc = undefined;
        continue;
      }
      opts.log(`exited ${proc.path} ${outcome.how}: restarting`);
      await proc.scrub().catch(() => {});
      await Promise.race([new Promise((r) => setTimeout(r, 500)), stopped]);
      if (opts.signal.aborted) break;
    }
  } finally {
    await proc?.scrub().catch(() => {});
    await leaves.scrub().catch(() => {});
    await listening;
  }
}

/** The server to run on: `keep` if it is still there, else a random live one other than home if possible. */
async function pick(client: Client, home: string, keep: string | undefined, left: Set<string>): Promise<string> {
  for (;;) {
    const live = (await client.servers()).map((s) => s.id).filter((id) => !left.has(id));
    if (keep && live.includes(keep)) return keep;
    const away = live.filter((id) => id !== home);
    const choice = away.length > 0 ? away : live;
    if (choice.length > 0) return choice[Math.floor(Math.random() * choice.length)] as string;
    await new Promise((r) => setTimeout(r, 500));
  }
}
