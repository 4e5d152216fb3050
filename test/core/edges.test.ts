import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { systemClock } from '../../src/core/clock.js';
import { describeValue } from '../../src/core/describe.js';
import { consecutiveFailures, custom, failureRate } from '../../src/core/policy.js';
import * as reducer from '../../src/core/reducer.js';
import type { BreakerPolicy, Bucket, OutcomeBatch, TripPolicy } from '../../src/core/types.js';
import { currentBucket, windowCounts, windowShape } from '../../src/core/window.js';
import { InvalidOptionError } from '../../src/errors.js';
import { resolveOptions } from '../../src/options.js';

// Behaviour the step-by-step tables leave out, found by mutation testing (`npm run mutation`):
// each case pins down something a store or caller relies on.

const T0 = 1_700_000_000_000;

function policyOf(trip: TripPolicy, extra: Record<string, unknown> = {}): BreakerPolicy {
  return resolveOptions({ trip, openMs: 1_000, jitter: 0, ...extra }).policy;
}

function batch(fields: Partial<OutcomeBatch> = {}): OutcomeBatch {
  return {
    generation: 1,
    successes: 0,
    failures: 0,
    trailingFailures: 0,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
    ...fields,
  };
}

describe('window arithmetic', () => {
  it('windowShape cuts a window into ten buckets of at least 1 ms', () => {
    assert.deepEqual(windowShape(60_000), { bucketMs: 6_000, bucketCount: 10 });
    assert.deepEqual(windowShape(15), { bucketMs: 2, bucketCount: 8 });
    assert.deepEqual(windowShape(3), { bucketMs: 1, bucketCount: 3 });
  });

  it('currentBucket keeps at most bucketCount buckets, drops those out of the window, reuses them', () => {
    const buckets: Bucket[] = [];
    for (const at of [0, 1, 2]) currentBucket(buckets, at, 1, 3).failures += 1;
    assert.deepEqual(
      buckets.map((b) => b.index),
      [0, 1, 2],
    );
    const evicted = buckets[0];
    const next = currentBucket(buckets, 3, 1, 3);
    assert.equal(next, evicted, 'the bucket that left the window is reused');
    assert.deepEqual(next, { index: 3, successes: 0, failures: 0, slow: 0, ignored: 0 });
    assert.deepEqual(
      buckets.map((b) => b.index),
      [1, 2, 3],
    );
    // A gap: 1 and 2 are out of the window ending at 5; 3 is still in it.
    currentBucket(buckets, 5, 1, 3);
    assert.deepEqual(
      buckets.map((b) => b.index),
      [3, 5],
    );
    // Within the same bucket: the same object.
    assert.equal(currentBucket(buckets, 5, 1, 3), buckets[1]);
    // Far later: everything is gone.
    currentBucket(buckets, 100, 1, 3);
    assert.deepEqual(
      buckets.map((b) => b.index),
      [100],
    );
  });

  it('windowCounts of an empty window has a failure rate of 0, and sums every kind', () => {
    const empty = windowCounts({ buckets: [], consecutiveFailures: 0 }, T0, 1_000, 10);
    assert.equal(empty.failureRate, 0);
    const counts = windowCounts(
      {
        buckets: [{ index: T0 / 1_000, successes: 3, failures: 1, slow: 2, ignored: 5 }],
        consecutiveFailures: 1,
      },
      T0,
      1_000,
      10,
    );
    assert.deepEqual(counts, {
      successes: 3,
      failures: 1,
      slow: 2,
      ignored: 5,
      total: 4,
      failureRate: 0.25,
      consecutiveFailures: 1,
    });
  });
});

describe('reducer.record edges', () => {
  const policy = policyOf(consecutiveFailures(2));

  it('a batch that counts nothing adds no bucket', () => {
    const record = reducer.emptyRecord();
    reducer.record(record, policy, T0, batch({ probes: [{ lease: 'x', outcome: 'success' }] }));
    assert.equal(record.buckets.length, 0);
  });

  it('asks to trip only a custom policy', () => {
    const record = reducer.emptyRecord();
    assert.equal(reducer.record(record, policy, T0, batch({ trip: true })).transition, null);
    const customPolicy = policyOf(custom(() => true));
    const other = reducer.emptyRecord();
    assert.deepEqual(reducer.record(other, customPolicy, T0, batch({ trip: true })).transition, {
      from: 'closed',
      to: 'open',
      generation: 2,
    });
  });

  it('a half-open breaker full of probes says when the soonest lease expires', () => {
    const p = policyOf(consecutiveFailures(1), { probeLeaseMs: 500 });
    const record = reducer.emptyRecord();
    reducer.record(record, p, T0, batch({ failures: 1, trailingFailures: 1 }));
    assert.equal(reducer.acquire(record, p, T0 + 1_000, 'a').lease, 'a');
    const full = reducer.acquire(record, p, T0 + 1_100, 'b');
    assert.equal(full.reason, 'half-open-full');
    assert.equal(full.retryAfterMs, 400);
  });
});

