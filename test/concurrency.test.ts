import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  CircuitBreaker,
  MemoryStore,
  consecutiveFailures,
  failureRate,
  isCircuitOpenError,
} from '../src/index.js';
import type { BreakerOptions, CircuitOpenError, OutcomeBatch, RejectReason, Store } from '../src/index.js';
import { policyOf } from '../src/testing/conformance.js';
import { FaultyStore } from '../src/testing/faulty-store.js';
import { ManualClock } from '../src/testing/manual-clock.js';
import { delegatingStore } from './helpers/delegating-store.js';

// maxConcurrent at the breaker: what a call does with its slot (the store's side is in the
// conformance suite and the model check).

/** A deferred value: `open()` resolves the promise a held call waits on. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function rejection(call: Promise<unknown>): Promise<CircuitOpenError> {
  try {
    await call;
  } catch (error) {
    assert.ok(isCircuitOpenError(error), String(error));
    return error;
  }
  assert.fail('expected a rejection');
}

/** A MemoryStore on a manual clock, seen through a store that answers on a later tick and records the batches it is sent. */
function networked(more: { later?: boolean } = {}) {
  const clock = new ManualClock();
  const memory = new MemoryStore({ clock });
  const inner = delegatingStore(memory, { later: more.later ?? true, limits: true });
  const batches: OutcomeBatch[] = [];
  let acquires = 0;
  const store: Store = {
    ...inner,
    acquire: (key, policy) => {
      acquires += 1;
      return inner.acquire(key, policy);
    },
    record: (key, policy, batch) => {
      batches.push(batch);
      return inner.record(key, policy, batch);
    },
  };
  return { clock, memory, store, batches, acquires: () => acquires };
}

const LIMITED: BreakerOptions = { trip: consecutiveFailures(3), maxConcurrent: 2 };

describe('maxConcurrent: at most n calls in flight', () => {
  it('a call over the limit is rejected at once with concurrency-limit; a finished call frees its slot', async () => {
    const { clock, memory, store } = networked();
    const breaker = new CircuitBreaker('dep', { ...LIMITED, store, clock });
    const held = [gate(), gate()];
    const running = held.map((g) => breaker.execute(() => g.promise));
    await sleep(5);
    const rejected: CircuitOpenError[] = [];
    breaker.onReject((event) => assert.equal(event.reason, 'concurrency-limit'));
    rejected.push(await rejection(breaker.execute(() => 'never')));
    assert.equal(rejected[0]!.reason, 'concurrency-limit');
    assert.ok(
      rejected[0]!.retryAfterMs >= 1 && rejected[0]!.retryAfterMs <= 100,
      `a short hint before any call was seen: ${rejected[0]!.retryAfterMs}`,
    );
    const policy = policyOf(LIMITED);
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 2);
    held[0]!.open();
    await running[0];
    await breaker.flush();
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 1);
    assert.equal(await breaker.execute(() => 'in'), 'in');
    held[1]!.open();
    await Promise.all(running);
    await breaker.flush();
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 0);
  });

  it('never more than n in flight under 60 concurrent callers, and none left held', async () => {
    const { clock, memory, store } = networked();
    const breaker = new CircuitBreaker('dep', { ...LIMITED, maxConcurrent: 3, store, clock });
    let inFlight = 0;
    let most = 0;
    let ran = 0;
    let rejected = 0;
    await Promise.all(
      Array.from({ length: 60 }, async () => {
        for (let i = 0; i < 5; i++) {
          try {
            await breaker.execute(async () => {
              inFlight += 1;
              most = Math.max(most, inFlight);
              await sleep(1);
              inFlight -= 1;
              ran += 1;
            });
          } catch (error) {
            assert.equal((error as CircuitOpenError).reason, 'concurrency-limit');
            rejected += 1;
          }
        }
      }),
    );
    await breaker.flush();
    assert.ok(most <= 3, `at most 3 in flight, saw ${most}`);
    assert.ok(ran >= 3 && rejected > 0, `${ran} ran, ${rejected} rejected`);
    assert.equal(memory.inspect('dep', policyOf({ ...LIMITED, maxConcurrent: 3 }))?.activeSlots, 0);
  });

  it('the hint follows the calls: twice the duration of calls that held a slot here', async () => {
    const { clock, store } = networked();
    const breaker = new CircuitBreaker('dep', { ...LIMITED, maxConcurrent: 1, store, clock });
    await breaker.execute(() => sleep(40));
    const held = gate();
    const running = breaker.execute(() => held.promise);
    await sleep(5);
    const error = await rejection(breaker.execute(() => 'never'));
    assert.ok(error.retryAfterMs >= 60 && error.retryAfterMs <= 400, `${error.retryAfterMs}`);
    held.open();
    await running;
  });

  it('a success that resets no run frees its slot in the background: the caller does not wait', async () => {
    const { clock, store, batches } = networked();
    let release: (() => void) | null = null;
    const slow: Store = {
      ...store,
      record: async (key, policy, batch) => {
        await new Promise<void>((resolve) => (release = resolve));
        return store.record(key, policy, batch);
      },
    };
    const breaker = new CircuitBreaker('dep', { ...LIMITED, store: slow, clock });
    assert.equal(await breaker.execute(() => 'ok'), 'ok', 'resolved while the write waits');
    assert.notEqual(release, null, 'the write was sent');
    const flushed = breaker.flush();
    release!();
    await flushed;
    assert.equal(batches.length, 1);
    assert.deepEqual(
      { successes: batches[0]!.successes, slots: batches[0]!.slots?.length },
      { successes: 1, slots: 1 },
    );
  });

  it('every call asks the store: no local-first admission (maxStalenessMs) and no buffering (flushIntervalMs)', async () => {
    const { clock, store, batches, acquires } = networked();
    const breaker = new CircuitBreaker('dep', {
      ...LIMITED,
      trip: failureRate(0.5, { minimumCalls: 100, windowMs: 60_000 }),
      store,
      clock,
      maxStalenessMs: 60_000,
      flushIntervalMs: 60_000,
    });
    for (let i = 0; i < 5; i++) await breaker.execute(() => i);
    assert.equal(acquires(), 5);
    assert.equal(batches.length, 5, 'each outcome is written at once: it frees a slot');
    assert.ok(batches.every((b) => b.slots?.length === 1));
  });

  it('a permit (acquire) holds its slot until it is settled', async () => {
    const { clock, memory, store } = networked({ later: false });
    const breaker = new CircuitBreaker('dep', { ...LIMITED, maxConcurrent: 1, store, clock });
    const permit = await breaker.acquire();
    assert.equal((await rejection(breaker.acquire())).reason, 'concurrency-limit');
    await permit.ignore();
    await breaker.flush();
    const next = await breaker.acquire();
    await next.success();
    await breaker.flush();
    assert.equal(memory.inspect('dep', policyOf({ ...LIMITED, maxConcurrent: 1 }))?.activeSlots, 0);
  });

  it('without a limit nothing changes: the in-process path, no slot in any write', async () => {
    const { clock, store, batches } = networked();
    const breaker = new CircuitBreaker('dep', { trip: consecutiveFailures(3), store, clock });
    await Promise.all(Array.from({ length: 10 }, () => breaker.execute(() => 1)));
    await assert.rejects(breaker.execute(() => Promise.reject(new Error('boom'))));
    await breaker.flush();
    assert.ok(batches.length >= 1 && batches.every((b) => b.slots === undefined));
  });
});

