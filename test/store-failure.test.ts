import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  isCircuitOpenError,
  isStoreError,
} from '../src/index.js';
import type { BreakerOptions, Logger } from '../src/index.js';
import { FaultyStore } from '../src/testing/faulty-store.js';
import { ManualClock } from '../src/testing/manual-clock.js';

// What a breaker does when its store fails (DESIGN.md "When the store fails"): the caller's work
// never fails because of the store, an outage costs one timeout and not one per call, and the
// outcomes counted meanwhile reach the store once when it is back. The store here is a
// MemoryStore behind a FaultyStore: asynchronous, as a networked store is, and switched to
// failing, hanging or answering nonsense. Real-server outages are in test/redis and test/dynamodb.

function setup(options: BreakerOptions = {}) {
  const clock = new ManualClock();
  const store = new FaultyStore(new MemoryStore({ clock }));
  const warnings: unknown[] = [];
  const logger: Logger = {
    warn: (fields) => warnings.push(fields),
    error: (fields) => warnings.push(fields),
  };
  const factory = new BreakerFactory({
    store,
    clock,
    logger,
    storeTimeoutMs: 20,
    trip: consecutiveFailures(3),
    openMs: 10_000,
    jitter: 0,
    ...options,
  });
  const breaker = factory.breakerFor('dep');
  const storeErrors: string[] = [];
  breaker.onStoreError((e) => storeErrors.push(e.operation));
  return { clock, store, breaker, warnings, storeErrors };
}

const ok = (): Promise<string> => Promise.resolve('value');
const boom = new Error('dependency down');
const fail = (): Promise<string> => Promise.reject(boom);
const outcome = (p: Promise<string>): Promise<string> =>
  p.then(
    (v) => v,
    (e: unknown) =>
      isCircuitOpenError(e) ? `rejected:${e.reason}` : e === boom ? 'boom' : `other:${String(e)}`,
  );

/** Never trips, and counts every outcome (a count policy writes no success with nothing to reset). */
const COUNT_ALL = failureRate(1, { minimumCalls: 1_000_000, windowMs: 60_000 });

