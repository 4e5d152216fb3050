import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';

import {
  BreakerFactory,
  CircuitBreaker,
  ExpectedError,
  InvalidOptionError,
  MemoryStore,
  consecutiveFailures,
  custom,
  failureRate,
  failuresInWindow,
  isCallTimeoutError,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions, Store } from '../src/index.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { captureWarnings } from './helpers/warnings.js';
import { delegatingStore } from './helpers/delegating-store.js';

const ok = (): Promise<string> => Promise.resolve('value');
const boom = new Error('boom');
const fail = (): Promise<never> => Promise.reject(boom);

function breaker(options: BreakerOptions = {}): { clock: ManualClock; breaker: CircuitBreaker } {
  const clock = new ManualClock();
  return {
    clock,
    breaker: new CircuitBreaker('dep', {
      clock,
      trip: consecutiveFailures(3),
      openMs: 1_000,
      jitter: 0,
      ...options,
    }),
  };
}

/** A store that answers on a later tick, as a networked one does: the breaker's general path. */
const async = (store: MemoryStore): Store => delegatingStore(store, { later: true });

/** 1,000 concurrent calls, every third failing with `boom`, then a flush. */
async function thousandCalls(b: CircuitBreaker): Promise<PromiseSettledResult<number>[]> {
  const results = await Promise.allSettled(
    Array.from({ length: 1_000 }, (_, i) =>
      b.execute(async () => {
        await new Promise((resolve) => setImmediate(resolve));
        if (i % 3 === 0) throw boom;
        return i;
      }),
    ),
  );
  await b.flush();
  return results;
}

