import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory, isCircuitOpenError } from '../src/index.js';

describe('a breaker with default options', () => {
  it('passes a call through and returns its value', async () => {
    const breaker = new BreakerFactory().breakerFor('smoke');
    assert.equal(await breaker.execute(() => Promise.resolve(42)), 42);
    assert.equal(isCircuitOpenError(new Error('x')), false);
  });
});
