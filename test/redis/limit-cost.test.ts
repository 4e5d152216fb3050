import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { BreakerFactory, adaptiveThrottle, failuresInWindow, isCircuitOpenError } from '../../src/index.js';
import type { BreakerOptions } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedisServer } from '../helpers/redis-server.js';

// What the concurrency limit and adaptive throttling cost per call on Redis (issue 27): the limit
// at most two round trips (the acquire that takes the slot, the write that gives it back), and
// throttling in local-first mode no command a breaker without it would not send.

/** Scripts clients ran (every store call is one), from the server's own count. */
async function scripts(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  let n = 0;
  for (const match of info.matchAll(/^cmdstat_(fcall|fcall_ro|evalsha|eval):calls=(\d+)/gm))
    n += Number(match[2]);
  return n;
}

describe('what a concurrency limit and throttling cost on Redis', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  /** Commands sent for `calls` calls, the i-th failing when `fail(i)`; and what was rejected. */
  async function run(options: BreakerOptions, calls: number, fail: (i: number) => boolean) {
    const store = new RedisStore({ client, prefix: `cost-${randomUUID()}:` });
    const factory = new BreakerFactory({ store, ...options });
    const breaker = factory.breakerFor('api');
    await breaker.execute(() => Promise.resolve('warm')); // the factory's first store calls
    await breaker.flush();
    const before = await scripts(client);
    let rejected = 0;
    for (let i = 0; i < calls; i++) {
      await breaker
        .execute(() => (fail(i) ? Promise.reject(new Error('down')) : Promise.resolve('ok')))
        .catch((error: unknown) => {
          if (isCircuitOpenError(error)) rejected += 1;
        });
    }
    await breaker.flush();
    const commands = (await scripts(client)) - before;
    await factory.close();
    return { commands, rejected };
  }

  it('maxConcurrent: two round trips a call, successes and failures alike', async (t) => {
    const trip = failuresInWindow(1_000_000, 60_000);
    const limited = await run({ trip, maxConcurrent: 4 }, 200, (i) => i % 2 === 0);
    const unlimited = await run({ trip }, 200, (i) => i % 2 === 0);
    t.diagnostic(`200 calls: ${limited.commands} commands with maxConcurrent, ${unlimited.commands} without`);
    assert.equal(limited.rejected, 0);
    assert.ok(limited.commands <= 2 * 200, `${limited.commands} commands for 200 calls`);
    assert.ok(limited.commands >= 2 * 200, 'each call takes its slot and gives it back');
  });

  it('adaptiveThrottle, local-first: no command a breaker without it would send', async (t) => {
    const localFirst = { maxStalenessMs: 60_000, flushIntervalMs: 60_000 };
    const fail = (i: number): boolean => i % 5 < 3; // 60 % of calls fail
    const throttled = await run({ ...localFirst, trip: adaptiveThrottle({ minimumCalls: 10 }) }, 300, fail);
    const plain = await run({ ...localFirst, trip: failuresInWindow(1_000_000, 60_000) }, 300, fail);
    t.diagnostic(
      `300 calls, 60 % failing: ${throttled.commands} commands throttled (${throttled.rejected} turned away), ${plain.commands} without`,
    );
    assert.ok(throttled.rejected > 0, 'it throttled');
    assert.ok(throttled.commands <= plain.commands, `${throttled.commands} > ${plain.commands}`);
  });
});
