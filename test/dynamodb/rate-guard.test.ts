import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { RATE_MAX_CALLS, rateScore } from '../../src/stores/dynamodb/dynamodb-store.js';
import { failureRate, shouldTrip } from '../../src/core/policy.js';
import { windowCounts } from '../../src/core/window.js';

/** Whether a failure rate of `ratio` trips on these counts, as the reducer decides it. */
function trips(ratio: number, successes: number, failures: number): boolean {
  const counts = windowCounts(
    { buckets: [{ index: 0, successes, failures, slow: 0, ignored: 0 }], consecutiveFailures: 0 },
    0,
    1_000,
    10,
  );
  return shouldTrip(failureRate(ratio, { minimumCalls: 1, windowMs: 10_000 }), counts);
}

describe('DynamoDBStore failure-rate guard (wx)', () => {
  it('a score below -1 means the rate does not trip', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.double({ min: 0.000001, max: 1, noNaN: true }),
          fc.constantFrom(0.5, 0.55, 0.1, 0.3, 1 / 3, 2 / 3, 0.9, 0.99, 0.999999, 1),
        ),
        fc.integer({ min: 0, max: 2 ** 24 }),
        fc.integer({ min: 0, max: 2 ** 24 }),
        (ratio, successes, failures) => {
          fc.pre(successes + failures > 0 && successes + failures <= RATE_MAX_CALLS);
          if (rateScore(ratio, successes, failures) < -1)
            assert.equal(trips(ratio, successes, failures), false);
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('counts exactly at the ratio, and one failure short of it, are told apart the safe way', () => {
    // At the ratio the policy trips: the score must not be below -1 there (the guard would let
    // the tripping count through). One failure fewer the rate is below: the guard may refuse
    // (a whole write, still exact), so only the first is a must.
    for (const [ratio, calls] of [
      [0.5, 4],
      [0.55, 100],
      [0.1, 10],
      [0.25, 1_000_000],
      [1, 7],
      [0.6, 5],
    ] as const) {
      const failures = Math.ceil(ratio * calls - 1e-9);
      assert.equal(trips(ratio, calls - failures, failures), true, `${failures} of ${calls} trips ${ratio}`);
      assert.ok(rateScore(ratio, calls - failures, failures) >= -1, `${failures} of ${calls} at ${ratio}`);
    }
    // Far below the ratio the guard lets counts through (else every count is a whole write).
    assert.ok(rateScore(0.5, 90, 10) < -1);
    assert.ok(rateScore(0.1, 1_000, 50) < -1);
  });
});
