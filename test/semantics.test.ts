import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BreakerFactory,
  CircuitBreaker,
  MemoryStore,
  consecutiveFailures,
  custom,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions } from '../src/index.js';
import { FaultyStore } from '../src/testing/faulty-store.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { captureWarnings } from './helpers/warnings.js';

// Issue 11's breaker-side items, each as it was reproduced: overrides across processes and during
// an outage, clocks that read 0, programming errors, per-call options, hints, what users see.

const ok = (): Promise<string> => Promise.resolve('value');
const boom = new Error('dependency down');
const fail = (): Promise<string> => Promise.reject(boom);
const settle = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'value',
    (e: unknown) =>
      isCircuitOpenError(e) ? `rejected:${e.reason}` : e === boom ? 'boom' : `other:${String(e)}`,
  );

function factoryOn(store: MemoryStore | FaultyStore, clock: ManualClock, options: BreakerOptions = {}) {
  return new BreakerFactory({
    store,
    clock,
    trip: consecutiveFailures(2),
    openMs: 10_000,
    jitter: 0,
    ...options,
  });
}

describe('overrides', () => {
  it('metrics-only never rejects in another process that hears the open pushed', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const tripping = factoryOn(store, clock).breakerFor('dep');
    const listening = factoryOn(store, clock).breakerFor('dep'); // another factory: another "process"
    await tripping.force('metrics-only');
    assert.equal(await settle(listening.execute(ok)), 'value'); // it has seen the override
    for (let i = 0; i < 2; i++) await settle(tripping.execute(fail));
    assert.equal((await tripping.state()).state, 'open');
    assert.equal(await settle(listening.execute(ok)), 'value', 'the pushed open must not reject');
    assert.equal(await settle(tripping.execute(ok)), 'value');
  });

  it('metrics-only never rejects during a store failure either', async () => {
    const clock = new ManualClock();
    const store = new FaultyStore(new MemoryStore({ clock }));
    const breaker = factoryOn(store, clock, { storeTimeoutMs: 20 }).breakerFor('dep');
    await breaker.force('metrics-only');
    for (let i = 0; i < 2; i++) await settle(breaker.execute(fail));
    assert.equal((await breaker.state()).state, 'open');
    store.mode = 'error';
    const results = await Promise.all(Array.from({ length: 5 }, () => settle(breaker.execute(ok))));
    assert.deepEqual(results, ['value', 'value', 'value', 'value', 'value']);
  });
});

