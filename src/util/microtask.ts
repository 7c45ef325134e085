// A microtask without Node's queueMicrotask, which wraps every callback in an AsyncResource and a
// bound function: about 9–13 µs a call while a fresh process still runs that code interpreted,
// against about 2 µs for a promise reaction (0.4 and 0.2 µs once compiled). For callbacks that run
// once a read or a write (README, "A function a value").

const settled = Promise.resolve();

/** Runs `fn` once the microtasks queued before it have run. `fn` must not throw. */
export function afterMicrotasks(fn: () => void): void {
  void settled.then(fn);
}
