import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import {
  BreakerFactory,
  CircuitBreaker,
  InvalidOptionError,
  MemoryStore,
  adaptiveThrottle,
  isCircuitOpenError,
  throttleRejectionRate,
} from '../src/index.js';
import type { ThrottlePolicy } from '../src/index.js';
import { ManualClock } from '../src/testing/manual-clock.js';

// Issue 27: adaptive throttling as a trip policy. The rate is a pure function of the window's
// requests and accepts; the breaker counts both in each process and turns calls away at that rate.

const policy = adaptiveThrottle() as ThrottlePolicy;
const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<string> => Promise.resolve('ok');

describe('throttleRejectionRate', () => {
  it('has the SRE book defaults', () => {
    assert.deepEqual(policy, {
      kind: 'adaptive-throttle',
      k: 2,
      windowMs: 120_000,
      padding: 8,
      maxRejectionRate: 0.9,
      minimumCalls: 10,
    });
  });

  it('is the formula: (requests - k accepts) / (requests + padding), capped', () => {
    assert.equal(throttleRejectionRate(policy, 100, 20), (100 - 40) / 108);
    assert.equal(throttleRejectionRate(policy, 100, 0), 0.9, 'capped');
    assert.equal(throttleRejectionRate(policy, 100, 50), 0, 'k accepts cover the requests');
    assert.equal(throttleRejectionRate(policy, 9, 0), 0, 'below minimumCalls');
  });

  it('is 0 when healthy, never above the cap, and monotone in the failure share', () => {
    fc.assert(
      fc.property(
        fc.record({
          k: fc.double({ min: 1, max: 5, noNaN: true }),
          padding: fc.double({ min: 0, max: 50, noNaN: true }),
          maxRejectionRate: fc.double({ min: 0, max: 1, noNaN: true }),
          minimumCalls: fc.integer({ min: 0, max: 50 }),
        }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (shape, requests, shareA, shareB) => {
          const p: ThrottlePolicy = { kind: 'adaptive-throttle', windowMs: 60_000, ...shape };
          // Every call accepted: nothing is turned away.
          assert.equal(throttleRejectionRate(p, requests, requests), 0);
          const [low, high] = shareA <= shareB ? [shareA, shareB] : [shareB, shareA];
          // More failures (fewer accepts) never turn fewer calls away.
          const accepted = (failureShare: number): number => Math.round(requests * (1 - failureShare));
          const rateLow = throttleRejectionRate(p, requests, accepted(low));
          const rateHigh = throttleRejectionRate(p, requests, accepted(high));
          assert.ok(rateHigh >= rateLow, `${rateHigh} < ${rateLow}`);
          for (const rate of [rateLow, rateHigh]) assert.ok(rate >= 0 && rate <= p.maxRejectionRate);
        },
      ),
    );
  });

  it('rejects bad options with the option named', () => {
    assert.throws(() => adaptiveThrottle({ k: '2' as unknown as number }), /adaptiveThrottle.*k/);
    for (const [trip, option] of [
      [adaptiveThrottle({ k: 0.5 }), 'trip.k'],
      [adaptiveThrottle({ maxRejectionRate: 1.5 }), 'trip.maxRejectionRate'],
      [adaptiveThrottle({ windowMs: 0 }), 'trip.windowMs'],
      [adaptiveThrottle({ padding: -1 }), 'trip.padding'],
      [adaptiveThrottle({ minimumCalls: 1.5 }), 'trip.minimumCalls'],
    ] as const) {
      assert.throws(
        () => new CircuitBreaker('x', { trip }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    }
  });
});

describe('a breaker with trip: adaptiveThrottle()', () => {
  function throttled(options: Parameters<typeof adaptiveThrottle>[0] = {}) {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const breaker = new CircuitBreaker('api', { store, clock, trip: adaptiveThrottle(options) });
    return { clock, store, breaker };
  }

  it('turns nothing away while the dependency accepts every call', async () => {
    const { breaker } = throttled({ minimumCalls: 0 });
    for (let i = 0; i < 500; i++) assert.equal(await breaker.execute(ok), 'ok');
  });

  it('turns away the share the formula gives, with reason throttled and a retry-after', async () => {
    // A dependency that fails 60% of the calls it gets (every 5 calls: 2 succeed, 3 fail).
    const { breaker } = throttled();
    let sent = 0;
    let turnedAway = 0;
    let attempts = 0;
    let accepted = 0;
    const calls = 20_000;
    let lastWindow = 0;
    for (let i = 0; i < calls; i++) {
      attempts += 1;
      try {
        await breaker.execute(() => (sent++ % 5 < 2 ? ok() : fail()));
        accepted += 1;
      } catch (error) {
        if (isCircuitOpenError(error)) {
          assert.equal(error.reason, 'throttled');
          assert.ok(error.retryAfterMs >= 12_000 && error.retryAfterMs <= 24_000, `${error.retryAfterMs}`);
          turnedAway += 1;
          if (i >= calls - 2_000) lastWindow += 1;
        }
      }
    }
    // The clock does not move: one window. The share turned away over the last 2,000 calls is
    // the formula over the counts (it moves slowly by then: accepts fall behind requests).
    const share = lastWindow / 2_000;
    const formula = throttleRejectionRate(policy, attempts, accepted);
    assert.ok(formula > 0.5, `the formula turns most away: ${formula}`);
    assert.ok(
      Math.abs(share - formula) <= 0.05,
      `turned away ${share} of the last 2,000 calls; formula ${formula}`,
    );
    assert.ok(turnedAway > 0 && turnedAway < attempts);
    assert.equal((await breaker.state()).state, 'closed', 'a throttle never opens the breaker');
  });

  it('turns calls away at the rate the formula gives over its window, call by call', async () => {
    // The clock moves 5 ms a call through 5 windows of 12 s; the dependency fails 60% of calls
    // for the first 2 windows, then 20%. The test keeps its own buckets (12 s window, ten 1.2 s
    // buckets aligned to the clock) and adds up the formula's rate before each call: the calls
    // turned away must match that sum within 5% of the calls.
    const { breaker, clock } = throttled({ windowMs: 12_000 });
    const buckets = new Map<number, { requests: number; accepts: number }>();
    const bucketOf = (t: number) => {
      const index = Math.floor(t / 1_200);
      let b = buckets.get(index);
      if (b === undefined) buckets.set(index, (b = { requests: 0, accepts: 0 }));
      return b;
    };
    const window = (t: number) => {
      const newest = Math.floor(t / 1_200);
      let requests = 0;
      let accepts = 0;
      for (const [index, b] of buckets) {
        if (index > newest - 10 && index <= newest) {
          requests += b.requests;
          accepts += b.accepts;
        }
      }
      return { requests, accepts };
    };
    let expected = 0;
    let turnedAway = 0;
    let sent = 0;
    const calls = 12_000;
    const start = clock.now();
    for (let i = 0; i < calls; i++) {
      clock.advance(5);
      const now = clock.now();
      const { requests, accepts } = window(now);
      expected += throttleRejectionRate(policy, requests, accepts);
      bucketOf(now).requests += 1;
      const failing = now - start < 24_000 ? sent % 5 < 3 : sent % 5 < 1;
      try {
        await breaker.execute(() => {
          sent += 1;
          return failing ? fail() : ok();
        });
        bucketOf(clock.now()).accepts += 1;
      } catch (error) {
        if (isCircuitOpenError(error)) turnedAway += 1;
      }
    }
    assert.ok(turnedAway > 1_000, `some were turned away: ${turnedAway}`);
    assert.ok(
      Math.abs(turnedAway - expected) <= 0.05 * calls,
      `turned away ${turnedAway}, the formula's sum ${expected.toFixed(0)}`,
    );
  });

  it('returns to 0 within the window once the dependency is healthy again', async () => {
    const { breaker, clock } = throttled();
    for (let i = 0; i < 200; i++) await breaker.execute(fail).catch(() => undefined);
    let rejected = 0;
    for (let i = 0; i < 100; i++) await breaker.execute(ok).catch(() => (rejected += 1));
    assert.ok(rejected > 50, `still throttled right after: ${rejected}`);
    clock.advance(120_000);
    for (let i = 0; i < 100; i++) assert.equal(await breaker.execute(ok), 'ok', `call ${i} after a window`);
  });

  it('does not turn calls away while an operator forced the breaker closed', async () => {
    const { breaker } = throttled();
    for (let i = 0; i < 200; i++) await breaker.execute(fail).catch(() => undefined);
    await breaker.force('forced-closed');
    for (let i = 0; i < 50; i++) assert.equal(await breaker.execute(ok), 'ok');
  });

  it('throttles two-step permits too, and a factory per tenant', async () => {
    const factory = new BreakerFactory({ trip: adaptiveThrottle(), store: new MemoryStore() });
    const sick = factory.breakerFor('api', { tenantId: 'sick' });
    for (let i = 0; i < 100; i++) {
      const permit = await sick.acquire().catch(() => null);
      await permit?.failure();
    }
    const outcomes = await Promise.allSettled(Array.from({ length: 50 }, () => sick.acquire()));
    assert.ok(outcomes.some((o) => o.status === 'rejected' && isCircuitOpenError(o.reason)));
    const well = factory.breakerFor('api', { tenantId: 'well' });
    for (let i = 0; i < 50; i++)
      assert.equal(await well.execute(ok), 'ok', 'another tenant is not throttled');
    await factory.close();
  });
});
