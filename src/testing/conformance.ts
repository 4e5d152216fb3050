import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import {
  adaptiveThrottle,
  consecutiveFailures,
  custom,
  failureRate,
  failuresInWindow,
} from '../core/policy.js';
import * as reducer from '../core/reducer.js';
import { NO_RECORD } from '../core/reducer.js';
import { seededRandom } from './seeded-random.js';
import type {
  AcquireResult,
  BreakerPolicy,
  OutcomeBatch,
  Override,
  ProbeResult,
  UpdateResult,
} from '../core/types.js';
import type { BreakerOptions } from '../options.js';
import { resolveOptions } from '../options.js';
import type { StateChangeMessage, Store } from '../store.js';

/** The ways `ConformanceHarness.corrupt` can spoil a stored record. */
export type CorruptionKind = 'garbage' | 'missing-field' | 'wrong-type' | 'foreign-schema';

/** Every `CorruptionKind`: the suite tests each one. */
export const CORRUPTION_KINDS: readonly CorruptionKind[] = [
  'garbage',
  'missing-field',
  'wrong-type',
  'foreign-schema',
];

/** What a store offers the conformance suite. */
export interface ConformanceHarness {
  /** The store under test. */
  readonly store: Store;
  /**
   * Moves the store's clock forward by `ms` (MemoryStore: a ManualClock; Redis: an offset the
   * store adds to the server's `TIME`; DynamoDB: the store's injected clock).
   */
  advance(ms: number): void | Promise<void>;
  /**
   * Overwrites what the store holds for `key` with a corrupt value: `garbage` (not a record at
   * all, or the wrong data type), `missing-field`, `wrong-type` (a field of the wrong type),
   * `foreign-schema` (another schema version).
   */
  corrupt(key: string, kind: CorruptionKind): void | Promise<void>;
  /** Called after each test: release what the harness made. */
  close?(): void | Promise<void>;
}

/** Options of the suite run. */
export interface ConformanceOptions {
  /** Per-test timeout. @defaultValue 20_000 */
  readonly timeoutMs?: number;
  /**
   * The store remembers batch ids (`OutcomeBatch.id`) and counts a re-sent batch once, as
   * `RedisStore` does: checks it. @defaultValue false
   */
  readonly idempotentBatches?: boolean;
  /**
   * The store implements the optional `reset`: checks it. A store that leaves it out must say so
   * with `false` (the suite then checks that it is absent, so the operator tools use their
   * fallback); otherwise the reset tests fail. @defaultValue true
   */
  readonly reset?: boolean;
  /**
   * The store implements timed overrides (`force`'s `options`: `forMs`, `reason`,
   * `yieldToOperator`, which `openFor` uses): checks them. @defaultValue true
   */
  readonly timedOverrides?: boolean;
  /**
   * The store enforces `maxConcurrent` (`Store.limitsConcurrency`: slots taken by `acquire`, given
   * back by `record`, expiring after `concurrencyLeaseMs`): checks it. A store that leaves it out
   * must not say it limits concurrency; the suite checks that. @defaultValue false
   */
  readonly concurrencyLimit?: boolean;
  /**
   * The store supports a quorum (`Store.heartbeat`; `record` remembers who reported failures and
   * opens only with `OutcomeBatch.quorum` of them): checks it. A store without it must not have
   * `heartbeat`. @defaultValue false
   */
  readonly quorum?: boolean;
  /**
   * The store implements the optional `recordThenAcquire` (a record and an acquire in one round
   * trip): checks that each half answers what `record` then `acquire` would. A store without it
   * must not have the method; the suite checks that. @defaultValue false
   */
  readonly recordThenAcquire?: boolean;
}

/** A policy from breaker options, as the breaker would build it. */
export function policyOf(options: BreakerOptions = {}): BreakerPolicy {
  return resolveOptions({ openMs: 1_000, jitter: 0, ...options }).policy;
}

/** An outcome batch with every field filled in. */
export function outcomes(
  generation: number,
  counts: Partial<Omit<OutcomeBatch, 'generation' | 'probes'>> & { probes?: readonly ProbeResult[] } = {},
): OutcomeBatch {
  const failures = counts.failures ?? 0;
  return {
    generation,
    successes: counts.successes ?? 0,
    failures,
    trailingFailures: counts.trailingFailures ?? failures,
    slow: counts.slow ?? 0,
    ignored: counts.ignored ?? 0,
    probes: counts.probes ?? [],
    random: counts.random ?? 0,
    ...(counts.trip === undefined ? {} : { trip: counts.trip }),
    ...(counts.jitterMs === undefined ? {} : { jitterMs: counts.jitterMs }),
  };
}

const tripped = consecutiveFailures(3);
/** A policy that counts every outcome and never trips: for checks of exact counts. */
const counting = failureRate(0.99, { minimumCalls: 1_000_000, windowMs: 60_000 });

/**
 * Registers the conformance suite for a store: a `describe` block of `node:test` tests, each with
 * a fresh harness from `makeHarness` and its own random key names (so a shared server is fine).
 * Time-sensitive checks leave room for a store whose clock also moves on its own (a server's), by
 * up to a few hundred milliseconds during a test.
 * Every store circuitry ships passes it; run it against your own `Store` to know it behaves as
 * the reducer in `circuitry/core` says.
 */
