import type { MemoryStore, Store } from '../../src/index.js';

/**
 * A store that is not a `MemoryStore` (so a breaker takes its general path) delegating to one,
 * with only the core operations: no `reset`, like a store written before it existed, and no
 * `subscribe` (nor `limitsConcurrency`) unless asked. `later`: every answer comes on a later tick, as a networked store's does.
 */
export function delegatingStore(
  store: MemoryStore,
  {
    later = false,
    subscribe = false,
    limits = false,
  }: { later?: boolean; subscribe?: boolean; limits?: boolean } = {},
): Store {
  // As an async function would: a throw becomes a rejection, the value a resolved promise.
  const answer = <T>(call: () => T): T | Promise<T> => (later ? (async () => call())() : call());
  return {
    acquire: (key, policy) => answer(() => store.acquire(key, policy)),
    record: (key, policy, batch) => answer(() => store.record(key, policy, batch)),
    inspect: (key, policy) => answer(() => store.inspect(key, policy)),
    force: (key, policy, override, options) => answer(() => store.force(key, policy, override, options)),
    list: (prefix, cursor) => answer(() => store.list(prefix, cursor)),
    ...(subscribe ? { subscribe: (listener) => store.subscribe(listener) } : {}),
    ...(limits ? { limitsConcurrency: true } : {}),
  };
}
