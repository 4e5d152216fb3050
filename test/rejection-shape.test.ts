import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';

import { BreakerFactory, CircuitOpenError, consecutiveFailures, isCircuitOpenError } from '../src/index.js';

// Rejections are built without the Error constructor (it costs most of a rejection). They must
// still look and behave like any error to the code that catches them.
describe('a rejection', () => {
  it('is a CircuitOpenError with the fields, message and stack line an error has', async () => {
    const breaker = new BreakerFactory({ trip: consecutiveFailures(1), openMs: 60_000 }).breakerFor(
      'tenant-7',
    );
    await assert.rejects(
      breaker.execute(() => Promise.reject(new Error('down'))),
      /down/,
    );
    const error = await breaker.execute(() => Promise.resolve(1)).catch((e: unknown) => e);
    assert.ok(error instanceof Error);
    assert.ok(error instanceof CircuitOpenError);
    assert.ok(isCircuitOpenError(error));
    assert.equal(error.name, 'CircuitOpenError');
    assert.equal(error.code, 'CIRCUIT_OPEN');
    assert.equal(error.breakerName, 'tenant-7');
    assert.equal(error.reason, 'open');
    assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 60_000 * 1.1);
    assert.equal(error.message, 'Circuit breaker "tenant-7" rejected the call (open)');
    assert.equal(error.stack, `CircuitOpenError: ${error.message}`);
    assert.equal(String(error), `CircuitOpenError: ${error.message}`);
    assert.match(inspect(error), /CircuitOpenError: Circuit breaker "tenant-7" rejected the call \(open\)/);
    assert.deepEqual(JSON.parse(JSON.stringify(error)), {
      name: 'CircuitOpenError',
      code: 'CIRCUIT_OPEN',
      breakerName: 'tenant-7',
      reason: 'open',
      retryAfterMs: error.retryAfterMs,
    });
    error.message = 'rewritten by a caller';
    assert.equal(error.message, 'rewritten by a caller');
    const next = await breaker.execute(() => Promise.resolve(1)).catch((e: unknown) => e);
    assert.equal((next as Error).message, 'Circuit breaker "tenant-7" rejected the call (open)');
  });
});
