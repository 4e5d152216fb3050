import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  consecutiveFailures,
  custom,
  failureRate,
  failuresInWindow,
  outcomesCanTrip,
  shouldTrip,
} from '../../src/core/policy.js';
import * as reducer from '../../src/core/reducer.js';
import type { BreakerPolicy, Bucket, OutcomeBatch, TripPolicy, WindowCounts } from '../../src/core/types.js';
import { currentBucket, windowCounts } from '../../src/core/window.js';
import { resolveOptions } from '../../src/options.js';

// Trip policies and the window they count in (issue 11: a clock that stepped back, exact failure
// rates, a failure rate tripped by a success).

const T0 = 1_700_000_000_000;

function policyOf(trip: TripPolicy): BreakerPolicy {
  return resolveOptions({ trip, openMs: 1_000, jitter: 0 }).policy;
}

function batch(successes: number, failures: number, generation = 1): OutcomeBatch {
  return {
    generation,
    successes,
    failures,
    trailingFailures: failures,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
  };
}

function counts(successes: number, failures: number, consecutive = 0): WindowCounts {
  const total = successes + failures;
  return {
    successes,
    failures,
    slow: 0,
    ignored: 0,
    total,
    failureRate: total === 0 ? 0 : failures / total,
    consecutiveFailures: consecutive,
  };
}

describe('windowCounts when the clock stepped back', () => {
  const bucketMs = 1_000;
  const bucketCount = 10;

  it('counts outcomes that went into a bucket newer than now', () => {
    const record: { buckets: Bucket[]; consecutiveFailures: number } = {
      buckets: [],
      consecutiveFailures: 0,
    };
    currentBucket(record.buckets, T0, bucketMs, bucketCount).successes += 1;
    const behind = T0 - 2_000;
    for (let i = 0; i < 10; i++) currentBucket(record.buckets, behind, bucketMs, bucketCount).failures += 1;
    const c = windowCounts(record, behind, bucketMs, bucketCount);
    assert.equal(c.failures, 10);
    assert.equal(c.successes, 1);
    assert.equal(c.total, 11);
  });

  it('keeps a window of bucketCount buckets ending at the newest bucket', () => {
    const newest = T0 / bucketMs;
    const bucket = (index: number, failures: number) => ({
      index,
      successes: 0,
      failures,
      slow: 0,
      ignored: 0,
    });
    const record = {
      buckets: [bucket(newest - 10, 100), bucket(newest - 9, 1), bucket(newest, 2)],
      consecutiveFailures: 0,
    };
    // 5 s behind the newest bucket: the window is [newest - 9, newest], not [.. - 14, .. - 5].
    assert.equal(windowCounts(record, T0 - 5_000, bucketMs, bucketCount).failures, 3);
    // At the newest bucket's time, the same.
    assert.equal(windowCounts(record, T0, bucketMs, bucketCount).failures, 3);
    // Later, the window ends at now.
    assert.equal(windowCounts(record, T0 + 9_000, bucketMs, bucketCount).failures, 2);
    assert.equal(windowCounts(record, T0 + 10_000, bucketMs, bucketCount).failures, 0);
    assert.equal(windowCounts({ buckets: [], consecutiveFailures: 4 }, T0, bucketMs, bucketCount).total, 0);
  });

  it('trips failuresInWindow(3) on 10 failures counted 2 s behind (reducer.record)', () => {
    const policy = policyOf(failuresInWindow(3, 10_000));
    const record = reducer.emptyRecord();
    reducer.record(record, policy, T0, batch(1, 0));
    let opened = false;
    for (let i = 0; i < 10 && !opened; i++) {
      opened = reducer.record(record, policy, T0 - 2_000, batch(0, 1)).transition !== null;
    }
    assert.equal(record.state, 'open');
    assert.equal(record.generation, 2);
  });

  it('trips failuresInWindow(3) on failures counted 2 s behind (recordClosedOutcome)', () => {
    const policy = policyOf(failuresInWindow(3, 10_000));
    const record = reducer.emptyRecord();
    reducer.recordClosedOutcome(record, policy, T0, 1, 'success', false, 0, 0);
    assert.equal(reducer.recordClosedOutcome(record, policy, T0 - 2_000, 1, 'failure', false, 0, 0), null);
    assert.equal(reducer.recordClosedOutcome(record, policy, T0 - 2_000, 1, 'failure', false, 0, 0), null);
    assert.deepEqual(reducer.recordClosedOutcome(record, policy, T0 - 2_000, 1, 'failure', false, 0, 0), {
      from: 'closed',
      to: 'open',
      generation: 2,
    });
  });
});