describe('execute', () => {
  it("resolves with fn's value and rethrows fn's own error object", async () => {
    const { breaker: b } = breaker();
    assert.equal(await b.execute(ok), 'value');
    await assert.rejects(b.execute(fail), (e) => e === boom);
  });

  it('rejects with CircuitOpenError without calling fn once open, with retryAfterMs', async () => {
    const { breaker: b, clock } = breaker();
    for (let i = 0; i < 3; i++) await assert.rejects(b.execute(fail));
    let called = false;
    clock.advance(400);
    const error = await b
      .execute(() => {
        called = true;
        return ok();
      })
      .catch((e: unknown) => e);
    assert.equal(called, false);
    assert.ok(isCircuitOpenError(error));
    assert.equal(error.reason, 'open');
    assert.equal(error.breakerName, 'dep');
    assert.equal(error.retryAfterMs, 600);
  });

  it('gives fn an AbortSignal; timeoutMs aborts it and counts a failure', async () => {
    const { breaker: b } = breaker({ trip: consecutiveFailures(1), timeoutMs: 20 });
    let seen: AbortSignal | undefined;
    const error = await b
      .execute((signal) => {
        seen = signal;
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve('late')));
      })
      .catch((e: unknown) => e);
    assert.ok(isCallTimeoutError(error));
    assert.equal(seen?.aborted, true);
    assert.equal((await b.state()).state, 'open');
  });

  for (const [label, store] of [
    ['in process', undefined],
    ['through a store that answers later', async(new MemoryStore())],
  ] as const) {
    it(`a timed call (${label}): value or error as fn gave it, the timeout even when fn ignores the signal, nothing left behind`, async () => {
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const b = new CircuitBreaker('timed', { timeoutMs: 1_000, ...(store === undefined ? {} : { store }) });
      const caller = new AbortController();
      const before = timers();
      let seen: AbortSignal | undefined;
      const value = await b.execute((signal) => {
        seen = signal;
        return Promise.resolve(7);
      });
      assert.equal(value, 7);
      assert.equal(seen?.aborted, false, 'a signal of its own, not aborted');
      await assert.rejects(
        b.execute(() => Promise.reject(boom), { signal: caller.signal }),
        (error) => error === boom,
      );
      await assert.rejects(
        b.execute(() => {
          throw boom;
        }),
        (error) => error === boom,
        'a synchronous throw is rejected as it is',
      );
      assert.equal(timers(), before, 'every call cleared its timer');
      assert.equal(getEventListeners(caller.signal, 'abort').length, 0, "the caller's signal is let go");
      const ignoring = await b
        .execute(() => new Promise(() => undefined), { timeoutMs: 20 })
        .catch((e: unknown) => e);
      assert.ok(isCallTimeoutError(ignoring), 'the timeout rejects whether or not fn heeds the signal');
      assert.equal(timers(), before);
      const { counts } = await b.state();
      assert.equal(counts.failures, 3);
    });
  }

  it("the caller's own abort is not the dependency's failure", async () => {
    const { breaker: b } = breaker({ trip: consecutiveFailures(1) });
    const controller = new AbortController();
    const running = b.execute(
      (signal) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))),
      { signal: controller.signal },
    );
    controller.abort();
    await assert.rejects(running, /aborted/);
    assert.equal((await b.state()).state, 'closed');
    assert.equal((await b.state()).counts.ignored, 1);
    await assert.rejects(b.execute(ok, { signal: controller.signal }), 'an aborted signal never runs fn');
  });

  it('counts a success slower than slowCallMs as a failure', async () => {
    const { breaker: b, clock } = breaker({ trip: consecutiveFailures(1), slowCallMs: 100 });
    assert.equal(
      await b.execute(async () => {
        clock.advance(150);
        return 'slow';
      }),
      'slow',
    );
    const state = await b.state();
    assert.equal(state.state, 'open');
    assert.equal(state.counts.slow, 1);
  });

  it('isFailure decides: true a failure, false a success, ignore neither; a throwing one counts a failure', async () => {
    const errors: unknown[] = [];
    const { breaker: b } = breaker({
      trip: consecutiveFailures(100),
      isFailure: (e) => {
        const message = (e as Error).message;
        if (message === 'throw') throw new Error('classifier bug');
        return message === 'fail' ? true : message === 'ignore' ? 'ignore' : false;
      },
      logger: { warn: () => undefined, error: (fields) => errors.push(fields) },
    });
    for (const message of ['fail', 'ignore', 'answered', 'throw']) {
      await assert.rejects(
        b.execute(() => Promise.reject(new Error(message))),
        new RegExp(message),
      );
    }
    const { counts } = await b.state();
    assert.deepEqual([counts.failures, counts.ignored, counts.successes], [2, 1, 1]);
    assert.equal(errors.length, 1);
  });

  it('ExpectedError is rethrown and counted as neither success nor failure', async () => {
    const { breaker: b } = breaker({ trip: consecutiveFailures(1) });
    const expected = new ExpectedError('not found');
    await assert.rejects(
      b.execute(() => Promise.reject(expected)),
      (e) => e === expected,
    );
    const { state, counts } = await b.state();
    assert.equal(state, 'closed');
    assert.equal(counts.ignored, 1);
  });

  it('fallback supplies the value when rejected, and when fn fails only if asked', async () => {
    const { breaker: b } = breaker({ trip: consecutiveFailures(1) });
    await assert.rejects(b.execute(fail, { fallback: () => 'unused' }));
    assert.equal(
      await b.execute(ok, { fallback: (e) => (isCircuitOpenError(e) ? 'cached' : 'x') }),
      'cached',
    );
    const { breaker: c } = breaker();
    assert.equal(await c.execute(fail, { fallback: () => 'fallback', fallbackOnFailure: true }), 'fallback');
  });
});

describe('1,000 concurrent calls on one breaker', () => {
  for (const [label, options] of [
    ['in-process store', {}],
    ['asynchronous store', { store: async(new MemoryStore()) }],
    ['buffered outcomes (flushIntervalMs)', { flushIntervalMs: 50, store: async(new MemoryStore()) }],
  ] as const) {
    it(`leave exact counts: ${label}`, async () => {
      // A failure rate counts every outcome (count policies skip successes with nothing to reset).
      const trip = failureRate(0.99, { minimumCalls: 100_000, windowMs: 60_000 });
      const b = new CircuitBreaker('busy', { trip, ...options });
      const results = await Promise.allSettled(
        Array.from({ length: 1_000 }, (_, i) =>
          b.execute(async () => {
            await new Promise((resolve) => setImmediate(resolve));
            if (i % 10 === 0) throw new ExpectedError('skip');
            if (i % 3 === 0) throw boom;
            return i;
          }),
        ),
      );
      await b.flush();
      const { counts } = await b.state();
      const failed = results.filter((r) => r.status === 'rejected' && r.reason === boom).length;
      const expected = results.filter((r) => r.status === 'rejected' && r.reason !== boom).length;
      assert.equal(counts.successes, 1_000 - failed - expected);
      assert.equal(counts.failures, failed);
      assert.equal(counts.ignored, expected);
      assert.equal(counts.successes + counts.failures + counts.ignored, 1_000);
    });
  }

  for (const [label, options] of [
    ['per call', {}],
    ['buffered (flushIntervalMs)', { flushIntervalMs: 50 }],
  ] as const) {
    it(`under a count policy, a success is always sent, without its caller waiting for the store: ${label}`, async () => {
      const memory = new MemoryStore();
      let sent = 0;
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const store: Store = {
        ...async(memory),
        record: async (key, policy, batch) => {
          sent += batch.successes;
          await gate;
          return memory.record(key, policy, batch);
        },
      };
      const b = new CircuitBreaker('busy', { trip: consecutiveFailures(100_000), store, ...options });
      // The store holds every write: the calls still settle (a success only resets a run).
      await Promise.all(Array.from({ length: 500 }, () => b.execute(ok)));
      release();
      await b.flush();
      assert.equal(sent, 500, 'every success reaches the store, which decides whether it resets a run');
      const results = await thousandCalls(b);
      const failed = results.filter((r) => r.status === 'rejected').length;
      const { counts } = await b.state();
      assert.equal(counts.failures, failed, 'every failure is counted');
    });
  }
});