describe('maxConcurrent: queueMs', () => {
  it("a process's queued calls take their slots in the order they queued, and only the first asks the store", async () => {
    const { clock, store, acquires } = networked();
    const breaker = new CircuitBreaker('dep', {
      ...LIMITED,
      maxConcurrent: 1,
      queueMs: 10_000,
      store,
      clock,
    });
    const holders = Array.from({ length: 6 }, () => gate());
    const order: number[] = [];
    const first = breaker.execute(() => holders[0]!.promise);
    await sleep(5);
    const queued = holders.slice(1).map((held, i) =>
      breaker.execute(async () => {
        order.push(i + 1);
        await held.promise;
      }),
    );
    // Five calls wait for about 300 ms: one asks the store (pauses of 10 to 100 ms), not five.
    const before = acquires();
    await sleep(300);
    const asked = acquires() - before;
    assert.ok(asked >= 1 && asked <= 12, `${asked} acquires while five calls waited`);
    holders[0]!.open();
    for (const held of holders.slice(1)) held.open();
    await Promise.all([first, ...queued]);
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
  });

  it('a call waits for a slot up to queueMs, and is rejected once (one event) when none frees', async () => {
    const { clock, store } = networked();
    const breaker = new CircuitBreaker('dep', { ...LIMITED, maxConcurrent: 1, queueMs: 2_000, store, clock });
    const rejects: RejectReason[] = [];
    breaker.onReject((event) => rejects.push(event.reason));
    const held = gate();
    const first = breaker.execute(() => held.promise);
    await sleep(5);
    const queued = breaker.execute(() => 'second');
    await sleep(30);
    held.open();
    assert.equal(await queued, 'second');
    await first;
    assert.equal(rejects.length, 0, 'a call that got its slot was never rejected');

    const short = new CircuitBreaker('short', { ...LIMITED, maxConcurrent: 1, queueMs: 40, store, clock });
    short.onReject((event) => rejects.push(event.reason));
    const blocker = gate();
    const blocking = short.execute(() => blocker.promise);
    await sleep(5);
    const started = performance.now();
    const error = await rejection(short.execute(() => 'never'));
    const waited = performance.now() - started;
    assert.equal(error.reason, 'concurrency-limit');
    assert.ok(waited >= 35, `waited ${waited} ms`);
    assert.deepEqual(rejects, ['concurrency-limit'], 'one rejection, not one per attempt');
    blocker.open();
    await blocking;
  });

  it('a queued call whose caller gave up meanwhile does not run, and gives its slot back', async () => {
    const { clock, memory, store } = networked();
    const breaker = new CircuitBreaker('dep', { ...LIMITED, maxConcurrent: 1, queueMs: 2_000, store, clock });
    const held = gate();
    const first = breaker.execute(() => held.promise);
    await sleep(5);
    const controller = new AbortController();
    let ran = false;
    const queued = breaker.execute(
      () => {
        ran = true;
      },
      { signal: controller.signal },
    );
    await sleep(15);
    controller.abort(new Error('caller gave up'));
    held.open();
    await assert.rejects(queued, /caller gave up/);
    await first;
    await breaker.flush();
    assert.equal(ran, false);
    assert.equal(memory.inspect('dep', policyOf({ ...LIMITED, maxConcurrent: 1 }))?.activeSlots, 0);
  });

  it('a queued call takes another rejection as it comes: the breaker opened meanwhile', async () => {
    const { clock, store } = networked();
    const options = {
      ...LIMITED,
      trip: consecutiveFailures(1),
      maxConcurrent: 1,
      queueMs: 2_000,
      store,
      clock,
    };
    const breaker = new CircuitBreaker('dep', options);
    const held = gate();
    const failing = breaker.execute(async () => {
      await held.promise;
      throw new Error('boom');
    });
    await sleep(5);
    const queued = breaker.execute(() => 'never');
    await sleep(20);
    held.open();
    await assert.rejects(failing, /boom/);
    assert.equal((await rejection(queued)).reason, 'open');
  });
});

