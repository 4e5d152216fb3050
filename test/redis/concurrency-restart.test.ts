import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

// What a Redis restart without persistence does to maxConcurrent (issue 27), as
// docs/failure-semantics.md says: the slots of the calls in flight are lost with the record, so
// until those calls finish, up to twice the limit run; their late releases free nobody else's
// slot, and the limit holds again once they are done.
describe('maxConcurrent through a Redis restart', { timeout: 60_000 }, () => {
  let server: RedisServer;
  useRedisServer((s) => {
    server = s;
  });

  it('the calls in flight are forgotten: at most twice the limit, then the limit again', async () => {
    const client = server.client();
    client.on('error', () => undefined);
    const factory = new BreakerFactory({
      store: new RedisStore({ client, prefix: `slots-${randomUUID()}:` }),
      storeTimeoutMs: 5_000,
      trip: consecutiveFailures(1_000),
      maxConcurrent: 2,
      concurrencyLeaseMs: 30_000,
    });
    const breaker = factory.breakerFor('api');
    const held: (() => void)[] = [];
    const hold = (): Promise<string> =>
      breaker.execute(() => new Promise<string>((resolve) => held.push(() => resolve('done'))));
    const reasonOf = async (call: Promise<unknown>): Promise<string> => {
      try {
        await call;
        return 'ran';
      } catch (error) {
        return isCircuitOpenError(error) ? error.reason : `failed: ${String(error)}`;
      }
    };
    const until = async (n: number): Promise<void> => {
      while (held.length < n) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    try {
      const before = [hold(), hold()];
      await until(2);
      assert.equal(await reasonOf(breaker.execute(() => Promise.resolve('x'))), 'concurrency-limit');

      await server.kill();
      await server.restart();
      // The record and its two slots are gone: two more calls get slots.
      const after = [hold(), hold()];
      await until(4);
      assert.equal(await reasonOf(breaker.execute(() => Promise.resolve('x'))), 'concurrency-limit');

      // The two calls from before the restart finish: their slots are not in the record, and
      // giving them back frees none of the two taken since.
      held[0]!();
      held[1]!();
      assert.deepEqual(await Promise.all(before), ['done', 'done']);
      await breaker.flush();
      assert.equal(await reasonOf(breaker.execute(() => Promise.resolve('x'))), 'concurrency-limit');

      held[2]!();
      held[3]!();
      assert.deepEqual(await Promise.all(after), ['done', 'done']);
      await breaker.flush();
      assert.equal(await reasonOf(breaker.execute(() => Promise.resolve('x'))), 'ran');
    } finally {
      for (const release of held) release();
      await factory.close();
      client.disconnect();
    }
  });
});