describe('when the store fails', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => {
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no store failure may surface as an unhandled rejection');
  });

  for (const mode of ['error', 'hang', 'garbage'] as const) {
    it(`(${mode}) every call still ends with fn's own value or error`, async () => {
      const { store, breaker, storeErrors } = setup();
      store.mode = mode;
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => outcome(breaker.execute(i % 10 === 9 ? fail : ok))),
      );
      assert.deepEqual(results.filter((r) => r === 'value').length, 45);
      assert.deepEqual(results.filter((r) => r === 'boom').length, 5);
      assert.ok(storeErrors.length > 0);
      store.release();
    });
  }

  it('costs one timeout, not one per call: later calls do not wait for the store', async () => {
    const { store, breaker } = setup();
    await breaker.execute(ok);
    store.mode = 'hang';
    const before = store.totalCalls;
    for (let i = 0; i < 100; i++) assert.equal(await breaker.execute(ok), 'value');
    // The first call waited for its timeout; the store is then left alone until the clock moves.
    assert.equal(store.totalCalls - before, 1);
    store.release();
  });

  it('logs the outage rate-limited, not once per call', async () => {
    const { store, breaker, warnings } = setup();
    store.mode = 'error';
    for (let i = 0; i < 50; i++) await breaker.execute(ok);
    assert.equal(warnings.length, 1);
  });

  it("'local' still cuts off a dependency that starts failing during the outage", async () => {
    const { store, breaker } = setup();
    await breaker.execute(ok);
    store.mode = 'error';
    const results: string[] = [];
    for (let i = 0; i < 6; i++) results.push(await outcome(breaker.execute(fail)));
    assert.deepEqual(results, ['boom', 'boom', 'boom', 'rejected:open', 'rejected:open', 'rejected:open']);
  });

  it("'local' starts from the last state seen: an open breaker stays open until its end", async () => {
    const { clock, store, breaker } = setup();
    for (let i = 0; i < 3; i++) await outcome(breaker.execute(fail));
    assert.equal((await breaker.state()).state, 'open');
    store.mode = 'error';
    clock.advance(5_000);
    let calls = 0;
    const counted = (): Promise<string> => {
      calls += 1;
      return ok();
    };
    assert.equal(await outcome(breaker.execute(counted)), 'rejected:open');
    assert.equal(calls, 0);
    clock.advance(5_001);
    // The probe claim that finds the store down is refused (the store may have granted it to
    // someone else); from then on the local breaker runs its own half-open.
    assert.equal(await outcome(breaker.execute(counted)), 'rejected:open');
    assert.equal(await outcome(breaker.execute(counted)), 'value', 'a local probe after the open period');
    assert.equal(calls, 1);
  });

  it('a probe claim that timed out never admits a probe', async () => {
    const { clock, store, breaker } = setup({ onStoreFailure: 'local' });
    for (let i = 0; i < 3; i++) await outcome(breaker.execute(fail));
    clock.advance(10_000);
    store.mode = 'hang';
    let calls = 0;
    const result = await outcome(
      breaker.execute(() => {
        calls += 1;
        return ok();
      }),
    );
    assert.equal(result, 'rejected:open');
    assert.equal(calls, 0);
    store.release();
  });

  it("'allow' admits every call during the outage", async () => {
    const { store, breaker } = setup({ onStoreFailure: 'allow' });
    store.mode = 'error';
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await outcome(breaker.execute(fail)));
    assert.deepEqual(results, Array(6).fill('boom'));
  });

  it("'reject' rejects with reason 'store-unavailable' and does not run fn", async () => {
    const { store, breaker } = setup({ onStoreFailure: 'reject' });
    store.mode = 'error';
    let calls = 0;
    const run = (): Promise<string> => {
      calls += 1;
      return ok();
    };
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await outcome(breaker.execute(run)));
    assert.deepEqual(results, Array(3).fill('rejected:store-unavailable'));
    assert.equal(calls, 0);
  });

  it('uses the store again within about a second, and writes the outcomes counted meanwhile once', async () => {
    const { clock, store, breaker } = setup({ trip: COUNT_ALL });
    await breaker.execute(ok);
    store.mode = 'error';
    for (let i = 0; i < 7; i++) await breaker.execute(ok);
    for (let i = 0; i < 2; i++) await outcome(breaker.execute(fail));
    store.mode = 'up';
    const before = store.totalCalls;
    await breaker.execute(ok);
    assert.equal(store.totalCalls, before, 'still backing off');
    clock.advance(1_000);
    await breaker.execute(ok);
    assert.ok(store.totalCalls > before, 'the store is tried again after a second');
    await breaker.execute(ok);
    await new Promise((resolve) => setImmediate(resolve));
    const { counts } = await breaker.state();
    // 1 before, 7 + 2 during (written on recovery), then the recovering calls, each once.
    assert.equal(counts.failures, 2);
    assert.equal(counts.successes, 1 + 7 + 1 + 1 + 1);
  });

  it('an outcome whose write fails is kept and written once when the store is back', async () => {
    const { clock, store, breaker } = setup({ trip: COUNT_ALL });
    await breaker.execute(ok);
    // Admitted by the store; the store goes down while the calls run.
    const running = Array.from({ length: 4 }, (_, i) =>
      outcome(
        breaker.execute(async () => {
          await new Promise((resolve) => setImmediate(resolve));
          store.mode = 'error';
          if (i === 3) throw boom;
          return 'value';
        }),
      ),
    );
    assert.deepEqual(await Promise.all(running), ['value', 'value', 'value', 'boom']);
    store.mode = 'up';
    clock.advance(1_000);
    await breaker.execute(ok);
    await new Promise((resolve) => setImmediate(resolve));
    const { counts } = await breaker.state();
    assert.equal(counts.successes, 1 + 3 + 1);
    assert.equal(counts.failures, 1);
  });

  for (const late of ['lands', 'fails'] as const) {
    it(`a write that timed out and later ${late} is counted exactly once`, async () => {
      const { clock, store, breaker } = setup({ trip: COUNT_ALL });
      await breaker.execute(ok);
      const running = outcome(
        breaker.execute(async () => {
          await new Promise((resolve) => setImmediate(resolve));
          store.mode = 'hang';
          return 'value';
        }),
      );
      assert.equal(await running, 'value');
      // Its caller did not wait for the write (a success that cannot open the breaker): wait for
      // it to time out.
      await breaker.flush();
      store.mode = 'up';
      clock.advance(1_000);
      await breaker.execute(ok);
      store.release(late === 'fails');
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      // A success that cannot open the breaker is written without its caller waiting.
      await breaker.flush();
      const { counts } = await breaker.state();
      assert.equal(counts.successes, 3);
    });
  }

  it('flush() writes the outcomes an outage kept, once the store answers', async () => {
    const { clock, store, breaker } = setup({ trip: COUNT_ALL });
    await breaker.execute(ok);
    store.mode = 'error';
    for (let i = 0; i < 4; i++) await breaker.execute(ok);
    await breaker.flush();
    store.mode = 'up';
    clock.advance(1_000);
    await breaker.flush();
    assert.equal((await breaker.state()).counts.successes, 5);
  });

  it('the factory never forgets a breaker that still holds outcomes for the store', async () => {
    const clock = new ManualClock();
    const store = new FaultyStore(new MemoryStore({ clock }));
    const factory = new BreakerFactory({ store, clock, maxBreakers: 1, trip: COUNT_ALL });
    const kept = factory.breakerFor('kept');
    await kept.execute(ok);
    store.mode = 'error';
    await kept.execute(ok);
    await factory.breakerFor('other').execute(ok);
    assert.equal(factory.breakerFor('kept'), kept);
  });

  it('counts what a breaker did before it ever reached the store, once the store answers', async () => {
    const { clock, store, breaker } = setup({ trip: COUNT_ALL });
    store.mode = 'error';
    for (let i = 0; i < 5; i++) await breaker.execute(ok);
    await outcome(breaker.execute(fail));
    store.mode = 'up';
    clock.advance(1_000);
    await breaker.execute(ok);
    await breaker.flush();
    const { counts } = await breaker.state();
    assert.equal(counts.successes, 6);
    assert.equal(counts.failures, 1);
  });

  it('force() tells the operator the store is down', async () => {
    const { store, breaker } = setup();
    store.mode = 'error';
    await assert.rejects(breaker.force('forced-open'), (e: unknown) => isStoreError(e));
  });

  it('a late answer from a hung store does not undo what happened meanwhile', async () => {
    const { clock, store, breaker } = setup();
    await breaker.execute(ok);
    store.mode = 'hang';
    assert.equal(await breaker.execute(ok), 'value');
    store.mode = 'up';
    clock.advance(1_000);
    for (let i = 0; i < 3; i++) await outcome(breaker.execute(fail));
    assert.equal((await breaker.state()).state, 'open');
    store.release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((await breaker.state()).state, 'open');
    assert.equal(await outcome(breaker.execute(ok)), 'rejected:open');
  });
});
