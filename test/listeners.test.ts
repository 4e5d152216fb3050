import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BreakerFactory } from '../src/index.js';

describe('event listeners', () => {
  it('belong to the breaker they were added to, though every breaker starts with the same empty list', async () => {
    const factory = new BreakerFactory();
    const [a, b] = [factory.breakerFor('a'), factory.breakerFor('b')];
    const seen: string[] = [];
    const dispose = a.onSuccess((event) => seen.push(event.name));
    await b.execute(() => Promise.resolve(1));
    await a.execute(() => Promise.resolve(1));
    assert.deepEqual(seen, ['a']);
    dispose();
    await a.execute(() => Promise.resolve(1));
    assert.deepEqual(seen, ['a']);
    b.onReject(() => seen.push('reject'));
    a.onFailure(() => seen.push('failure'));
    await b.execute(() => Promise.reject(new Error('x'))).catch(() => undefined);
    assert.deepEqual(seen, ['a']);
  });
});
