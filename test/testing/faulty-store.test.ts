import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MemoryStore } from '../../src/index.js';
import { FaultyStore, InjectedStoreFault, policyOf } from '../../src/testing/index.js';

const policy = policyOf();

describe('FaultyStore', () => {
  it('answers as the wrapped store when up, asynchronously, and counts calls', async () => {
    const store = new FaultyStore(new MemoryStore());
    const pending = store.acquire('k', policy);
    assert.ok(pending instanceof Promise);
    assert.equal((await pending).admitted, true);
    assert.equal(await store.inspect('never', policy), null);
    assert.deepEqual(store.calls, { acquire: 1, record: 0, inspect: 1, force: 0, reset: 0, list: 0 });
    assert.equal(store.totalCalls, 2);
  });

  it('passes reset through, with its faults, only when the wrapped store has one', async () => {
    const store = new FaultyStore(new MemoryStore());
    const { generation } = await store.acquire('k', policy);
    const reset = await store.reset!('k', policy);
    assert.ok(reset.snapshot.generation > generation);
    assert.equal(store.calls.reset, 1);
    store.mode = 'error';
    await assert.rejects(store.reset!('k', policy), InjectedStoreFault);
    const inner = new MemoryStore();
    const without = new FaultyStore({
      acquire: (key, p) => inner.acquire(key, p),
      record: (key, p, batch) => inner.record(key, p, batch),
      inspect: (key, p) => inner.inspect(key, p),
      force: (key, p, override) => inner.force(key, p, override),
      list: (prefix, cursor) => inner.list(prefix, cursor),
    });
    assert.equal(without.reset, undefined, 'the operator tools then take their fallback');
  });

  it('fails, fails the next n, answers garbage, and hangs until released', async () => {
    const store = new FaultyStore(new MemoryStore());
    store.mode = 'error';
    await assert.rejects(store.acquire('k', policy), InjectedStoreFault);
    store.mode = 'garbage';
    assert.equal(await store.acquire('k', policy), 'OK');
    store.mode = 'up';
    store.failNext(2);
    await assert.rejects(store.acquire('k', policy), InjectedStoreFault);
    await assert.rejects(store.acquire('k', policy), InjectedStoreFault);
    assert.equal((await store.acquire('k', policy)).admitted, true);
    store.mode = 'hang';
    let settled = false;
    const hung = Promise.resolve(store.acquire('k', policy)).finally(() => (settled = true));
    const failing = store.acquire('k', policy);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(settled, false);
    assert.equal(store.pending, 2);
    store.release();
    assert.equal((await hung).admitted, true);
    assert.equal((await failing).admitted, true);
    const rejected = store.acquire('k', policy);
    await new Promise((resolve) => setTimeout(resolve, 5));
    store.release(true);
    await assert.rejects(rejected, InjectedStoreFault);
  });

  it('fails at a rate drawn from the random it is given, and waits latencyMs', async () => {
    let i = 0;
    const draws = [0.1, 0.9, 0.2, 0.8];
    const store = new FaultyStore(new MemoryStore(), {
      errorRate: 0.5,
      random: () => draws[i++ % 4]!,
      latencyMs: 15,
    });
    const results = [];
    const start = performance.now();
    for (let n = 0; n < 4; n++) {
      results.push(
        await Promise.resolve(store.acquire('k', policy)).then(
          () => 'ok',
          () => 'fault',
        ),
      );
    }
    assert.deepEqual(results, ['fault', 'ok', 'fault', 'ok']);
    assert.ok(performance.now() - start >= 4 * 14);
  });
});