describe('failureRate compares failures / calls with the ratio exactly', () => {
  const cases: Array<[ratio: number, failures: number, total: number, trips: boolean]> = [
    [0.55, 55, 100, true],
    [0.55, 54, 100, false],
    [0.28, 7, 25, true],
    [0.28, 6, 25, false],
    [0.1, 1, 10, true],
    [0.3, 3, 10, true],
    [0.7, 7, 10, true],
    [1, 10, 10, true],
    [1, 9, 10, false],
    [0.5, 5, 10, true],
    [0.5, 4, 9, false],
  ];
  for (const [ratio, failures, total, trips] of cases) {
    it(`${failures}/${total} at ${ratio} ${trips ? 'trips' : 'does not trip'}`, () => {
      const trip = failureRate(ratio, { minimumCalls: total, windowMs: 60_000 });
      assert.equal(shouldTrip(trip, counts(total - failures, failures)), trips);
    });
  }

  it('every k/n equal to a two-decimal ratio trips, for n up to 200', () => {
    for (let n = 1; n <= 200; n++) {
      for (let k = 1; k <= n; k++) {
        if ((k * 100) % n !== 0) continue;
        const ratio = (k * 100) / n / 100;
        const trip = failureRate(ratio, { minimumCalls: n, windowMs: 60_000 });
        assert.equal(shouldTrip(trip, counts(n - k, k)), true, `${k}/${n} at ${ratio}`);
        if (k > 1)
          assert.equal(shouldTrip(trip, counts(n - k + 1, k - 1)), false, `${k - 1}/${n} at ${ratio}`);
      }
    }
  });

  it('waits for minimumCalls', () => {
    const trip = failureRate(0.5, { minimumCalls: 10, windowMs: 60_000 });
    assert.equal(shouldTrip(trip, counts(0, 9)), false);
    assert.equal(shouldTrip(trip, counts(1, 9)), true);
    assert.equal(shouldTrip(trip, counts(0, 0)), false);
  });
});

describe('the other policies', () => {
  it('consecutiveFailures looks at the run, failuresInWindow at the window, custom never trips here', () => {
    assert.equal(shouldTrip(consecutiveFailures(3), counts(5, 5, 2)), false);
    assert.equal(shouldTrip(consecutiveFailures(3), counts(0, 0, 3)), true);
    assert.equal(shouldTrip(failuresInWindow(3, 1_000), counts(0, 2, 9)), false);
    assert.equal(shouldTrip(failuresInWindow(3, 1_000), counts(0, 3, 0)), true);
    assert.equal(
      shouldTrip(
        custom(() => true),
        counts(0, 100, 100),
      ),
      false,
    );
  });

  it('outcomesCanTrip: failures always, successes only under a failure rate', () => {
    const rate = failureRate(0.5, { minimumCalls: 1, windowMs: 1_000 });
    assert.equal(outcomesCanTrip(rate, 1, 0), true);
    assert.equal(outcomesCanTrip(rate, 0, 1), true);
    assert.equal(outcomesCanTrip(rate, 0, 0), false);
    for (const trip of [consecutiveFailures(1), failuresInWindow(1, 1_000), custom(() => true)]) {
      assert.equal(outcomesCanTrip(trip, 1, 0), false, trip.kind);
      assert.equal(outcomesCanTrip(trip, 0, 1), true, trip.kind);
      assert.equal(outcomesCanTrip(trip, 0, 0), false, trip.kind);
    }
  });
});

describe('a failure rate trips on a success too', () => {
  const policy = policyOf(failureRate(0.5, { minimumCalls: 10, windowMs: 60_000 }));

  it('reducer.record: 9 failures then 1 success open it', () => {
    const record = reducer.emptyRecord();
    assert.equal(reducer.record(record, policy, T0, batch(0, 9)).transition, null);
    const result = reducer.record(record, policy, T0 + 1, { ...batch(1, 0), random: 0.5 });
    assert.deepEqual(result.transition, { from: 'closed', to: 'open', generation: 2 });
    assert.equal(result.snapshot.counts.total, 10);
    assert.equal(record.openUntil, T0 + 1 + 1_000);
  });

  it('reducer.recordClosedOutcome: 9 failures then 1 success open it, with the given jitter', () => {
    const record = reducer.emptyRecord();
    for (let i = 0; i < 9; i++) {
      assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0), null);
    }
    assert.deepEqual(reducer.recordClosedOutcome(record, policy, T0 + 1, 1, 'success', false, 0, 7), {
      from: 'closed',
      to: 'open',
      generation: 2,
    });
    assert.equal(record.openUntil, T0 + 1 + 1_000 + 7);
    assert.equal(record.consecutiveFailures, 0);
  });

  it('reducer.recordClosedOutcome: a success below the ratio, or an ignored call, does not', () => {
    const record = reducer.emptyRecord();
    for (let i = 0; i < 4; i++) reducer.recordClosedOutcome(record, policy, T0, 1, 'failure', false, 0, 0);
    for (let i = 0; i < 6; i++) {
      assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'success', false, 0, 0), null);
    }
    for (let i = 0; i < 20; i++) {
      assert.equal(reducer.recordClosedOutcome(record, policy, T0, 1, 'ignored', false, 0, 0), null);
    }
    assert.equal(record.state, 'closed');
  });

  it('reducer.tripIfDue opens on counts a success completed (a store that counted atomically)', () => {
    const counted = reducer.emptyRecord();
    counted.buckets = [{ index: T0 / policy.bucketMs, successes: 1, failures: 9, slow: 0, ignored: 0 }];
    const result = reducer.tripIfDue(counted, policy, T0, 1, 0);
    assert.deepEqual(result.transition, { from: 'closed', to: 'open', generation: 2 });
  });

  it('other policies do not sum the window on a success', () => {
    const inWindow = policyOf(failuresInWindow(2, 10_000));
    const record = reducer.emptyRecord();
    // Two failures counted under another policy: failuresInWindow(2) would trip on them, but a
    // success is not evaluated under it (only a failure could have raised the count).
    record.buckets = [{ index: T0 / inWindow.bucketMs, successes: 0, failures: 2, slow: 0, ignored: 0 }];
    assert.equal(reducer.recordClosedOutcome(record, inWindow, T0, 1, 'success', false, 0, 0), null);
    assert.equal(reducer.record(record, inWindow, T0, batch(1, 0)).transition, null);
    assert.equal(record.state, 'closed');
  });
});