export function describeStoreConformance(
  name: string,
  makeHarness: () => ConformanceHarness | Promise<ConformanceHarness>,
  options: ConformanceOptions = {},
): void {
  const timeout = options.timeoutMs ?? 20_000;

  /** One test: a harness, a unique key prefix, and the harness closed afterwards. */
  const test = (title: string, body: (h: ConformanceHarness, key: string) => Promise<void>): void => {
    it(title, { timeout }, async () => {
      const harness = await makeHarness();
      try {
        await body(harness, `conformance:${randomUUID()}:`);
      } finally {
        await harness.close?.();
      }
    });
  };

  /**
   * `store.acquire`, except that a closed admission under `NO_RECORD` (generation 0: the store
   * holds nothing and made no record) is followed by an empty batch under 0, which makes the record,
   * and answers its generation: most scenarios are about a breaker that has a record.
   */
  const acquire = async (
    h: ConformanceHarness,
    key: string,
    policy: BreakerPolicy,
  ): Promise<AcquireResult> => {
    const result = await h.store.acquire(key, policy);
    if (!result.admitted || result.generation !== NO_RECORD) return result;
    const made = await h.store.record(key, policy, outcomes(NO_RECORD));
    assert.equal(made.stale, false, 'an outcome under generation 0 makes the record');
    return { ...result, generation: made.snapshot.generation };
  };
  const record = async (
    h: ConformanceHarness,
    key: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ): Promise<UpdateResult> => h.store.record(key, policy, batch);

  /** `store.reset`, which the store must have unless it said otherwise (`options.reset`). */
  const reset = async (h: ConformanceHarness, key: string, policy: BreakerPolicy): Promise<UpdateResult> => {
    const method = h.store.reset?.bind(h.store);
    assert.ok(
      method !== undefined,
      'the store has no reset(); pass { reset: false } to describeStoreConformance if it leaves it out on purpose',
    );
    return method(key, policy);
  };

  /** Subscribes to the store's pushes for `key`, or null when the store cannot push. */
  const listen = async (
    h: ConformanceHarness,
    key: string,
  ): Promise<{ heard: StateChangeMessage[]; unsubscribe: () => Promise<void> } | null> => {
    if (h.store.subscribe === undefined) return null;
    const heard: StateChangeMessage[] = [];
    const unsubscribe = await h.store.subscribe((message) => {
      if (message.key === key) heard.push(message);
    });
    return { heard, unsubscribe };
  };

  /** Opens a fresh breaker by failing it: returns the generation it opened at. */
  const open = async (h: ConformanceHarness, key: string, policy: BreakerPolicy): Promise<number> => {
    const admitted = await acquire(h, key, policy);
    const result = await record(h, key, policy, outcomes(admitted.generation, { failures: 3 }));
    assert.equal(result.snapshot.state, 'open');
    return result.snapshot.generation;
  };

  /** Opens, waits out the open period and claims one probe: returns the probe's permit. */
  const halfOpen = async (
    h: ConformanceHarness,
    key: string,
    policy: BreakerPolicy,
  ): Promise<AcquireResult> => {
    await open(h, key, policy);
    await h.advance(policy.openMs);
    const probe = await acquire(h, key, policy);
    assert.equal(probe.admitted, true);
    assert.equal(probe.state, 'half-open');
    assert.notEqual(probe.lease, null);
    return probe;
  };

  describe(`${name}: store conformance`, () => {
    describe('reading', () => {
      test('inspect of a key the store never saw is null, and changes nothing', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        assert.equal(await h.store.inspect(`${key}never`, policy), null);
        assert.equal(await h.store.inspect(`${key}never`, policy), null);
      });

      test('a new breaker is closed and admits, at generation 1 or more, or at 0 without a record', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const first = await h.store.acquire(key, policy);
        assert.equal(first.admitted, true);
        assert.equal(first.reason, null);
        assert.equal(first.state, 'closed');
        assert.equal(first.lease, null, 'a closed breaker hands out no probe lease');
        assert.equal(first.transition, null);
        const stored = await h.store.inspect(key, policy);
        if (first.generation === NO_RECORD) {
          assert.equal(stored, null, 'admitted under generation 0: no record was made');
        } else {
          assert.ok(first.generation >= 1);
          assert.equal(stored?.generation, first.generation);
        }
      });
    });

    describe('a breaker without a record (generation 0)', () => {
      test('the first outcome that needs a record makes it; others admitted under 0 count in it until it changes state', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const first = await h.store.acquire(key, policy);
        if (first.generation !== NO_RECORD) {
          // A store that makes a record at the first acquire: outcomes go under its generation.
          assert.notEqual(await h.store.inspect(key, policy), null);
          return;
        }
        const made = await record(h, key, policy, outcomes(NO_RECORD, { failures: 1 }));
        assert.equal(made.stale, false);
        assert.equal(made.snapshot.counts.failures, 1);
        assert.ok(made.snapshot.generation >= 1);
        const generation = made.snapshot.generation;
        // Another process, admitted while there was no record, still counts.
        const second = await record(h, key, policy, outcomes(NO_RECORD, { failures: 1 }));
        assert.equal(second.stale, false);
        assert.equal(second.snapshot.counts.consecutiveFailures, 2);
        assert.equal(second.snapshot.generation, generation);
        // The admission answers the record's generation now.
        assert.equal((await h.store.acquire(key, policy)).generation, generation);
        const opened = await record(h, key, policy, outcomes(generation, { failures: 1 }));
        assert.equal(opened.snapshot.state, 'open');
        // Calls admitted before the record existed belong to the closed period that ended.
        const late = await record(h, key, policy, outcomes(NO_RECORD, { failures: 1 }));
        assert.equal(late.stale, true);
        assert.equal(late.snapshot.counts.failures, 3);
      });

      test('an override ends what generation 0 admitted, even after it is cleared', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        if ((await h.store.acquire(key, policy)).generation !== NO_RECORD) return;
        await record(h, key, policy, outcomes(NO_RECORD, { failures: 1 }));
        await h.store.force(key, policy, 'metrics-only');
        await h.store.force(key, policy, null);
        const late = await record(h, key, policy, outcomes(NO_RECORD, { failures: 1 }));
        assert.equal(late.stale, true);
        assert.equal(late.snapshot.counts.failures, 1);
      });
    });

    describe('closed to open', () => {
      test('consecutiveFailures trips on the nth failure in a row; a success resets the run', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const { generation } = await acquire(h, key, policy);
        let result = await record(h, key, policy, outcomes(generation, { failures: 2 }));
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.snapshot.counts.consecutiveFailures, 2);
        result = await record(h, key, policy, outcomes(generation, { successes: 1 }));
        assert.equal(result.snapshot.counts.consecutiveFailures, 0);
        result = await record(h, key, policy, outcomes(generation, { failures: 2 }));
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.transition, null);
        result = await record(h, key, policy, outcomes(generation, { failures: 1 }));
        assert.equal(result.snapshot.state, 'open');
        assert.deepEqual(result.transition, { from: 'closed', to: 'open', generation: generation + 1 });
        assert.equal(result.snapshot.generation, generation + 1);
        assert.equal(result.snapshot.openUntil - result.snapshot.now, policy.openMs);
        assert.equal(result.snapshot.retryAfterMs, policy.openMs);
      });

      test('failuresInWindow counts failures inside the window only', async (h, key) => {
        const policy = policyOf({ trip: failuresInWindow(3, 10_000) });
        const { generation } = await acquire(h, key, policy);
        await record(
          h,
          key,
          policy,
          outcomes(generation, { failures: 2, successes: 5, trailingFailures: 0 }),
        );
        await h.advance(20_000);
        let result = await record(h, key, policy, outcomes(generation, { failures: 1 }));
        assert.equal(result.snapshot.state, 'closed', 'the first two fell out of the window');
        assert.equal(result.snapshot.counts.failures, 1);
        assert.equal(result.snapshot.counts.successes, 0);
        result = await record(h, key, policy, outcomes(generation, { failures: 2 }));
        assert.equal(result.snapshot.state, 'open');
      });

      test('an adaptive throttle counts failures in its window and never opens on them', async (h, key) => {
        // The throttle turns calls away in each process; the store sees a window it never trips.
        const policy = policyOf({ trip: adaptiveThrottle({ windowMs: 10_000 }) });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(generation, { failures: 1_000 }));
        const result = await record(h, key, policy, outcomes(generation, { failures: 1 }));
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.transition, null);
        assert.equal(result.snapshot.counts.failures, 1_001);
        assert.equal((await acquire(h, key, policy)).admitted, true);
      });

      test('failureRate waits for minimumCalls, then trips at the ratio', async (h, key) => {
        const policy = policyOf({ trip: failureRate(0.5, { minimumCalls: 6, windowMs: 10_000 }) });
        const { generation } = await acquire(h, key, policy);
        let result = await record(h, key, policy, outcomes(generation, { failures: 4 }));
        assert.equal(result.snapshot.state, 'closed', 'below minimumCalls');
        result = await record(h, key, policy, outcomes(generation, { successes: 5 }));
        assert.equal(result.snapshot.counts.total, 9);
        result = await record(h, key, policy, outcomes(generation, { failures: 1 }));
        assert.equal(result.snapshot.state, 'open', '5 of 10 failed');
        assert.equal(result.snapshot.counts.failureRate, 0.5);
      });

      test('a custom policy opens only when a batch asks it to (trip: true)', async (h, key) => {
        const policy = policyOf({ trip: custom(() => true) });
        const { generation } = await acquire(h, key, policy);
        let result = await record(h, key, policy, outcomes(generation, { failures: 50 }));
        assert.equal(result.snapshot.state, 'closed', 'a store never evaluates a custom predicate');
        result = await record(h, key, policy, outcomes(generation, { trip: true }));
        assert.equal(result.snapshot.state, 'open');
        assert.equal(result.transition?.to, 'open');
      });

      test('ignored outcomes count nothing toward a trip; slow ones are counted', async (h, key) => {
        const policy = policyOf({ trip: counting });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(generation, { failures: 2, ignored: 10 }));
        let result = await record(h, key, policy, outcomes(generation, { ignored: 5 }));
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.snapshot.counts.ignored, 15);
        assert.equal(result.snapshot.counts.consecutiveFailures, 2, 'ignored does not break a run');
        result = await record(h, key, policy, outcomes(generation, { successes: 1, slow: 1 }));
        assert.equal(result.snapshot.counts.slow, 1);
      });

      test('a batch counts exactly; trailingFailures carries the run across it', async (h, key) => {
        const policy = policyOf({ trip: consecutiveFailures(10) });
        const { generation } = await acquire(h, key, policy);
        const result = await record(
          h,
          key,
          policy,
          outcomes(generation, { successes: 7, failures: 5, trailingFailures: 2, slow: 1, ignored: 3 }),
        );
        assert.deepEqual(
          { ...result.snapshot.counts },
          {
            successes: 7,
            failures: 5,
            slow: 1,
            ignored: 3,
            total: 12,
            failureRate: 5 / 12,
            consecutiveFailures: 2,
          },
        );
      });

      test('under a count policy a batch without failures only resets the run, and writes nothing without one', async (h, key) => {
        for (const trip of [consecutiveFailures(5), failuresInWindow(5, 60_000)]) {
          const policy = policyOf({ trip });
          const name = `${key}${trip.kind}`;
          // No record: a success makes none.
          const first = await h.store.acquire(name, policy);
          assert.equal(first.admitted, true);
          const quiet = await record(
            h,
            name,
            policy,
            outcomes(first.generation, { successes: 3, ignored: 1 }),
          );
          assert.equal(quiet.stale, false);
          assert.equal(quiet.snapshot.counts.consecutiveFailures, 0);
          if (first.generation === NO_RECORD) {
            assert.equal(
              await h.store.inspect(name, policy),
              null,
              'a success under a count policy makes no record',
            );
          }
          // A run: a success resets it; the failures stay counted in the window.
          const { generation } = await acquire(h, name, policy);
          await record(h, name, policy, outcomes(generation, { failures: 2 }));
          const reset = await record(h, name, policy, outcomes(generation, { successes: 1 }));
          assert.equal(reset.snapshot.counts.consecutiveFailures, 0);
          assert.equal(reset.snapshot.counts.failures, 2);
          assert.equal(reset.snapshot.state, 'closed');
          // Ignored calls alone leave a run as it is.
          await record(h, name, policy, outcomes(generation, { failures: 1 }));
          const kept = await record(h, name, policy, outcomes(generation, { ignored: 2 }));
          assert.equal(kept.snapshot.counts.consecutiveFailures, 1);
          assert.equal((await h.store.inspect(name, policy))?.counts.failures, 3);
        }
      });

      test('concurrent records lose no update', async (h, key) => {
        const policy = policyOf({ trip: counting });
        const { generation } = await acquire(h, key, policy);
        await Promise.all([
          ...Array.from({ length: 60 }, () => record(h, key, policy, outcomes(generation, { successes: 1 }))),
          ...Array.from({ length: 25 }, () => record(h, key, policy, outcomes(generation, { failures: 1 }))),
          ...Array.from({ length: 15 }, () => record(h, key, policy, outcomes(generation, { ignored: 1 }))),
        ]);
        const snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.counts.successes, 60);
        assert.equal(snapshot?.counts.failures, 25);
        assert.equal(snapshot?.counts.ignored, 15);
      });

      test('exactly one of many concurrent tripping records reports the transition', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const { generation } = await acquire(h, key, policy);
        const results = await Promise.all(
          Array.from({ length: 20 }, () => record(h, key, policy, outcomes(generation, { failures: 1 }))),
        );
        assert.equal(results.filter((r) => r.transition !== null).length, 1);
        // A store may apply them one by one (those after the trip are then stale) or merge
        // concurrent batches (a group commit); either way it opened, once.
        assert.equal((await h.store.inspect(key, policy))?.state, 'open');
      });
    });

    describe('open', () => {
      test('rejects with reason open and the time left; says nothing changed', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        await open(h, key, policy);
        await h.advance(400);
        const rejected = await acquire(h, key, policy);
        assert.equal(rejected.admitted, false);
        assert.equal(rejected.reason, 'open');
        // A store on a real server clock has moved on a little since.
        assert.ok(rejected.retryAfterMs <= 600 && rejected.retryAfterMs > 300, `${rejected.retryAfterMs}`);
        assert.equal(rejected.transition, null);
        const snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.retryAfterMs, snapshot!.openUntil - snapshot!.now);
      });

      test('jitter lengthens the open period by up to jitterRatio, from the batch random', async (h, key) => {
        const policy = policyOf({ trip: tripped, jitter: 0.5 });
        const { generation } = await acquire(h, key, policy);
        const result = await record(h, key, policy, outcomes(generation, { failures: 3, random: 0.5 }));
        assert.equal(result.snapshot.openUntil - result.snapshot.now, 1_250);
        const fn = policyOf({ trip: tripped });
        const other = `${key}fn`;
        const g = (await acquire(h, other, fn)).generation;
        const withMs = await record(h, other, fn, outcomes(g, { failures: 3, jitterMs: 77 }));
        assert.equal(withMs.snapshot.openUntil - withMs.snapshot.now, 1_077);
      });

      test('moves to half-open on the first acquire after the open period, reported once', async (h, key) => {
        const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 2 });
        const generation = await open(h, key, policy);
        await h.advance(600);
        assert.equal((await acquire(h, key, policy)).admitted, false);
        await h.advance(400);
        const first = await acquire(h, key, policy);
        assert.equal(first.admitted, true);
        assert.equal(first.state, 'half-open');
        assert.deepEqual(first.transition, { from: 'open', to: 'half-open', generation: generation + 1 });
        assert.equal(first.generation, generation + 1);
        const second = await acquire(h, key, policy);
        assert.equal(second.admitted, true);
        assert.equal(second.transition, null);
        assert.notEqual(second.lease, first.lease);
      });
    });

    describe('half-open', () => {
      test('admits at most halfOpenMaxCalls probes, then rejects with half-open-full', async (h, key) => {
        const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 2, probeLeaseMs: 5_000 });
        await halfOpen(h, key, policy);
        assert.equal((await acquire(h, key, policy)).admitted, true);
        const full = await acquire(h, key, policy);
        assert.equal(full.admitted, false);
        assert.equal(full.reason, 'half-open-full');
        assert.ok(full.retryAfterMs > 0 && full.retryAfterMs <= 5_000);
      });

      test('concurrent acquires get exactly halfOpenMaxCalls leases and one transition', async (h, key) => {
        const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 3 });
        await open(h, key, policy);
        await h.advance(policy.openMs);
        const results = await Promise.all(Array.from({ length: 40 }, () => acquire(h, key, policy)));
        const admitted = results.filter((r) => r.admitted);
        assert.equal(admitted.length, 3);
        assert.equal(new Set(admitted.map((r) => r.lease)).size, 3);
        assert.equal(results.filter((r) => r.transition !== null).length, 1);
        assert.ok(results.filter((r) => !r.admitted).every((r) => r.reason === 'half-open-full'));
      });

      test('successThreshold probe successes close it, and the window starts empty', async (h, key) => {
        const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 2, successThreshold: 2 });
        const probe = await halfOpen(h, key, policy);
        const other = await acquire(h, key, policy);
        let result = await record(
          h,
          key,
          policy,
          outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
        );
        assert.equal(result.snapshot.state, 'half-open');
        assert.equal(result.snapshot.probeSuccesses, 1);
        result = await record(
          h,
          key,
          policy,
          outcomes(other.generation, { probes: [{ lease: other.lease!, outcome: 'success' }] }),
        );
        assert.equal(result.snapshot.state, 'closed');
        assert.deepEqual(result.transition, {
          from: 'half-open',
          to: 'closed',
          generation: probe.generation + 1,
        });
        assert.equal(result.snapshot.counts.failures, 0);
        assert.equal(result.snapshot.counts.consecutiveFailures, 0);
      });

      test('a failed probe re-opens with backoff, capped at maxOpenMs', async (h, key) => {
        const policy = policyOf({ trip: tripped, backoff: { multiplier: 2, maxOpenMs: 3_000 } });
        let probe = await halfOpen(h, key, policy);
        const periods: number[] = [];
        for (let i = 0; i < 3; i++) {
          const result = await record(
            h,
            key,
            policy,
            outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'failure' }] }),
          );
          assert.equal(result.snapshot.state, 'open');
          assert.equal(result.transition?.to, 'open');
          periods.push(result.snapshot.openUntil - result.snapshot.now);
          await h.advance(result.snapshot.openUntil - result.snapshot.now);
          probe = await acquire(h, key, policy);
          assert.equal(probe.admitted, true);
        }
        assert.deepEqual(periods, [2_000, 3_000, 3_000]);
        // Closing resets the backoff.
        await record(
          h,
          key,
          policy,
          outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
        );
        const generation = (await acquire(h, key, policy)).generation;
        const reopened = await record(h, key, policy, outcomes(generation, { failures: 3 }));
        assert.equal(reopened.snapshot.openUntil - reopened.snapshot.now, 1_000);
      });

      test("a crashed prober's lease expires and another probe gets through", async (h, key) => {
        const policy = policyOf({ trip: tripped, probeLeaseMs: 2_000 });
        const crashed = await halfOpen(h, key, policy);
        await h.advance(1_500);
        assert.equal((await acquire(h, key, policy)).reason, 'half-open-full');
        await h.advance(500);
        const next = await acquire(h, key, policy);
        assert.equal(next.admitted, true);
        assert.notEqual(next.lease, crashed.lease);
        // The crashed prober's late success counts for nothing: its slot was given away.
        const late = await record(
          h,
          key,
          policy,
          outcomes(crashed.generation, { probes: [{ lease: crashed.lease!, outcome: 'success' }] }),
        );
        assert.equal(late.snapshot.state, 'half-open');
        assert.equal(late.snapshot.probeSuccesses, 0);
        const closed = await record(
          h,
          key,
          policy,
          outcomes(next.generation, { probes: [{ lease: next.lease!, outcome: 'success' }] }),
        );
        assert.equal(closed.snapshot.state, 'closed');
      });

      test('an ignored probe gives its slot back without closing or opening', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const probe = await halfOpen(h, key, policy);
        const result = await record(
          h,
          key,
          policy,
          outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'ignored' }] }),
        );
        assert.equal(result.snapshot.state, 'half-open');
        assert.equal(result.snapshot.activeProbes, 0);
        assert.equal((await acquire(h, key, policy)).admitted, true);
      });
    });

    describe('quorum (one bad process must not open the breaker for everyone)', () => {
      if (options.quorum !== true) {
        test('the store has no heartbeat', async (h) => {
          assert.equal(
            typeof h.store.heartbeat,
            'undefined',
            'a store with a heartbeat should let the suite check it: pass { quorum: true }',
          );
        });
        return;
      }
      const failure = (generation: number, reporter: string, quorum = 2): OutcomeBatch => ({
        ...outcomes(generation, { failures: 1 }),
        reporter,
        quorum,
      });

      test('heartbeat counts distinct active reporters, and forgets one after its ttlMs', async (h, key) => {
        const a = `a${key.length}${randomUUID().slice(0, 8)}`;
        const b = `b${randomUUID().slice(0, 8)}`;
        const first = await h.store.heartbeat!(a, 10_000);
        assert.ok(first >= 1);
        assert.equal(await h.store.heartbeat!(b, 10_000), first + 1);
        assert.equal(await h.store.heartbeat!(a, 10_000), first + 1, 'the same reporter counts once');
        await h.advance(10_001);
        const later = await h.store.heartbeat!(`c${randomUUID().slice(0, 8)}`, 10_000);
        assert.ok(later <= first, `${later}: a and b are no longer active`);
      });

      test('the policy trips on one reporter, but the breaker opens only with a quorum of them', async (h, key) => {
        const policy = policyOf({ trip: consecutiveFailures(2) });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, failure(generation, 'rep-a'));
        let result = await record(h, key, policy, failure(generation, 'rep-a'));
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.belowQuorum, true);
        assert.equal(result.transition, null);
        assert.equal(result.snapshot.counts.consecutiveFailures, 2, 'the failures still count');
        assert.equal((await acquire(h, key, policy)).admitted, true, 'everyone else is admitted');
        result = await record(h, key, policy, failure(generation, 'rep-b'));
        assert.equal(result.snapshot.state, 'open');
        assert.notEqual(result.belowQuorum, true);
        assert.deepEqual(result.transition, {
          from: 'closed',
          to: 'open',
          generation: result.snapshot.generation,
        });
      });

      test('a reporter whose failures left the window does not count toward the quorum', async (h, key) => {
        const policy = policyOf({ trip: failuresInWindow(2, 10_000) });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, failure(generation, 'rep-a'));
        await h.advance(12_000);
        await record(h, key, policy, failure(generation, 'rep-b'));
        let result = await record(h, key, policy, failure(generation, 'rep-b'));
        assert.equal(result.belowQuorum, true, 'rep-a reported outside the window');
        assert.equal(result.snapshot.state, 'closed');
        result = await record(h, key, policy, failure(generation, 'rep-c'));
        assert.equal(result.snapshot.state, 'open');
      });

      test('random failures, successes and time under random quorums agree with the reducer', async (h, key) => {
        // A differential check: each batch goes to the store, then to the reducer at the time the
        // store answered; state, generation, run, window failures and belowQuorum must agree.
        const random = seededRandom(key.length * 7919 + 11);
        const rate = failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 });
        for (const trip of [consecutiveFailures(3), failuresInWindow(4, 10_000), rate]) {
          const policy = policyOf({ trip });
          for (let round = 0; round < 6; round++) {
            const name = `${key}${trip.kind}-${round}`;
            const { generation } = await acquire(h, name, policy);
            const reference = reducer.emptyRecord(generation);
            for (let step = 0; step < 25 && reference.state === 'closed'; step++) {
              const draw = random();
              if (draw < 0.2) {
                await h.advance(Math.floor(random() * 4_000));
                continue;
              }
              const quorum = 1 + Math.floor(random() * 3);
              // Successes carry a quorum too (a breaker stamps them under a failure rate).
              const batch: OutcomeBatch =
                draw < 0.35
                  ? { ...outcomes(generation, { successes: 1, trailingFailures: 0 }), quorum }
                  : draw < 0.45
                    ? { ...outcomes(generation, { ignored: 1 }), quorum }
                    : failure(generation, `rep-${Math.floor(random() * 3)}`, quorum);
              const result = await record(h, name, policy, batch);
              const expected = reducer.record(reference, policy, result.snapshot.now, batch);
              const at = `${trip.kind}, round ${round}, step ${step}: ${JSON.stringify(batch)}`;
              assert.equal(result.snapshot.state, expected.snapshot.state, at);
              assert.equal(result.snapshot.generation, expected.snapshot.generation, at);
              assert.equal(
                result.snapshot.counts.consecutiveFailures,
                expected.snapshot.counts.consecutiveFailures,
                at,
              );
              assert.equal(result.snapshot.counts.failures, expected.snapshot.counts.failures, at);
              assert.equal(result.belowQuorum === true, expected.belowQuorum === true, at);
            }
          }
        }
      });

      test('below a quorum, a success that completes a failure rate neither opens it nor reports below', async (h, key) => {
        const policy = policyOf({ trip: failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 }) });
        const { generation } = await acquire(h, key, policy);
        for (let i = 0; i < 3; i++) await record(h, key, policy, failure(generation, 'rep-a'));
        // Three calls: under minimumCalls. An ignored call does not count, and says closed.
        let result = await record(h, key, policy, { ...outcomes(generation, { ignored: 1 }), quorum: 2 });
        assert.equal(result.snapshot.state, 'closed');
        // A success by another process completes minimumCalls at 3 failures of 4: the policy
        // trips, but one reporter failed: closed, and the success's writer is not below anything.
        result = await record(h, key, policy, { ...outcomes(generation, { successes: 1 }), quorum: 2 });
        assert.equal(result.snapshot.state, 'closed');
        assert.notEqual(result.belowQuorum, true);
        assert.equal(result.snapshot.counts.failures, 3);
        result = await record(h, key, policy, { ...outcomes(generation, { ignored: 1 }), quorum: 2 });
        assert.equal(result.snapshot.state, 'closed', 'an ignored outcome reports the breaker as it is');
        assert.equal((await h.store.inspect(key, policy))?.state, 'closed');
        result = await record(h, key, policy, failure(generation, 'rep-b'));
        assert.equal(result.snapshot.state, 'open', 'a second reporter makes the quorum');
      });

      test('a quorum of 1 (one active reporter) opens as without one', async (h, key) => {
        const policy = policyOf({ trip: consecutiveFailures(2) });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, failure(generation, 'solo', 1));
        const result = await record(h, key, policy, failure(generation, 'solo', 1));
        assert.equal(result.snapshot.state, 'open');
      });
    });

    describe('throttle rate (what operators see of an adaptive throttle)', () => {
      test("keeps the rate a breaker's failures reported, and when; nothing else writes it", async (h, key) => {
        // What a breaker with `trip: adaptiveThrottle()` gives its store: a policy that never trips.
        const policy = policyOf({ trip: failuresInWindow(2 ** 31 - 1, 120_000) });
        const { generation } = await acquire(h, key, policy);
        assert.equal((await h.store.inspect(key, policy))?.throttle, undefined, 'none reported yet');
        const first = await record(h, key, policy, {
          ...outcomes(generation, { failures: 1 }),
          throttleRate: 0.37,
        });
        let snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.throttle?.rate, 0.37);
        assert.ok(
          Math.abs(snapshot.throttle.reportedAt - first.snapshot.now) < 1_000,
          `reported at ${snapshot.throttle.reportedAt}, written at ${first.snapshot.now}`,
        );
        await h.advance(2_000);
        // A success, a failure without a rate, and a success with one (never sent) change nothing.
        await record(h, key, policy, outcomes(generation, { successes: 1 }));
        await record(h, key, policy, outcomes(generation, { failures: 1 }));
        await record(h, key, policy, { ...outcomes(generation, { successes: 1 }), throttleRate: 0.9 });
        snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.throttle?.rate, 0.37);
        assert.equal(snapshot?.counts.failures, 2, 'the failures still count');
        const later = await record(h, key, policy, {
          ...outcomes(generation, { failures: 1 }),
          throttleRate: 0.123456789,
        });
        snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.throttle?.rate, 0.123457, 'kept to a millionth');
        assert.ok(Math.abs(snapshot.throttle.reportedAt - later.snapshot.now) < 1_000);
      });
    });

    describe('concurrency limit (maxConcurrent)', () => {
      if (options.concurrencyLimit !== true) {
        test('the store does not say it limits concurrency', async (h) => {
          assert.notEqual(
            h.store.limitsConcurrency,
            true,
            'a store that limits concurrency should let the suite check it: pass { concurrencyLimit: true }',
          );
        });
        return;
      }

      const limited = (more: BreakerOptions = {}): BreakerPolicy =>
        policyOf({ trip: tripped, maxConcurrent: 2, concurrencyLeaseMs: 2_000, ...more });
      /** Gives back `slots` with an outcome batch of `counts` at `generation`. */
      const release = (
        h: ConformanceHarness,
        key: string,
        policy: BreakerPolicy,
        generation: number,
        slots: readonly (string | null | undefined)[],
        counts: Parameters<typeof outcomes>[1] = {},
      ): Promise<UpdateResult> =>
        record(h, key, policy, {
          ...outcomes(generation, counts),
          slots: slots.map((slot) => {
            assert.ok(typeof slot === 'string' && slot !== '', 'an admitted call holds a slot');
            return slot;
          }),
        });

      test('the store says it limits concurrency', async (h) => {
        assert.equal(h.store.limitsConcurrency, true);
      });

      test('admits at most maxConcurrent calls, each with a slot of its own, then rejects with concurrency-limit', async (h, key) => {
        const policy = limited();
        const first = await h.store.acquire(key, policy);
        const second = await h.store.acquire(key, policy);
        assert.equal(first.admitted && second.admitted, true);
        assert.equal(first.state, 'closed');
        assert.ok(typeof first.slot === 'string' && typeof second.slot === 'string');
        assert.notEqual(first.slot, second.slot);
        assert.notEqual(first.generation, NO_RECORD, 'a slot is kept in a record');
        const full = await h.store.acquire(key, policy);
        assert.equal(full.admitted, false);
        assert.equal(full.reason, 'concurrency-limit');
        assert.equal(full.slot ?? null, null);
        assert.ok(full.retryAfterMs > 0 && full.retryAfterMs <= 2_000, `${full.retryAfterMs}`);
        assert.equal(full.transition, null);
        assert.equal((await h.store.inspect(key, policy))?.activeSlots, 2);
      });

      test('concurrent acquires get exactly maxConcurrent slots', async (h, key) => {
        const policy = limited({ maxConcurrent: 3 });
        const results = await Promise.all(
          Array.from({ length: 30 }, async () => h.store.acquire(key, policy)),
        );
        const admitted = results.filter((r) => r.admitted);
        assert.equal(admitted.length, 3);
        assert.equal(new Set(admitted.map((r) => r.slot)).size, 3);
        assert.ok(results.filter((r) => !r.admitted).every((r) => r.reason === 'concurrency-limit'));
      });

      test('an outcome gives its slot back, a success that resets no run too', async (h, key) => {
        for (const trip of [
          consecutiveFailures(5),
          failureRate(0.5, { minimumCalls: 100, windowMs: 60_000 }),
        ]) {
          const name = `${key}${trip.kind}`;
          const policy = limited({ trip });
          const a = await h.store.acquire(name, policy);
          const b = await h.store.acquire(name, policy);
          assert.equal((await h.store.acquire(name, policy)).reason, 'concurrency-limit');
          // Under a count policy this success resets nothing: the slot alone makes it a write.
          const freed = await release(h, name, policy, a.generation, [a.slot], { successes: 1 });
          assert.equal(freed.stale, false);
          assert.equal(freed.snapshot.activeSlots, 1);
          const c = await h.store.acquire(name, policy);
          assert.equal(c.admitted, true, trip.kind);
          await release(h, name, policy, b.generation, [b.slot], { failures: 1 });
          await release(h, name, policy, c.generation, [c.slot], { ignored: 1 });
          const after = await h.store.inspect(name, policy);
          assert.equal(after?.activeSlots, 0);
          assert.equal(after?.counts.failures, 1);
          assert.equal(after?.counts.consecutiveFailures, 1, 'an ignored call leaves the run as it is');
          // Given back twice (a re-send) frees nothing more.
          const d = await h.store.acquire(name, policy);
          await release(h, name, policy, a.generation, [a.slot], { successes: 1 });
          assert.equal((await h.store.inspect(name, policy))?.activeSlots, 1);
          await release(h, name, policy, d.generation, [d.slot]);
        }
      });

      test('a stale batch still gives its slots back, and a batch of slots alone counts nothing', async (h, key) => {
        const policy = limited();
        const a = await h.store.acquire(key, policy);
        const b = await h.store.acquire(key, policy);
        // Two new generations (an override set and cleared): a and b's outcomes are stale.
        await h.store.force(key, policy, 'forced-open');
        await h.store.force(key, policy, null);
        assert.equal((await h.store.acquire(key, policy)).reason, 'concurrency-limit');
        const stale = await release(h, key, policy, a.generation, [a.slot], { failures: 3 });
        assert.equal(stale.stale, true);
        assert.equal(stale.snapshot.state, 'closed');
        assert.equal(stale.snapshot.counts.failures, 0);
        assert.equal(stale.snapshot.activeSlots, 1);
        const c = await h.store.acquire(key, policy);
        assert.equal(c.admitted, true);
        const bare = await release(h, key, policy, b.generation, [b.slot, c.slot]);
        assert.equal(bare.snapshot.activeSlots, 0);
        assert.deepEqual(bare.snapshot.counts, stale.snapshot.counts);
        // Slots of a breaker the store holds nothing for: nothing to give back, and no record made.
        await release(h, `${key}none`, policy, NO_RECORD, ['gone']);
        assert.equal(await h.store.inspect(`${key}none`, policy), null);
      });

      test("a crashed caller's slot expires after concurrencyLeaseMs and goes to another", async (h, key) => {
        const policy = limited({ maxConcurrent: 1 });
        const crashed = await h.store.acquire(key, policy);
        assert.equal(crashed.admitted, true);
        await h.advance(1_500);
        const full = await h.store.acquire(key, policy);
        assert.equal(full.reason, 'concurrency-limit');
        assert.ok(full.retryAfterMs > 0 && full.retryAfterMs <= 500, `${full.retryAfterMs}`);
        await h.advance(500);
        const next = await h.store.acquire(key, policy);
        assert.equal(next.admitted, true);
        assert.notEqual(next.slot, crashed.slot);
        // The crashed caller's late outcome frees nothing: its slot was given away.
        await release(h, key, policy, crashed.generation, [crashed.slot], { successes: 1 });
        assert.equal((await h.store.acquire(key, policy)).reason, 'concurrency-limit');
        assert.equal((await h.store.inspect(key, policy))?.activeSlots, 1);
      });

      test('slots outlive state changes; a half-open probe takes one too', async (h, key) => {
        const policy = limited({ maxConcurrent: 1, halfOpenMaxCalls: 2, concurrencyLeaseMs: 60_000 });
        const running = await h.store.acquire(key, policy);
        // The breaker opens (other calls failed) while this call still runs.
        const opened = await record(h, key, policy, outcomes(running.generation, { failures: 3 }));
        assert.equal(opened.snapshot.state, 'open');
        assert.equal(opened.snapshot.activeSlots, 1);
        await h.advance(policy.openMs);
        const full = await h.store.acquire(key, policy);
        assert.equal(full.admitted, false);
        assert.equal(full.reason, 'concurrency-limit');
        assert.equal(full.state, 'half-open');
        assert.deepEqual(
          { from: full.transition?.from, to: full.transition?.to },
          { from: 'open', to: 'half-open' },
          'the move to half-open is made (and reported) even though no probe could run',
        );
        assert.equal((await h.store.inspect(key, policy))?.activeProbes, 0, 'no lease without a slot');
        await release(h, key, policy, running.generation, [running.slot], { successes: 1 });
        const probe = await h.store.acquire(key, policy);
        assert.equal(probe.admitted, true);
        assert.notEqual(probe.lease, null);
        assert.equal(typeof probe.slot, 'string');
        const closed = await release(h, key, policy, probe.generation, [probe.slot], {
          probes: [{ lease: probe.lease!, outcome: 'success' }],
        });
        assert.equal(closed.snapshot.state, 'closed');
        assert.equal(closed.snapshot.activeSlots, 0);
      });

      test('an override does not limit: forced-closed and metrics-only admit without a slot', async (h, key) => {
        const policy = limited({ maxConcurrent: 1 });
        const held = await h.store.acquire(key, policy);
        for (const override of ['forced-closed', 'metrics-only'] as const) {
          await h.store.force(key, policy, override);
          for (let i = 0; i < 3; i++) {
            const admitted = await h.store.acquire(key, policy);
            assert.equal(admitted.admitted, true, override);
            assert.equal(admitted.slot ?? null, null, override);
          }
        }
        await h.store.force(key, policy, null);
        assert.equal(
          (await h.store.acquire(key, policy)).reason,
          'concurrency-limit',
          'the held slot is still held',
        );
        await release(h, key, policy, held.generation, [held.slot]);
        assert.equal((await h.store.acquire(key, policy)).admitted, true);
      });

      if (options.reset !== false) {
        test('a reset keeps the slots of calls still running', async (h, key) => {
          const policy = limited({ maxConcurrent: 1 });
          const held = await h.store.acquire(key, policy);
          const result = await reset(h, key, policy);
          assert.equal(result.snapshot.activeSlots, 1);
          assert.equal((await h.store.acquire(key, policy)).reason, 'concurrency-limit');
          await release(h, key, policy, held.generation, [held.slot]);
          assert.equal((await h.store.acquire(key, policy)).admitted, true);
        });
      }

      test('without a limit nothing changes: no slot, and nothing held', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const admitted = await Promise.all(
          Array.from({ length: 5 }, async () => h.store.acquire(key, policy)),
        );
        assert.ok(admitted.every((r) => r.admitted && (r.slot ?? null) === null));
        const snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.activeSlots ?? 0, 0);
      });
    });

    describe('generations', () => {
      test('a late result from an old generation changes nothing', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const before = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(before.generation, { failures: 3 }));
        const snapshot = await h.store.inspect(key, policy);
        const late = await record(h, key, policy, outcomes(before.generation, { successes: 4, failures: 9 }));
        assert.equal(late.stale, true);
        assert.equal(late.transition, null);
        assert.equal(late.snapshot.state, 'open');
        assert.equal(late.snapshot.generation, snapshot!.generation);
        assert.deepEqual(late.snapshot.counts, snapshot!.counts);
      });

      test('the generation never decreases across a full cycle', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const seen: number[] = [];
        for (let cycle = 0; cycle < 2; cycle++) {
          seen.push((await acquire(h, key, policy)).generation);
          const opened = await record(h, key, policy, outcomes(seen.at(-1)!, { failures: 3 }));
          seen.push(opened.snapshot.generation);
          await h.advance(opened.snapshot.openUntil - opened.snapshot.now);
          const probe = await acquire(h, key, policy);
          seen.push(probe.generation);
          const closed = await record(
            h,
            key,
            policy,
            outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
          );
          seen.push(closed.snapshot.generation);
        }
        // acquire, open, half-open, close per cycle: each transition moves it on, nothing moves it back.
        for (let i = 1; i < seen.length; i++) {
          const moved = i % 4 !== 0;
          assert.ok(
            moved ? seen[i]! > seen[i - 1]! : seen[i]! >= seen[i - 1]!,
            `generations ${seen.join(',')}`,
          );
        }
      });
    });

    describe('operator overrides', () => {
      test('forced-open rejects every call; clearing it restores the computed state', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        await acquire(h, key, policy);
        const forced = await h.store.force(key, policy, 'forced-open');
        assert.equal(forced.snapshot.circuitState, 'forced-open');
        assert.deepEqual(
          { from: forced.transition?.from, to: forced.transition?.to },
          { from: 'closed', to: 'forced-open' },
        );
        const rejected = await acquire(h, key, policy);
        assert.equal(rejected.admitted, false);
        assert.equal(rejected.reason, 'forced-open');
        assert.ok(rejected.retryAfterMs > 0);
        const again = await h.store.force(key, policy, 'forced-open');
        assert.equal(again.transition, null, 'setting the same override is not a transition');
        const cleared = await h.store.force(key, policy, null);
        assert.equal(cleared.snapshot.circuitState, 'closed');
        assert.equal(cleared.transition?.to, 'closed');
        assert.equal((await acquire(h, key, policy)).admitted, true);
      });

      test('forced-closed admits everything and counts nothing', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        await open(h, key, policy);
        const forced = await h.store.force(key, policy, 'forced-closed');
        assert.equal(forced.snapshot.circuitState, 'forced-closed');
        const admitted = await acquire(h, key, policy);
        assert.equal(admitted.admitted, true);
        const result = await record(
          h,
          key,
          policy,
          outcomes(admitted.generation, { failures: 10, successes: 2 }),
        );
        assert.equal(result.snapshot.circuitState, 'forced-closed');
        assert.deepEqual(result.snapshot.counts, forced.snapshot.counts);
      });

      test('metrics-only counts and transitions but never rejects', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        await h.store.force(key, policy, 'metrics-only');
        const admitted = await acquire(h, key, policy);
        const result = await record(h, key, policy, outcomes(admitted.generation, { failures: 3 }));
        assert.equal(result.snapshot.state, 'open');
        assert.equal(result.snapshot.override, 'metrics-only');
        assert.equal(result.transition?.to, 'open');
        const stillAdmitted = await acquire(h, key, policy);
        assert.equal(stillAdmitted.admitted, true);
        assert.equal(stillAdmitted.lease, null);
      });

      test('an override starts a new generation: calls admitted before it are fenced off', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const before = await acquire(h, key, policy);
        await h.store.force(key, policy, 'metrics-only');
        const late = await record(h, key, policy, outcomes(before.generation, { failures: 3 }));
        assert.equal(late.stale, true);
        assert.equal(late.snapshot.state, 'closed');
      });
    });

    if (options.timedOverrides !== false) {
      describe('timed overrides (openFor)', () => {
        test('a timed forced-open rejects with the time left, says why, then lapses to half-open', async (h, key) => {
          const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 1 });
          await acquire(h, key, policy);
          const forced = await h.store.force(key, policy, 'forced-open', {
            forMs: 5_000,
            reason: 'Retry-After',
          });
          assert.deepEqual(
            { from: forced.transition?.from, to: forced.transition?.to },
            { from: 'closed', to: 'forced-open' },
          );
          assert.equal(forced.snapshot.overrideReason, 'Retry-After');
          assert.ok(Math.abs(forced.snapshot.overrideUntil - forced.snapshot.now - 5_000) <= 1);
          const rejected = await h.store.acquire(key, policy);
          assert.equal(rejected.reason, 'forced-open');
          assert.ok(
            rejected.retryAfterMs > 4_000 && rejected.retryAfterMs <= 5_000,
            `${rejected.retryAfterMs}`,
          );
          await h.advance(5_000);
          // Read: lapsed (nothing written yet).
          const read = await h.store.inspect(key, policy);
          assert.equal(read?.circuitState, 'half-open');
          assert.equal(read?.override, null);
          assert.equal(read?.overrideUntil, 0);
          const probe = await h.store.acquire(key, policy);
          assert.equal(probe.admitted, true);
          assert.notEqual(probe.lease, null, 'a probe decides, as after any open');
          assert.deepEqual(
            { from: probe.transition?.from, to: probe.transition?.to },
            { from: 'forced-open', to: 'half-open' },
          );
          assert.ok(probe.generation > forced.snapshot.generation);
          const full = await h.store.acquire(key, policy);
          assert.equal(full.reason, 'half-open-full');
          assert.equal(full.transition, null, 'the lapse is reported once');
        });

        test('a timed forced-closed lapses to the computed state; clearing ends a timed override early', async (h, key) => {
          const policy = policyOf({ trip: tripped, openMs: 60_000 });
          await open(h, key, policy);
          await h.store.force(key, policy, 'forced-closed', { forMs: 2_000 });
          assert.equal((await h.store.acquire(key, policy)).admitted, true);
          await h.advance(2_000);
          const after = await h.store.acquire(key, policy);
          assert.equal(after.admitted, false);
          assert.equal(after.reason, 'open');
          await h.store.force(key, policy, 'forced-open', { forMs: 60_000, reason: 'x' });
          const cleared = await h.store.force(key, policy, null);
          assert.equal(cleared.snapshot.override, null);
          assert.equal(cleared.snapshot.overrideUntil, 0);
          assert.equal(cleared.snapshot.overrideReason, null);
        });

        test('openFor yields to an operator and never shortens a timed open', async (h, key) => {
          const policy = policyOf({ trip: tripped });
          await acquire(h, key, policy);
          const yielding = { yieldToOperator: true } as const;
          // An operator's override without a time is left alone.
          for (const override of ['forced-open', 'forced-closed', 'metrics-only'] as const) {
            await h.store.force(key, policy, override);
            const kept = await h.store.force(key, policy, 'forced-open', { forMs: 10_000, ...yielding });
            assert.equal(kept.snapshot.override, override);
            assert.equal(kept.snapshot.overrideUntil, 0);
          }
          await h.store.force(key, policy, null);
          const first = await h.store.force(key, policy, 'forced-open', { forMs: 10_000, ...yielding });
          const until = first.snapshot.overrideUntil;
          const shorter = await h.store.force(key, policy, 'forced-open', { forMs: 1_000, ...yielding });
          assert.equal(shorter.snapshot.overrideUntil, until, 'never shortened');
          const longer = await h.store.force(key, policy, 'forced-open', { forMs: 20_000, ...yielding });
          assert.ok(longer.snapshot.overrideUntil > until);
          assert.equal(longer.transition, null);
          assert.equal(longer.snapshot.generation, first.snapshot.generation, 'made longer, same generation');
        });
      });
    }

    describe("the time of the last close (the recovery ramp's anchor)", () => {
      test('a close callers see is timed: probes, a reset, a forced-open cleared; nothing else', async (h, key) => {
        const policy = policyOf({ trip: tripped, openMs: 1_000, halfOpenMaxCalls: 1 });
        const near = (closedAt: number, now: number): boolean => Math.abs(closedAt - now) <= 1;
        // Never closed after rejecting: 0.
        const fresh = await acquire(h, key, policy);
        assert.equal(fresh.closedAt ?? 0, 0);
        // Probes close it.
        const probe = await halfOpen(h, key, policy);
        const closed = await record(
          h,
          key,
          policy,
          outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
        );
        assert.equal(closed.snapshot.state, 'closed');
        assert.ok(
          near(closed.snapshot.closedAt, closed.snapshot.now),
          `${closed.snapshot.closedAt} vs ${closed.snapshot.now}`,
        );
        const told = await h.store.acquire(key, policy);
        if (told.closedAt !== undefined) assert.equal(told.closedAt, closed.snapshot.closedAt);
        // A trip does not move it; a reset of the open breaker does.
        await h.advance(2_000);
        await open(h, key, policy);
        assert.equal((await h.store.inspect(key, policy))?.closedAt, closed.snapshot.closedAt);
        await h.advance(100);
        if (options.reset === false) return; // the rest starts from a reset
        const afresh = await reset(h, key, policy);
        assert.ok(
          near(afresh.snapshot.closedAt, afresh.snapshot.now) &&
            afresh.snapshot.closedAt > closed.snapshot.closedAt,
        );
        // Clearing a forced-open of a closed breaker is a close callers see; clearing a forced-closed is not.
        await h.advance(100);
        await h.store.force(key, policy, 'forced-open');
        const cleared = await h.store.force(key, policy, null);
        assert.ok(
          near(cleared.snapshot.closedAt, cleared.snapshot.now) &&
            cleared.snapshot.closedAt > afresh.snapshot.closedAt,
        );
        await h.advance(100);
        await h.store.force(key, policy, 'forced-closed');
        const unforced = await h.store.force(key, policy, null);
        assert.equal(unforced.snapshot.closedAt, cleared.snapshot.closedAt);
      });
    });

    describe('reset', () => {
      if (options.reset === false) {
        test('the store says it has no reset, and has none', async (h) => {
          assert.equal(
            typeof h.store.reset,
            'undefined',
            'a store with reset() should let the suite check it',
          );
        });
        return;
      }

      test('forgets window counts and consecutive failures; a closed breaker stays closed', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const { generation } = await acquire(h, key, policy);
        await record(
          h,
          key,
          policy,
          outcomes(generation, { successes: 4, failures: 2, trailingFailures: 2, slow: 1, ignored: 3 }),
        );
        const result = await reset(h, key, policy);
        assert.equal(result.stale, false);
        assert.equal(result.transition, null, 'closed to closed is no transition');
        assert.equal(result.snapshot.state, 'closed');
        assert.deepEqual(
          { ...result.snapshot.counts },
          {
            successes: 0,
            failures: 0,
            slow: 0,
            ignored: 0,
            total: 0,
            failureRate: 0,
            consecutiveFailures: 0,
          },
        );
        const snapshot = await h.store.inspect(key, policy);
        assert.equal(snapshot?.counts.total, 0);
        assert.equal(snapshot?.counts.consecutiveFailures, 0);
        assert.equal(snapshot?.generation, result.snapshot.generation);
        // The two failures before the reset are forgotten: it takes three new ones to trip.
        const after = await acquire(h, key, policy);
        let counted = await record(h, key, policy, outcomes(after.generation, { failures: 2 }));
        assert.equal(counted.snapshot.state, 'closed');
        counted = await record(h, key, policy, outcomes(after.generation, { failures: 1 }));
        assert.equal(counted.snapshot.state, 'open');
      });

      test('closes an open breaker and reports open -> closed', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const opened = await open(h, key, policy);
        const result = await reset(h, key, policy);
        assert.ok(result.snapshot.generation > opened);
        assert.deepEqual(result.transition, {
          from: 'open',
          to: 'closed',
          generation: result.snapshot.generation,
        });
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.snapshot.circuitState, 'closed');
        assert.equal(result.snapshot.openUntil, 0);
        assert.equal(result.snapshot.retryAfterMs, 0);
        assert.equal(result.snapshot.counts.failures, 0);
        const admitted = await acquire(h, key, policy);
        assert.equal(admitted.admitted, true, 'admits at once, before the open period would have ended');
        assert.equal(admitted.state, 'closed');
        assert.equal(admitted.lease, null);
        assert.equal(admitted.transition, null);
      });

      test('drops probe leases, probe successes and the backoff of a half-open breaker', async (h, key) => {
        const policy = policyOf({
          trip: tripped,
          halfOpenMaxCalls: 2,
          successThreshold: 2,
          backoff: { multiplier: 2, maxOpenMs: 8_000 },
        });
        // A failed probe re-opens with backoff (2 s), then the next probes start.
        const failed = await halfOpen(h, key, policy);
        const reopened = await record(
          h,
          key,
          policy,
          outcomes(failed.generation, { probes: [{ lease: failed.lease!, outcome: 'failure' }] }),
        );
        assert.equal(reopened.snapshot.reopens, 1);
        await h.advance(reopened.snapshot.openUntil - reopened.snapshot.now);
        const first = await acquire(h, key, policy);
        const second = await acquire(h, key, policy);
        assert.notEqual(second.lease, null);
        const half = await record(
          h,
          key,
          policy,
          outcomes(first.generation, { probes: [{ lease: first.lease!, outcome: 'success' }] }),
        );
        assert.equal(half.snapshot.probeSuccesses, 1);
        assert.equal(half.snapshot.activeProbes, 1);
        const result = await reset(h, key, policy);
        assert.equal(result.transition?.from, 'half-open');
        assert.equal(result.transition?.to, 'closed');
        assert.equal(result.snapshot.activeProbes, 0);
        assert.equal(result.snapshot.probeSuccesses, 0);
        assert.equal(result.snapshot.reopens, 0);
        const late = await record(
          h,
          key,
          policy,
          outcomes(second.generation, { probes: [{ lease: second.lease!, outcome: 'failure' }] }),
        );
        assert.equal(late.stale, true, 'a probe admitted before the reset cannot re-open it');
        assert.equal(late.snapshot.state, 'closed');
        // The next open is a first one again: openMs, not the backed-off period.
        const g = (await acquire(h, key, policy)).generation;
        const next = await record(h, key, policy, outcomes(g, { failures: 3 }));
        assert.equal(next.snapshot.openUntil - next.snapshot.now, policy.openMs);
      });

      test('starts a new generation: outcomes of calls admitted before it are ignored', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const before = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(before.generation, { failures: 1 }));
        const result = await reset(h, key, policy);
        assert.ok(
          result.snapshot.generation > before.generation,
          `generation ${result.snapshot.generation} after ${before.generation}`,
        );
        const late = await record(h, key, policy, outcomes(before.generation, { failures: 5 }));
        assert.equal(late.stale, true);
        assert.equal(late.transition, null);
        assert.equal(late.snapshot.state, 'closed');
        assert.equal(late.snapshot.counts.failures, 0);
        assert.equal(late.snapshot.generation, result.snapshot.generation);
        const again = await reset(h, key, policy);
        assert.ok(again.snapshot.generation > result.snapshot.generation, 'every reset moves it on');
      });

      test('keeps the operator override; clearing it is force(null)', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        await open(h, key, policy);
        await h.store.force(key, policy, 'forced-open');
        const forced = await reset(h, key, policy);
        assert.equal(forced.snapshot.override, 'forced-open');
        assert.equal(forced.snapshot.circuitState, 'forced-open');
        assert.equal(forced.snapshot.state, 'closed', 'the computed state under the override is reset');
        assert.equal(forced.transition, null, 'callers still see forced-open');
        assert.equal((await acquire(h, key, policy)).reason, 'forced-open');
        const cleared = await h.store.force(key, policy, null);
        assert.equal(cleared.snapshot.circuitState, 'closed');

        const other = `${key}metrics`;
        await h.store.force(other, policy, 'metrics-only');
        const admitted = await acquire(h, other, policy);
        await record(h, other, policy, outcomes(admitted.generation, { failures: 3 }));
        const watched = await reset(h, other, policy);
        assert.equal(watched.snapshot.override, 'metrics-only');
        assert.equal(watched.transition?.from, 'open');
        assert.equal(watched.transition?.to, 'closed');
        assert.equal((await h.store.inspect(other, policy))?.override, 'metrics-only');
      });

      test('a key the store holds nothing for: a fresh closed snapshot, and no record made', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const missing = `${key}never`;
        const result = await reset(h, missing, policy);
        assert.equal(result.stale, false);
        assert.equal(result.transition, null);
        assert.equal(result.snapshot.state, 'closed');
        assert.equal(result.snapshot.override, null);
        assert.equal(result.snapshot.counts.total, 0);
        assert.ok(result.snapshot.generation >= 1);
        assert.equal(await h.store.inspect(missing, policy), null, 'reset must not create a record');
        let cursor: string | null = null;
        do {
          const page = await h.store.list(key, cursor);
          assert.deepEqual(page.keys, [], 'reset must not create a record');
          cursor = page.cursor;
        } while (cursor !== null);
      });

      test('subscribers hear the transition a reset makes, and nothing for one that makes none', async (h, key) => {
        const listening = await listen(h, key);
        if (listening === null) return; // a store that cannot push is polled instead
        const { heard, unsubscribe } = listening;
        const policy = policyOf({ trip: tripped });
        try {
          const { generation } = await acquire(h, key, policy);
          await record(h, key, policy, outcomes(generation, { failures: 1 }));
          await reset(h, key, policy); // closed to closed: nothing to push
          await open(h, key, policy);
          const result = await reset(h, key, policy);
          const deadline = Date.now() + 5_000;
          while (heard.length < 2 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          assert.deepEqual(
            heard.map((m) => `${m.from}->${m.to}`),
            ['closed->open', 'open->closed'],
          );
          const pushed = heard[1]!;
          assert.equal(pushed.generation, result.snapshot.generation);
          assert.equal(pushed.openUntil, 0);
          assert.equal(pushed.override ?? null, null);
        } finally {
          await unsubscribe();
        }
      });
    });

    describe('keys', () => {
      test('names with braces, colons, spaces, unicode or 10 KB are distinct breakers', async (h, key) => {
        const policy = policyOf({ trip: counting });
        const names = [
          `${key}{tenant}`,
          `${key}{tenant`,
          `${key}tenant}`,
          `${key}{}`,
          `${key}a:b:c`,
          `${key}with space`,
          `${key}ünïcödé 🚦`,
          `${key}${'x'.repeat(10_240)}`,
          `${key}${'x'.repeat(10_239)}`,
        ];
        for (const [i, breaker] of names.entries()) {
          const { generation } = await acquire(h, breaker, policy);
          await record(h, breaker, policy, outcomes(generation, { successes: i + 1 }));
        }
        for (const [i, breaker] of names.entries()) {
          assert.equal((await h.store.inspect(breaker, policy))?.counts.successes, i + 1, `name #${i}`);
        }
      });

      test('list pages through every key with a prefix, and only those', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const names = Array.from({ length: 130 }, (_, i) => `${key}tenant:${i}`);
        await Promise.all(
          names.map(async (breaker) => {
            const { generation } = await acquire(h, breaker, policy);
            await record(h, breaker, policy, outcomes(generation, { successes: 1 }));
          }),
        );
        const other = `${key.slice(0, -1)}-other:`;
        await record(
          h,
          other,
          policy,
          outcomes((await acquire(h, other, policy)).generation, { successes: 1 }),
        );
        const found = new Set<string>();
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await h.store.list(key, cursor);
          for (const k of page.keys) found.add(k);
          cursor = page.cursor;
          pages += 1;
          assert.ok(pages < 1_000, 'list must end');
        } while (cursor !== null);
        assert.deepEqual([...found].sort(), [...names].sort());
      });
    });

    describe('corrupt records', () => {
      for (const kind of CORRUPTION_KINDS) {
        test(`a record with ${kind} is reset to a fresh closed breaker, never an error`, async (h, key) => {
          const policy = policyOf({ trip: tripped });
          await open(h, key, policy);
          await h.corrupt(key, kind);
          const admitted = await acquire(h, key, policy);
          assert.equal(admitted.admitted, true);
          assert.equal(admitted.state, 'closed');
          const snapshot = await h.store.inspect(key, policy);
          assert.equal(snapshot?.state, 'closed');
          assert.equal(snapshot?.counts.failures, 0);
          const result = await record(h, key, policy, outcomes(admitted.generation, { failures: 1 }));
          assert.equal(result.stale, false);
          assert.equal(result.snapshot.counts.failures, 1);
        });
      }

      test('a record made anew starts above every generation the old one reached', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const opened = await open(h, key, policy);
        await h.advance(1);
        await h.corrupt(key, 'garbage'); // the record is lost: reset, as after a restart or an eviction
        const admitted = await acquire(h, key, policy);
        assert.ok(
          admitted.generation > opened,
          `generation ${admitted.generation} after ${opened}: breakers would ignore the new record`,
        );
      });
    });

    describe('batch ids', () => {
      test('a batch with an id is counted like one without', async (h, key) => {
        const policy = policyOf({ trip: counting });
        const { generation } = await acquire(h, key, policy);
        const result = await record(h, key, policy, { ...outcomes(generation, { successes: 2 }), id: 'x.1' });
        assert.equal(result.stale, false);
        assert.equal(result.snapshot.counts.successes, 2);
      });

      if (options.idempotentBatches === true) {
        test('a batch re-sent with the same id is counted once, concurrently too', async (h, key) => {
          const policy = policyOf({ trip: consecutiveFailures(100) });
          const { generation } = await acquire(h, key, policy);
          const batch = {
            ...outcomes(generation, { successes: 1, failures: 1, trailingFailures: 1 }),
            id: 'x.2',
          };
          const results = await Promise.all(Array.from({ length: 5 }, () => record(h, key, policy, batch)));
          assert.equal(results.filter((r) => !r.stale).length, 1);
          const snapshot = await h.store.inspect(key, policy);
          assert.equal(snapshot?.counts.successes, 1);
          assert.equal(snapshot?.counts.failures, 1);
          await record(h, key, policy, { ...batch, id: 'x.3' });
          assert.equal((await h.store.inspect(key, policy))?.counts.successes, 2);
        });

        test('numbered batches (idFloor): out of order above the floor each counts, every re-send once', async (h, key) => {
          const policy = policyOf({ trip: consecutiveFailures(100) });
          const { generation } = await acquire(h, key, policy);
          const failure = (id: string, idFloor: number): OutcomeBatch => ({
            ...outcomes(generation, { failures: 1, trailingFailures: 1 }),
            id,
            idFloor,
          });
          const failures = async () => (await h.store.inspect(key, policy))?.counts.failures;
          // Two in flight: the later lands first.
          assert.equal((await record(h, key, policy, failure('w1.2', 1))).stale, false);
          assert.equal((await record(h, key, policy, failure('w1.1', 1))).stale, false);
          assert.equal(await failures(), 2);
          // A later batch raises the floor; re-sends of the earlier ones still count once.
          assert.equal((await record(h, key, policy, failure('w1.3', 3))).stale, false);
          for (const id of ['w1.1', 'w1.2', 'w1.3']) {
            assert.equal((await record(h, key, policy, failure(id, 1))).stale, true, id);
          }
          // Another writer's batch of the same number counts.
          assert.equal((await record(h, key, policy, failure('w2.3', 3))).stale, false);
          assert.equal(await failures(), 4);
        });
      }

      test('a batch with an idFloor is counted like one without', async (h, key) => {
        const policy = policyOf({ trip: counting });
        const { generation } = await acquire(h, key, policy);
        const batch = { ...outcomes(generation, { successes: 2 }), id: 'f.a', idFloor: 7 };
        const result = await record(h, key, policy, batch);
        assert.equal(result.stale, false);
        assert.equal(result.snapshot.counts.successes, 2);
      });
    });

    describe('record then acquire (one round trip)', () => {
      if (options.recordThenAcquire !== true) {
        test('the store has no recordThenAcquire (breakers send the two apart)', async (h) => {
          assert.equal('recordThenAcquire' in h.store && h.store.recordThenAcquire !== undefined, false);
        });
        return;
      }
      const both = async (
        h: ConformanceHarness,
        key: string,
        policy: BreakerPolicy,
        batch: OutcomeBatch,
      ): Promise<{ update: UpdateResult; acquire: AcquireResult }> => {
        const method = h.store.recordThenAcquire?.bind(h.store);
        assert.ok(method !== undefined, 'the store has no recordThenAcquire');
        return method(key, policy, batch);
      };

      test('a healthy tenant: the success resets nothing, the acquire admits, and no record is made', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const first = await h.store.acquire(key, policy);
        assert.equal(first.generation, NO_RECORD);
        const answer = await both(h, key, policy, { ...outcomes(NO_RECORD, { successes: 1 }), id: 'c.1' });
        assert.equal(answer.update.stale, false);
        assert.equal(answer.update.snapshot.state, 'closed');
        assert.equal(answer.acquire.admitted, true);
        assert.equal(answer.acquire.generation, NO_RECORD);
        assert.equal(await h.store.inspect(key, policy), null);
      });

      test('the record lands first: a failure that trips opens, and the acquire after it is rejected', async (h, key) => {
        const policy = policyOf({ trip: tripped });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(generation, { failures: 2 }));
        const answer = await both(h, key, policy, { ...outcomes(generation, { failures: 1 }), id: 'c.2' });
        assert.equal(answer.update.snapshot.state, 'open');
        assert.deepEqual(
          answer.update.transition && [answer.update.transition.from, answer.update.transition.to],
          ['closed', 'open'],
        );
        assert.equal(answer.acquire.admitted, false);
        assert.equal(answer.acquire.reason, 'open');
        assert.equal(answer.acquire.transition, null, 'the transition is reported once, by the record');
        assert.equal(answer.acquire.generation, answer.update.snapshot.generation);
      });

      test('a success resets the run before the acquire reads it; a probe success closes, then the acquire admits closed', async (h, key) => {
        const policy = policyOf({ trip: tripped, halfOpenMaxCalls: 1, successThreshold: 1 });
        const { generation } = await acquire(h, key, policy);
        await record(h, key, policy, outcomes(generation, { failures: 2 }));
        const reset = await both(h, key, policy, {
          ...outcomes(generation, { successes: 1, trailingFailures: 0 }),
          id: 'c.3',
        });
        assert.equal(reset.update.snapshot.counts.consecutiveFailures, 0);
        assert.equal(reset.acquire.admitted, true);
        const probe = await halfOpen(h, key, policy);
        const closing = await both(h, key, policy, {
          ...outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
          id: 'c.4',
        });
        assert.equal(closing.update.snapshot.state, 'closed');
        assert.equal(closing.acquire.admitted, true);
        assert.equal(closing.acquire.state, 'closed');
        assert.equal(closing.acquire.lease, null);
      });

      test('the carried acquire answers as an acquire sent after the record would', async (h, key) => {
        // Under a failure rate every outcome counts; after a close from half-open the breaker has a
        // closedAt; with a limit, an admission takes a slot (never given back here, so many are
        // allowed); metrics-only admits but is an override.
        const rate = failureRate(0.5, { minimumCalls: 1_000, windowMs: 60_000 });
        const cases: { name: string; policy: BreakerPolicy; override?: Override; reclose?: boolean }[] = [
          { name: 'rate', policy: policyOf({ trip: rate }) },
          { name: 'count', policy: policyOf({ trip: tripped }) },
          { name: 'limit', policy: policyOf({ trip: rate, maxConcurrent: 100 }) },
          { name: 'metrics', policy: policyOf({ trip: rate }), override: 'metrics-only' },
          { name: 'reclosed', policy: policyOf({ trip: tripped, successThreshold: 1 }), reclose: true },
        ];
        let n = 10;
        for (const { name, policy, override, reclose } of cases) {
          const k = `${key}-${name}`;
          if (reclose === true) {
            const probe = await halfOpen(h, k, policy);
            const closed = await record(
              h,
              k,
              policy,
              outcomes(probe.generation, { probes: [{ lease: probe.lease!, outcome: 'success' }] }),
            );
            assert.equal(closed.snapshot.state, 'closed');
          }
          const { generation } = await acquire(h, k, policy);
          await record(h, k, policy, outcomes(generation, { failures: 1 }));
          if (override !== undefined) await h.store.force(k, policy, override);
          const g = (await acquire(h, k, policy)).generation;
          for (const batch of [
            outcomes(g, { successes: 1, trailingFailures: 0 }),
            outcomes(g, { failures: 1 }),
            outcomes(g, { successes: 2, failures: 1, trailingFailures: 0 }),
          ]) {
            const carried = await both(h, k, policy, { ...batch, id: `c.${n++}` });
            const after = await h.store.acquire(k, policy);
            const shape = (a: AcquireResult) => ({
              admitted: a.admitted,
              reason: a.reason,
              generation: a.generation,
              state: a.state,
              override: a.override,
              openUntil: a.openUntil,
              lease: a.lease === null,
              slot: (a.slot ?? null) === null,
              consecutiveFailures: a.consecutiveFailures,
              closedAt: a.closedAt,
              transition: a.transition,
            });
            assert.deepEqual(shape(carried.acquire), shape(after), `${name}: ${JSON.stringify(batch)}`);
            if (carried.acquire.consecutiveFailures !== undefined) {
              assert.equal(
                carried.acquire.consecutiveFailures,
                carried.update.snapshot.counts.consecutiveFailures,
              );
            }
            assert.ok(carried.acquire.now >= carried.update.snapshot.now);
          }
        }
      });

      test('a carried batch answers, in both halves, as a record then an acquire sent apart would', async (h, key) => {
        // Two keys set up alike: one gets the batch carried, the other the record and then the
        // acquire. A store may answer the common cases in a shorter form (RedisStore does for a
        // healthy tenant's two paths): what it implies must be what the long form says. Times
        // and generations differ between the keys (each made its record at its own time), so
        // generations are compared as "the key's own" or none.
        const count = policyOf({ trip: tripped });
        const rate = policyOf({ trip: failureRate(0.5, { minimumCalls: 1_000, windowMs: 60_000 }) });
        const limited = policyOf({ trip: rate.trip, maxConcurrent: 100 });
        const success = { successes: 1, trailingFailures: 0 };
        // name, policy, whether the keys have a record (after a failure), the batch, and how far
        // the batch's generation is off the key's (a stale batch).
        const cases: [string, BreakerPolicy, boolean, Partial<OutcomeBatch>, number][] = [
          ['no record, a success', count, false, success, 0],
          ['no record, a stale success', count, false, success, 7],
          ['closed, rate, a success', rate, true, success, 0],
          ['closed, rate, a failure', rate, true, { failures: 1 }, 0],
          ['closed, count, a failure', count, true, { failures: 1 }, 0],
          ['closed, count, a success', count, true, { ...success, successes: 2 }, 0],
          ['closed, a limit', limited, true, { ...success, slow: 1 }, 0],
        ];
        let n = 40;
        for (const [name, policy, made, batch, off] of cases) {
          const keys = [`${key}-${n}-carried`, `${key}-${n}-apart`];
          const generations: number[] = [];
          for (const k of keys) {
            // (The suite's `acquire` makes a record; `store.acquire` does not.)
            let { generation } = await (made ? acquire(h, k, policy) : h.store.acquire(k, policy));
            if (made) {
              await record(h, k, policy, outcomes(generation, { failures: 1 }));
              generation = (await acquire(h, k, policy)).generation;
            }
            generations.push(generation);
          }
          const batchOf = (i: number): OutcomeBatch => ({
            ...outcomes(generations[i]! + off, batch),
            id: `c.${n++}`,
          });
          const carried = await both(h, keys[0]!, policy, batchOf(0));
          const update = await h.store.record(keys[1]!, policy, batchOf(1));
          const acquired = await h.store.acquire(keys[1]!, policy);
          const own = (i: number, generation: number) =>
            generation === generations[i]! && generation !== NO_RECORD ? 'own' : generation;
          const updateShape = (u: UpdateResult, i: number) => ({
            ...u,
            snapshot: { ...u.snapshot, now: 0, generation: own(i, u.snapshot.generation) },
          });
          const acquireShape = (a: AcquireResult, i: number) => ({
            ...a,
            now: 0,
            generation: own(i, a.generation),
            lease: a.lease === null,
            slot: (a.slot ?? null) === null,
          });
          assert.deepEqual(
            updateShape(carried.update, 0),
            updateShape(update, 1),
            `${name}: the record's answer`,
          );
          assert.deepEqual(
            acquireShape(carried.acquire, 0),
            acquireShape(acquired, 1),
            `${name}: the acquire's answer`,
          );
        }
      });

      if (options.idempotentBatches === true) {
        test('a batch carried twice (a re-send after a lost reply) is counted once', async (h, key) => {
          const policy = policyOf({ trip: consecutiveFailures(100) });
          const { generation } = await acquire(h, key, policy);
          const batch = { ...outcomes(generation, { failures: 1 }), id: 'c.5' };
          const first = await both(h, key, policy, batch);
          const again = await both(h, key, policy, batch);
          assert.equal(first.update.stale, false);
          assert.equal(again.update.stale, true);
          assert.equal(again.acquire.admitted, true);
          assert.equal((await h.store.inspect(key, policy))?.counts.failures, 1);
        });
      }
    });

    describe('push', () => {
      test('subscribers hear of a transition, with the key, the states and openUntil', async (h, key) => {
        const listening = await listen(h, key);
        if (listening === null) return; // a store that cannot push is polled instead
        const { heard, unsubscribe } = listening;
        const policy = policyOf({ trip: tripped });
        try {
          const generation = await open(h, key, policy);
          const deadline = Date.now() + 5_000;
          while (heard.length === 0 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          assert.equal(heard.length, 1);
          assert.equal(heard[0]!.from, 'closed');
          assert.equal(heard[0]!.to, 'open');
          assert.equal(heard[0]!.generation, generation);
          assert.equal(heard[0]!.openUntil - heard[0]!.now, policy.openMs);
        } finally {
          await unsubscribe();
        }
      });
    });
  });
}
