import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import { resetBreaker, resetKept } from '../../src/cli/commands.js';
import type { StoreConnection } from '../../src/cli/store-connection.js';
import { MemoryStore } from '../../src/index.js';
import type { Store } from '../../src/store.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { count, trip } from '../helpers/cli.js';
import { delegatingStore } from '../helpers/delegating-store.js';

function connection(store: Store): StoreConnection {
  return {
    store,
    description: 'memory',
    where: { store: 'memory', prefix: null },
    callTimeoutMs: 5_000,
    close: () => Promise.resolve(),
  };
}

/** A store written before `Store.reset` existed. */
const withoutReset = (store: MemoryStore): Store => delegatingStore(store);

describe('resetBreaker (the CLI and dashboard reset)', () => {
  it('uses Store.reset: closed, counts forgotten, the override kept', async () => {
    const store = new MemoryStore({ clock: new ManualClock() });
    await trip(store, 'open/tenant');
    store.force('open/tenant', DEFAULT_POLICY, 'metrics-only');
    const result = await resetBreaker(connection(store), 'open/tenant');
    assert.equal(result.before?.state, 'open');
    assert.equal(result.after.state, 'closed');
    assert.equal(result.after.override, 'metrics-only');
    assert.equal(result.after.counts.total, 0);
    assert.ok(result.after.generation > (result.before?.generation ?? Infinity));
    assert.equal(resetKept(result), false);
  });

  it('falls back to changing the override and setting it back for a store without reset, and says what stayed', async () => {
    const memory = new MemoryStore({ clock: new ManualClock() });
    await count(memory, 'counted/tenant', 3, 2);
    const result = await resetBreaker(connection(withoutReset(memory)), 'counted/tenant');
    assert.equal(result.after.override, null, 'the override is set back');
    assert.equal(result.after.generation, (result.before?.generation ?? NaN) + 2);
    assert.equal(result.after.counts.failures, 2, 'a store without reset cannot forget counts');
    assert.equal(resetKept(result), true);
  });

  it('a breaker the store holds nothing for is not found, and gets no record', async () => {
    const store = new MemoryStore({ clock: new ManualClock() });
    await assert.rejects(resetBreaker(connection(store), 'nobody'), /no breaker named "nobody"/);
    assert.equal(store.size, 0);
  });
});