describe('acquire and permits', () => {
  it('settle once; later settles do nothing', async () => {
    const { breaker: b } = breaker({ trip: consecutiveFailures(2) });
    const permit = await b.acquire();
    assert.equal(permit.probe, false);
    await permit.failure();
    await permit.failure();
    await permit.success();
    assert.deepEqual([(await b.state()).counts.failures, (await b.state()).counts.successes], [1, 0]);
    const other = await b.acquire();
    await other.ignore();
    assert.equal((await b.state()).counts.ignored, 1);
  });

  it('a probe permit never settled frees its slot after probeLeaseMs', async () => {
    const { breaker: b, clock } = breaker({ trip: consecutiveFailures(1), probeLeaseMs: 5_000 });
    await assert.rejects(b.execute(fail));
    clock.advance(1_000);
    const probe = await b.acquire();
    assert.equal(probe.probe, true);
    await assert.rejects(b.acquire(), (e: unknown) => isCircuitOpenError(e) && e.reason === 'half-open-full');
    clock.advance(5_000);
    const next = await b.acquire();
    await next.success();
    assert.equal((await b.state()).state, 'closed');
    await probe.success(); // too late: changes nothing
    assert.equal((await b.state()).state, 'closed');
  });
});

describe('state, overrides and events', () => {
  it('force() sets and clears overrides; events fire and their disposers work', async () => {
    const { breaker: b } = breaker();
    const changes: string[] = [];
    const rejects: string[] = [];
    const off = b.onStateChange((e) => changes.push(`${e.from}>${e.to}`));
    b.onReject((e) => rejects.push(e.reason));
    await b.force('forced-open');
    await assert.rejects(b.execute(ok), (e: unknown) => isCircuitOpenError(e) && e.reason === 'forced-open');
    await b.force(null);
    off();
    await b.force('metrics-only');
    for (let i = 0; i < 5; i++) await assert.rejects(b.execute(fail), (e) => e === boom);
    assert.equal((await b.state()).state, 'open', 'metrics-only counts and transitions');
    assert.equal(await b.execute(ok), 'value', '...but never rejects');
    assert.deepEqual(changes, ['closed>forced-open', 'forced-open>closed']);
    assert.deepEqual(rejects, ['forced-open']);
    await assert.rejects(b.force('nonsense' as never), TypeError);
  });

  it('onStateChange(name, context, from, to, { local }) fires once per transition, and a throwing listener is contained', async () => {
    const calls: unknown[][] = [];
    const factory = new BreakerFactory<{ tenantId: string }>({
      clock: new ManualClock(),
      trip: consecutiveFailures(1),
      onStateChange: (...args) => calls.push(args),
    });
    const b = factory.breakerFor('billing', { tenantId: 't1' });
    b.onStateChange(() => {
      throw new Error('listener bug');
    });
    const warnings = await captureWarnings(async () => {
      await assert.rejects(b.execute(fail), (e) => e === boom);
      await assert.rejects(b.execute(ok), (e: unknown) => isCircuitOpenError(e));
    });
    assert.deepEqual(calls, [['billing/t1', { tenantId: 't1' }, 'closed', 'open', { local: false }]]);
    assert.match(warnings.join('\n'), /listener bug/);
  });

  it('state() reports counts, generation, openUntil and retryAfterMs', async () => {
    const { breaker: b, clock } = breaker();
    const fresh = await b.state();
    assert.equal(fresh.state, 'closed');
    for (let i = 0; i < 3; i++) await assert.rejects(b.execute(fail));
    clock.advance(250);
    const open = await b.state();
    assert.equal(open.state, 'open');
    assert.equal(open.retryAfterMs, 750);
    assert.equal(open.openUntil - open.now, 750);
    assert.ok(open.generation > fresh.generation);
    assert.equal(open.counts.failures, 3);
  });
});

