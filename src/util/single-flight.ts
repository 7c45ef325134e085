// One attempt per key at a time: callers that ask while an attempt runs share its promise.

/** Runs `start` for `key` unless an attempt for it is already under way; that one's promise otherwise. */
export function singleFlight<K, V>(inflight: Map<K, Promise<V>>, key: K, start: () => Promise<V>): Promise<V> {
  let p = inflight.get(key);
  if (!p) {
    p = start().finally(() => inflight.delete(key));
    inflight.set(key, p);
  }
  return p;
}