describe('time', () => {
  it('a clock that reads 0 at a call’s start still times it: slowCallMs and events work', async () => {
    const clock = new ManualClock(0);
    const factory = new BreakerFactory({ clock, store: new MemoryStore({ clock }), slowCallMs: 100 });
    const breaker = factory.breakerFor('dep');
    const failures: number[] = [];
    breaker.onFailure((e) => failures.push(e.durationMs));
    await breaker.execute(async () => {
      clock.advance(150);
      return 1;
    });
    assert.deepEqual(failures, [150]);
    assert.equal((await breaker.state()).counts.slow, 1);
  });

  it('a clock given beside a MemoryStore made without one is an error, not a silent mismatch', () => {
    const clock = new ManualClock();
    assert.throws(
      () => new BreakerFactory({ clock, store: new MemoryStore() }),
      (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION' && /MemoryStore/.test(String(e)),
    );
    assert.doesNotThrow(() => new BreakerFactory({ clock, store: new MemoryStore({ clock }) }));
    assert.doesNotThrow(() => new BreakerFactory({ clock }));
  });
});

describe('programming errors count nothing', () => {
  it('execute(non-function) rejects with InvalidOptionError and never opens the breaker', async () => {
    const breaker = new CircuitBreaker('dep', { trip: consecutiveFailures(1) });
    for (const fn of [undefined, null, 'fn', 42]) {
      await assert.rejects(
        breaker.execute(fn as never),
        (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION' && /`fn`/.test(String(e)),
      );
    }
    const state = await breaker.state();
    assert.equal(state.state, 'closed');
    assert.equal(state.counts.failures, 0);
  });

  const bad: [string, object, RegExp][] = [
    ['timeoutMs: Infinity', { timeoutMs: Infinity }, /timeoutMs/],
    ['timeoutMs above the timer limit', { timeoutMs: 2 ** 31 }, /timeoutMs/],
    ['timeoutMs: NaN', { timeoutMs: NaN }, /timeoutMs/],
    ['timeoutMs: -1', { timeoutMs: -1 }, /timeoutMs/],
    ["timeoutMs: '10'", { timeoutMs: '10' }, /timeoutMs/],
    ["fallback: 'x'", { fallback: 'x' }, /fallback/],
    ['signal: {}', { signal: {} }, /signal/],
    ['fallbackOnFailure: 1', { fallbackOnFailure: 1 }, /fallbackOnFailure/],
  ];
  for (const [label, options, names] of bad) {
    it(`execute(fn, { ${label} }) is rejected before fn runs, counting nothing`, async () => {
      const breaker = new CircuitBreaker('dep', { trip: consecutiveFailures(1) });
      let ran = false;
      await assert.rejects(
        breaker.execute(() => {
          ran = true;
          return ok();
        }, options),
        (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION' && names.test(String(e)),
      );
      assert.equal(ran, false);
      assert.equal((await breaker.state()).counts.total, 0);
    });
  }

  it('timeoutMs: 0 for one call means no timeout for it', async () => {
    const breaker = new CircuitBreaker('dep', { timeoutMs: 5 });
    const value = await breaker.execute(() => new Promise<string>((r) => setTimeout(() => r('late'), 20)), {
      timeoutMs: 0,
    });
    assert.equal(value, 'late');
  });
});

describe('what users see', () => {
  it("half-open-full says when to come back from the probes' time, not the probe lease", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const factory = factoryOn(store, clock, { trip: consecutiveFailures(1), openMs: 1_000 });
    const breaker = factory.breakerFor('dep');
    await settle(breaker.execute(fail));
    clock.advance(1_001);
    let release: () => void = () => undefined;
    const probe = breaker.execute(() => new Promise<string>((r) => (release = () => r('probed'))));
    const rejected = await breaker.execute(ok).catch((e: unknown) => e);
    assert.ok(isCircuitOpenError(rejected) && rejected.reason === 'half-open-full');
    assert.ok(rejected.retryAfterMs <= 1_000, `${rejected.retryAfterMs} ms (the lease: 30,000 ms)`);
    release();
    await probe;
  });

  it("state() and health() say open while 'reject' rejects every call for an unreachable store", async () => {
    const clock = new ManualClock();
    const store = new FaultyStore(new MemoryStore({ clock }));
    const factory = factoryOn(store, clock, { onStoreFailure: 'reject', storeTimeoutMs: 20 });
    const breaker = factory.breakerFor('dep');
    await breaker.execute(ok);
    store.mode = 'error';
    assert.equal(await settle(breaker.execute(ok)), 'rejected:store-unavailable');
    const state = await breaker.state();
    assert.equal(state.circuitState, 'open');
    assert.ok(state.retryAfterMs > 0);
    assert.equal((await factory.health()).healthy, false);
  });

  it('a throwing isFailure or trip predicate warns once per breaker without a logger', async () => {
    const breaker = new CircuitBreaker('dep', {
      trip: custom(() => {
        throw new Error('predicate bug');
      }),
      isFailure: () => {
        throw new Error('classifier bug');
      },
    });
    const warnings = await captureWarnings(async () => {
      for (let i = 0; i < 5; i++) await settle(breaker.execute(fail));
    });
    assert.equal(warnings.filter((w) => w.includes('isFailure threw')).length, 1, warnings.join('\n'));
    assert.equal(warnings.filter((w) => w.includes('predicate threw')).length, 1, warnings.join('\n'));
  });

  it('listeners added to a breaker survive the LRU: a breaker with listeners is kept', async () => {
    const factory = new BreakerFactory({ maxBreakers: 2, trip: consecutiveFailures(1) });
    const watched = factory.breakerFor('watched');
    const seen: string[] = [];
    const dispose = watched.onStateChange((e) => seen.push(`${e.from}>${e.to}`));
    for (let i = 0; i < 10; i++) factory.breakerFor(`tenant-${i}`);
    assert.equal(factory.breakerFor('watched'), watched, 'not evicted while listened to');
    await settle(factory.breakerFor('watched').execute(fail));
    assert.deepEqual(seen, ['closed>open']);
    dispose();
    for (let i = 0; i < 10; i++) factory.breakerFor(`other-${i}`);
    assert.notEqual(factory.breakerFor('watched'), watched, 'evictable once its listeners are gone');
  });
});
