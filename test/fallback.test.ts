import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { LocalFallback } from '../src/fallback.js';
import { resolveOptions } from '../src/options.js';
import { outcomes } from '../src/testing/conformance.js';

const policy = resolveOptions({}).policy;

describe('LocalFallback: outcomes kept while the store did not answer', () => {
  it('keeps outcomes admitted under generation 0 apart: a later generation does not replace them', () => {
    const fallback = new LocalFallback();
    // Admitted while the store held no record (or before it answered), then under the record's
    // generation once another process made it: both are kept, neither fences the other off.
    fallback.keep(outcomes(0, { successes: 3 }), false, 0);
    fallback.keep(outcomes(170_000_000_000_000, { successes: 2, failures: 1 }), false, 0);
    fallback.keep(outcomes(0, { successes: 1 }), false, 0);
    assert.equal(fallback.unsentGeneration, 0);
    const batches = fallback.take(170_000_000_000_000, policy, () => 0);
    const total = batches.reduce((n, b) => n + b.successes, 0);
    assert.equal(total, 6, 'no outcome dropped');
    assert.equal(
      batches.reduce((n, b) => n + b.failures, 0),
      1,
    );
    assert.equal(fallback.holdsOutcomes, false);
  });

  it('still lets a newer generation replace an older one (the store would fence the old off)', () => {
    const fallback = new LocalFallback();
    fallback.keep(outcomes(170_000_000_000_001, { successes: 3 }), false, 0);
    fallback.keep(outcomes(170_000_000_000_002, { successes: 2 }), false, 0);
    const batches = fallback.take(170_000_000_000_002, policy, () => 0);
    assert.deepEqual(
      batches.map((b) => [b.generation, b.successes]),
      [[170_000_000_000_002, 2]],
    );
  });
});