describe('maxConcurrent: store failures', () => {
  it('a breaker refuses a store that does not say it limits concurrency', () => {
    const clock = new ManualClock();
    const store = delegatingStore(new MemoryStore({ clock }));
    assert.throws(
      () => new CircuitBreaker('dep', { maxConcurrent: 2, store, clock }),
      (error: Error & { option?: string }) =>
        error.option === 'maxConcurrent' && /limitsConcurrency/.test(error.message),
    );
    // A FaultyStore passes the wrapped store's answer on.
    assert.doesNotThrow(
      () =>
        new CircuitBreaker('dep', {
          maxConcurrent: 2,
          store: new FaultyStore(new MemoryStore({ clock })),
          clock,
        }),
    );
  });

  it("while the store is unreachable ('local'), each process keeps the limit for its own calls", async () => {
    const clock = new ManualClock();
    const store = new FaultyStore(new MemoryStore({ clock }));
    const breaker = new CircuitBreaker('dep', { ...LIMITED, store, clock, storeTimeoutMs: 50 });
    await breaker.execute(() => 'seen'); // the state is known: closed
    await breaker.flush();
    store.mode = 'error';
    const held = [gate(), gate()];
    const running = held.map((g) => breaker.execute(() => g.promise));
    await sleep(20);
    assert.equal((await rejection(breaker.execute(() => 'never'))).reason, 'concurrency-limit');
    held[0]!.open();
    await running[0];
    assert.equal(await breaker.execute(() => 'in'), 'in');
    held[1]!.open();
    await Promise.all(running);
  });

  it('outcomes kept before the store ever answered: learning its generation holds no slot', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    const store = new FaultyStore(memory);
    const limits = { ...LIMITED, concurrencyLeaseMs: 600_000 };
    const breaker = new CircuitBreaker('dep', { ...limits, store, clock, storeTimeoutMs: 50 });
    store.mode = 'error';
    assert.equal(await breaker.execute(() => 'local'), 'local'); // a trial call, admitted locally
    store.mode = 'up';
    clock.advance(60_000);
    await breaker.flush(); // reads the generation (an acquire: no record yet), then writes the outcome
    const snapshot = memory.inspect('dep', policyOf(limits));
    assert.equal(snapshot?.counts.consecutiveFailures, 0);
    assert.equal(snapshot?.activeSlots, 0);
  });

  it('a slot whose write failed is given back once the store answers; one a timed-out acquire took, at once', async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore({ clock });
    const store = new FaultyStore(memory);
    const limits = { ...LIMITED, maxConcurrent: 1, concurrencyLeaseMs: 600_000 };
    const policy = policyOf(limits);
    const breaker = new CircuitBreaker('dep', { ...limits, store, clock, storeTimeoutMs: 50 });
    await breaker.execute(() => 'seen');
    await breaker.flush(); // its slot is given back in the background
    const permit = await breaker.acquire();
    store.failNext(1); // the next store call, the write of this outcome (with its slot), fails
    await permit.success();
    await breaker.flush();
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 1, 'kept: the store did not hear of it');
    // The store is left alone for a while after a failure; then the kept release is written.
    // (The slot would last 10 min: it is given back, not expired.)
    clock.advance(60_000);
    await breaker.flush();
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 0, 'given back once the store answers');

    // An acquire that hangs past the timeout takes its slot when it lands: the late answer gives it back.
    store.mode = 'hang';
    const local = breaker.execute(() => 'local');
    await sleep(80);
    store.mode = 'up';
    store.release();
    assert.equal(await local, 'local');
    await breaker.flush();
    for (let i = 0; i < 50 && (memory.inspect('dep', policy)?.activeSlots ?? 0) > 0; i++) await sleep(10);
    assert.equal(memory.inspect('dep', policy)?.activeSlots, 0);
  });
});