describe('reducer.recordClosedOutcome edges', () => {
  const policy = policyOf(consecutiveFailures(3));

  it('counts slow calls, ignored calls and the run of failures', () => {
    const record = reducer.emptyRecord();
    reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', true, 0, 0);
    reducer.recordClosedOutcome(record, policy, T0, 1, 'ignored', false, 0, 0);
    reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0);
    const counts = windowCounts(record, T0, policy.bucketMs, policy.bucketCount);
    assert.equal(counts.slow, 1);
    assert.equal(counts.ignored, 1);
    assert.equal(counts.failures, 2);
    assert.equal(record.consecutiveFailures, 2);
  });

  it('opens on the threshold-th failure in a row, not before', () => {
    const record = reducer.emptyRecord();
    assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0), null);
    assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0), null);
    assert.deepEqual(reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0.5, 0), {
      from: 'closed',
      to: 'open',
      generation: 2,
    });
  });

  it('changes nothing, and says so with undefined, unless closed, without override, at the generation', () => {
    const open = reducer.emptyRecord();
    open.state = 'open';
    const overridden = reducer.emptyRecord();
    overridden.override = 'metrics-only';
    const moved = reducer.emptyRecord();
    moved.generation = 2;
    for (const record of [open, overridden, moved]) {
      assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0), undefined);
      assert.equal(record.buckets.length, 0);
      assert.equal(record.consecutiveFailures, 0);
    }
  });
});

describe('reducer.tripIfDue, force and snapshot edges', () => {
  const policy = policyOf(consecutiveFailures(1));

  it('tripIfDue never re-opens a breaker that is not closed', () => {
    const record = reducer.emptyRecord();
    record.state = 'half-open';
    record.consecutiveFailures = 5;
    const result = reducer.tripIfDue(record, policy, T0, 1, 0);
    assert.equal(result.transition, null);
    assert.equal(record.generation, 1);
  });

  it('force is never stale', () => {
    const record = reducer.emptyRecord();
    assert.equal(reducer.force(record, policy, T0, 'forced-open').stale, false);
    assert.equal(reducer.force(record, policy, T0, 'forced-open').stale, false);
  });

  it('snapshot: retryAfterMs by state, and only leases still running are active', () => {
    const forced = reducer.emptyRecord();
    forced.override = 'forced-open';
    assert.equal(reducer.snapshot(forced, policy, T0).retryAfterMs, policy.openMs);
    const open = reducer.emptyRecord();
    open.state = 'open';
    open.openUntil = T0 + 250;
    assert.equal(reducer.snapshot(open, policy, T0).retryAfterMs, 250);
    assert.equal(reducer.snapshot(open, policy, T0 + 300).retryAfterMs, 0);
    const closed = reducer.emptyRecord();
    closed.openUntil = T0 + 250; // not open: nothing to wait for
    assert.equal(reducer.snapshot(closed, policy, T0).retryAfterMs, 0);
    const half = reducer.emptyRecord();
    half.state = 'half-open';
    half.leases = [
      { id: 'a', expiresAt: T0 - 1 },
      { id: 'b', expiresAt: T0 },
      { id: 'c', expiresAt: T0 + 1 },
    ];
    assert.equal(reducer.snapshot(half, policy, T0).activeProbes, 1, 'a lease expiring now has expired');
  });
});

describe('reducer.isValidRecord', () => {
  const good = reducer.emptyRecord();

  it('accepts every state and override', () => {
    for (const state of ['closed', 'open', 'half-open'] as const) {
      for (const override of [null, 'forced-open', 'forced-closed', 'metrics-only'] as const) {
        assert.equal(reducer.isValidRecord({ ...good, state, override }), true, `${state} ${override}`);
      }
    }
    assert.equal(
      reducer.isValidRecord({
        ...good,
        leases: [{ id: 'a', expiresAt: 5 }],
        buckets: [{ index: -3, successes: 1, failures: 0, slow: 0, ignored: 0 }],
      }),
      true,
    );
  });

  it('refuses null, other states and overrides, and malformed leases, buckets and counts', () => {
    for (const bad of [
      null,
      undefined,
      'record',
      { ...good, state: 'ajar' },
      { ...good, override: 'forced' },
      { ...good, override: undefined },
      { ...good, leases: [null] },
      { ...good, leases: ['a=5'] },
      { ...good, leases: [{ id: 7, expiresAt: 5 }] },
      { ...good, leases: [{ id: 'a', expiresAt: -1 }] },
      { ...good, buckets: [null] },
      { ...good, buckets: ['0:1:0:0:0'] },
      { ...good, buckets: [{ index: 0.5, successes: 0, failures: 0, slow: 0, ignored: 0 }] },
      { ...good, reopens: '1' },
      { ...good, probeSuccesses: 1.5 },
      { ...good, generation: 0 },
    ]) {
      assert.equal(reducer.isValidRecord(bad), false, describeValue(bad));
    }
  });
});

describe('small pieces', () => {
  it('systemClock reads the wall clock', () => {
    const before = Date.now();
    const now = systemClock.now();
    assert.ok(now >= before && now <= Date.now());
  });

  it('describeValue shows a value of up to 60 characters whole', () => {
    const sixty = 'x'.repeat(58); // quoted: 60 characters
    assert.equal(describeValue(sixty), `\`"${sixty}"\` (string)`);
  });

  it('the helpers type-check every argument', () => {
    assert.throws(() => consecutiveFailures('5' as never), InvalidOptionError);
    assert.throws(
      () => consecutiveFailures('5' as never),
      /^InvalidOptionError: Expected `consecutiveFailures` threshold to be a number, got `"5"` \(string\)$/,
    );
    assert.throws(
      () => failureRate(0.5, { minimumCalls: 1, windowMs: '1s' } as never),
      /`failureRate` options/,
    );
  });
});