describe('trip policies through the breaker', () => {
  it('failureRate, failuresInWindow and custom trip as documented', async () => {
    const rate = breaker({ trip: failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 }) }).breaker;
    await rate.execute(ok);
    await rate.execute(ok);
    await assert.rejects(rate.execute(fail));
    assert.equal((await rate.state()).state, 'closed');
    await assert.rejects(rate.execute(fail));
    assert.equal((await rate.state()).state, 'open');

    const window = breaker({ trip: failuresInWindow(2, 10_000) });
    await assert.rejects(window.breaker.execute(fail));
    window.clock.advance(20_000);
    await assert.rejects(window.breaker.execute(fail));
    assert.equal((await window.breaker.state()).state, 'closed');
    await assert.rejects(window.breaker.execute(fail));
    assert.equal((await window.breaker.state()).state, 'open');

    const predicate = breaker({ trip: custom((c) => c.failures >= 2 && c.successes === 0) }).breaker;
    await assert.rejects(predicate.execute(fail));
    await assert.rejects(predicate.execute(fail));
    assert.equal((await predicate.state()).state, 'open');
  });
});

describe('options', () => {
  const invalid: Array<[string, Record<string, unknown>]> = [
    ['store', { store: {} }],
    ['trip', { trip: 5 }],
    ['trip.threshold', { trip: consecutiveFailures(0) }],
    ['trip.threshold', { trip: consecutiveFailures(1.5) }],
    ['trip.windowMs', { trip: failuresInWindow(3, -1) }],
    ['trip.ratio', { trip: failureRate(1.5, { minimumCalls: 1, windowMs: 1_000 }) }],
    ['trip.minimumCalls', { trip: failureRate(0.5, { minimumCalls: 0, windowMs: 1_000 }) }],
    ['trip.kind', { trip: { kind: 'sometimes' } }],
    ['openMs', { openMs: 0 }],
    ['openMs', { openMs: Number.NaN }],
    ['openMs', { openMs: Infinity }],
    ['openMs', { openMs: '30s' }],
    ['backoff', { backoff: 2 }],
    ['backoff.multiplier', { backoff: { multiplier: 0.5 } }],
    ['backoff.maxOpenMs', { openMs: 10_000, backoff: { maxOpenMs: 5_000 } }],
    ['jitter', { jitter: 2 }],
    ['jitter', { jitter: -0.1 }],
    ['halfOpenMaxCalls', { halfOpenMaxCalls: 0 }],
    ['successThreshold', { successThreshold: 1.5 }],
    ['probeLeaseMs', { probeLeaseMs: -5 }],
    ['slowCallMs', { slowCallMs: 0 }],
    ['timeoutMs', { timeoutMs: 'soon' }],
    ['isFailure', { isFailure: true }],
    ['onStateChange', { onStateChange: 'log' }],
    ['logger', { logger: { info: () => undefined } }],
    ['clock', { clock: { now: 5 } }],
    ['maxStalenessMs', { maxStalenessMs: -1 }],
    ['flushIntervalMs', { flushIntervalMs: 1.5 }],
    ['storeTimeoutMs', { storeTimeoutMs: 0 }],
    ['onStoreFailure', { onStoreFailure: 'retry' }],
    ['colour', { colour: 'red' }],
  ];
  for (const [option, options] of invalid) {
    it(`rejects a bad ${option} at construction, naming it and what was given`, () => {
      assert.throws(
        () => new CircuitBreaker('dep', options),
        (error: unknown) => {
          assert.ok(error instanceof InvalidOptionError, String(error));
          assert.equal(error.code, 'INVALID_OPTION');
          assert.ok(error.message.includes(option), error.message);
          return true;
        },
      );
    });
  }

  it('factory options are checked too', () => {
    assert.throws(() => new BreakerFactory({ maxBreakers: 0 }), /maxBreakers/);
    assert.throws(() => new BreakerFactory({ name: 'tenant' as never }), /`name`/);
    assert.throws(() => new BreakerFactory({ byBaseName: { x: { openMs: -1 } } }), /openMs/);
    assert.throws(() => new BreakerFactory({ byBaseName: { x: { store: new MemoryStore() } } }), /store/);
  });

  it('the defaults are safe: one failure does not trip, and an open breaker closes again', async () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker('dep', { clock });
    for (let i = 0; i < 4; i++) await assert.rejects(b.execute(fail));
    assert.equal((await b.state()).state, 'closed');
    await assert.rejects(b.execute(fail));
    assert.equal((await b.state()).state, 'open');
    clock.advance(33_001);
    assert.equal(await b.execute(ok), 'value');
    assert.equal((await b.state()).state, 'closed');
  });
});

