// Waiting in tests without hanging them: poll a condition until a deadline, or bound a promise.
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Polls `f` every `every` ms until it returns true; fails with `what` once `ms` have passed.
 * Resolves with the time it took, for tests that measure it.
 */
export async function until(
  what: string,
  ms: number,
  f: () => Promise<boolean> | boolean,
  every = 25,
): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await f()) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(every);
  }
}

/**
 * Resolves as `p` does, but fails after `ms` naming `what` (a function is called only then, so it
 * can describe the state at that moment): an operation that ignores its deadline must fail the
 * test, not hang the file.
 */
export async function within<T>(ms: number, p: Promise<T>, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${typeof what === "string" ? what : what()}: still waiting after ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** How `p` stands after `ms`: "pending" if it has not settled by then. */
export async function state(p: Promise<unknown>, ms: number): Promise<"pending" | "resolved" | "rejected"> {
  return Promise.race([
    p.then(
      () => "resolved" as const,
      () => "rejected" as const,
    ),
    sleep(ms).then(() => "pending" as const),
  ]);
}
