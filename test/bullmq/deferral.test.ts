import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { PARKED_DELAY_FACTOR, ProberRule, rampSlot } from '../../src/bullmq/deferral.js';

describe('bullmq deferral', () => {
  it('the prober rule: the first job deferred while none is due back keeps the delay, the others are parked', () => {
    const rule = new ProberRule<string>(new Map());
    assert.equal(rule.delayWhileOpen('a', 1_000, 0), 1_000, 'the first brings the probe');
    assert.equal(rule.delayWhileOpen('a', 1_000, 10), 1_000 * PARKED_DELAY_FACTOR);
    assert.equal(rule.delayWhileOpen('a', 500, 999), 500 * PARKED_DELAY_FACTOR, 'due at 1000: still parked');
    assert.equal(rule.delayWhileOpen('b', 700, 20), 700, 'each key has its own prober');
    // Once the prober is due back (at 1000, not after), the next job brings the next probe.
    assert.equal(rule.delayWhileOpen('a', 800, 1_000), 800);
    assert.equal(rule.delayWhileOpen('a', 800, 1_799), 800 * PARKED_DELAY_FACTOR);
    assert.equal(rule.delayWhileOpen('a', 800, 1_800), 800);
  });

  it('the prober rule takes a WeakMap of breakers, and a first job at any time (even before 0) is the prober', () => {
    const breaker = {};
    const rule = new ProberRule<object>(new WeakMap());
    assert.equal(rule.delayWhileOpen(breaker, 100, -50), 100);
    assert.equal(rule.delayWhileOpen(breaker, 100, 0), 100 * PARKED_DELAY_FACTOR);
    assert.equal(rule.delayWhileOpen({}, 100, 0), 100, 'another breaker');
  });

  it('rampSlot spreads n jobs over the ramp, later ones closer together, all at once without a ramp', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => rampSlot(0, i, 4)),
      [0, 0, 0, 0],
    );
    const slots = [0, 1, 2, 3].map((i) => rampSlot(4_000, i, 4));
    assert.deepEqual(slots, [1_414, 2_449, 3_162, 3_741]);
    const gaps = slots.slice(1).map((slot, i) => slot - slots[i]!);
    assert.ok(
      gaps.every((gap, i) => i === 0 || gap < gaps[i - 1]!),
      `gaps shrink: ${gaps.join(', ')}`,
    );
  });
});