describe('names', () => {
  it('any length and any characters work, each its own breaker', async () => {
    const factory = new BreakerFactory({ trip: consecutiveFailures(1) });
    const names = [
      '{t}',
      't}',
      'a:b',
      'with space',
      'ünï 🚦',
      '\u0000',
      'x'.repeat(10_240),
      'x'.repeat(10_239),
    ];
    for (const name of names) await assert.rejects(factory.breakerFor(name).execute(fail));
    for (const name of names) assert.equal((await factory.breakerFor(name).state()).state, 'open');
    assert.equal(await factory.breakerFor('y'.repeat(10_240)).execute(ok), 'value');
    assert.throws(() => factory.breakerFor(''), TypeError, 'an empty name is refused');
  });
});

describe('the factory', () => {
  it('names breakers with `name`, applies byBaseName overrides, and keeps one object per name', async () => {
    const factory = new BreakerFactory<{ tenant: string }>({
      name: (base, context) => `${base}/${context?.tenant}`,
      trip: consecutiveFailures(5),
      byBaseName: { strict: { trip: consecutiveFailures(1) } },
    });
    const a = factory.breakerFor('billing', { tenant: 'a' });
    assert.equal(a.name, 'billing/a');
    assert.equal(a.baseName, 'billing');
    assert.deepEqual(a.context, { tenant: 'a' });
    assert.equal(factory.breakerFor('billing', { tenant: 'a' }), a);
    await assert.rejects(factory.breakerFor('strict', { tenant: 'a' }).execute(fail));
    assert.equal((await factory.breakerFor('strict', { tenant: 'a' }).state()).state, 'open');
    await assert.rejects(a.execute(fail));
    assert.equal((await a.state()).state, 'closed');
  });

  it('keeps a breaker in use while thousands of others come and go (least recently used goes first)', () => {
    const factory = new BreakerFactory<{ tenantId: string }>({ maxBreakers: 100 });
    const hot = factory.breakerFor('api', { tenantId: 'hot' });
    for (let i = 0; i < 10_000; i++) {
      factory.breakerFor('api', { tenantId: `cold-${i}` });
      if (i % 40 === 0) assert.equal(factory.breakerFor('api', { tenantId: 'hot' }), hot, `after ${i}`);
      assert.ok(factory.size <= 100);
    }
    // One not used for a while is dropped (its state stays in the store).
    const old = factory.breakerFor('api', { tenantId: 'cold-9999' });
    for (let i = 0; i < 200; i++) factory.breakerFor('api', { tenantId: `later-${i}` });
    assert.notEqual(factory.breakerFor('api', { tenantId: 'cold-9999' }), old);
  });

  it('bounds its breakers (LRU) but never drops one holding a permit; state stays in the store', async () => {
    const factory = new BreakerFactory({ maxBreakers: 2, trip: consecutiveFailures(1) });
    const held = factory.breakerFor('held');
    const permit = await held.acquire();
    for (let i = 0; i < 5; i++) factory.breakerFor(`other-${i}`);
    assert.equal(factory.breakerFor('held'), held, 'kept while its permit is out');
    await permit.failure();
    for (let i = 5; i < 10; i++) factory.breakerFor(`other-${i}`);
    const again = factory.breakerFor('held');
    assert.notEqual(again, held, 'dropped once idle');
    assert.equal((await again.state()).state, 'open', 'the state was in the store all along');
  });

  it('never drops a breaker with calls in flight on the closed path of a MemoryStore, first or shared', async () => {
    // A breaker's first call takes the general closed path (counted in the view's `inFlight`), the
    // later ones the shared path (counted by the breaker alone): the registry must see both.
    const factory = new BreakerFactory({ maxBreakers: 2 });
    const held = factory.breakerFor('held');
    let others = 0;
    const crowd = (): void => {
      for (let i = 0; i < 5; i++) factory.breakerFor(`other-${others++}`);
    };
    const releases: Array<() => void> = [];
    const pending = (): Promise<void> => new Promise<void>((resolve) => releases.push(resolve));
    const first = held.execute(pending);
    crowd();
    assert.equal(factory.breakerFor('held'), held, 'kept while its first call runs');
    releases.shift()!();
    await first;
    const shared = [held.execute(pending), held.execute(pending)];
    crowd();
    assert.equal(factory.breakerFor('held'), held, 'kept while two calls run on the shared path');
    releases.shift()!();
    await shared[0];
    crowd();
    assert.equal(factory.breakerFor('held'), held, 'kept while one of them still runs');
    releases.shift()!();
    await shared[1];
    crowd();
    assert.notEqual(factory.breakerFor('held'), held, 'dropped once idle');
  });

  it('keeps count of calls in flight when the state moves while a shared-path call runs', async () => {
    // The call settles through the general path (its generation is gone): a call counted by the
    // breaker alone must not be taken off the view's count as well, or a later permit would not
    // keep the breaker.
    const factory = new BreakerFactory({ maxBreakers: 2, trip: consecutiveFailures(1) });
    const held = factory.breakerFor('held');
    await held.execute(ok); // the next call takes the shared path
    let release = (): void => undefined;
    const running = held.execute(() => new Promise<void>((resolve) => (release = resolve)));
    await held.force('forced-closed');
    await held.force(null);
    release();
    await running;
    const permit = await held.acquire();
    for (let i = 0; i < 5; i++) factory.breakerFor(`other-${i}`);
    assert.equal(factory.breakerFor('held'), held, 'kept while its permit is out');
    await permit.success();
    for (let i = 5; i < 10; i++) factory.breakerFor(`other-${i}`);
    assert.notEqual(factory.breakerFor('held'), held, 'dropped once idle');
  });

  it('health() lists the breakers with state, counts and failure rate', async () => {
    const factory = new BreakerFactory({ trip: consecutiveFailures(2) });
    await factory.breakerFor('up').execute(ok);
    for (let i = 0; i < 2; i++) await assert.rejects(factory.breakerFor('down').execute(fail));
    const report = await factory.health();
    assert.equal(report.healthy, false);
    const byName = Object.fromEntries(report.breakers.map((b) => [b.name, b]));
    assert.equal(byName.up?.state, 'closed');
    assert.equal(byName.down?.state, 'open');
    assert.equal(byName.down?.failureRate, 1);
    assert.equal(byName.up?.counts.successes, 1);
  });
});

