import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { createTurnClock } from '../src/turn-clock.js';

describe('the turn clock (the default MemoryStore clock)', () => {
  const realNow = Date.now;
  let samples = 0;
  beforeEach(() => {
    samples = 0;
    Date.now = () => 1_000 + ++samples;
  });
  afterEach(() => {
    Date.now = realNow;
  });

  it('reuses one sample for at most 32 reads within a turn', () => {
    const clock = createTurnClock();
    const reads = Array.from({ length: 65 }, () => clock.now());
    assert.deepEqual(new Set(reads.slice(0, 32)), new Set([1_001]));
    assert.deepEqual(new Set(reads.slice(32, 64)), new Set([1_002]));
    assert.equal(reads[64], 1_003);
  });

  it('reads the clock again after the turn ends', async () => {
    const clock = createTurnClock();
    assert.equal(clock.now(), 1_001);
    assert.equal(clock.now(), 1_001);
    await new Promise((resolve) => setImmediate(resolve));
    // A new sample (the runtime may have read Date.now() meanwhile too).
    assert.ok(clock.now() > 1_001);
  });
});