describe('the local-first path (maxStalenessMs)', () => {
  const never = failureRate(0.99, { minimumCalls: 100_000, windowMs: 60_000 });

  for (const flushIntervalMs of [0, 50]) {
    it(`leaves exact counts for 1,000 concurrent calls admitted by the view (flushIntervalMs ${flushIntervalMs})`, async () => {
      const memory = new MemoryStore();
      const b = new CircuitBreaker('busy', {
        store: async(memory),
        trip: never,
        maxStalenessMs: 60_000,
        flushIntervalMs,
      });
      await b.execute(ok); // learns the view
      const results = await thousandCalls(b);
      const failed = results.filter((r) => r.status === 'rejected').length;
      assert.ok(results.every((r) => r.status === 'fulfilled' || r.reason === boom));
      const { counts } = await b.state();
      assert.deepEqual([counts.successes, counts.failures], [1 + 1_000 - failed, failed]);
    });
  }

  it('fences a call admitted by the view before the generation moved on, while later calls run', async () => {
    const memory = new MemoryStore();
    const b = new CircuitBreaker('fenced', { store: async(memory), trip: never, maxStalenessMs: 60_000 });
    await b.execute(ok);
    let failSlow: (error: Error) => void = () => undefined;
    const slow = b.execute(
      () =>
        new Promise<string>((_resolve, reject) => {
          failSlow = reject;
        }),
    );
    await b.force('forced-closed');
    await b.force(null); // two new generations; the view has the last one
    assert.equal(await b.execute(ok), 'value');
    failSlow(boom);
    await assert.rejects(slow, (e) => e === boom);
    await b.flush();
    const { counts } = await b.state();
    assert.equal(counts.failures, 0, 'the old call counts in no later generation');
    assert.equal(counts.successes, 2);
  });
});
