import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey, decodeName, encodeName, validatePrefix } from '../../src/stores/redis/keys.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { consecutiveFailures } from '../../src/index.js';
import { useRedisServer } from '../helpers/redis-server.js';

describe('Redis keys', () => {
  it('hash-tag the hex of the name after the prefix; decode back; refuse braces in the prefix', () => {
    for (const name of ['t', '{t}', 'a:b', 'ünï 🚦', 'x'.repeat(10_240), '\ud800 lone surrogate']) {
      const key = breakerKey('app:', name);
      assert.ok(key.startsWith('app:{') && key.endsWith('}'));
      assert.equal(key.slice(5, -1).includes('{'), false);
      assert.equal(decodeName(encodeName(name)), name);
    }
    assert.notEqual(encodeName('\ud800'), encodeName('\ufffd'), 'a lone surrogate is not its replacement');
    assert.throws(() => validatePrefix('app:{x}:'), /prefix/);
    assert.throws(() => new RedisStore({ client: {} as never }), /client/);
  });
});

describe('Redis records', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  it('carry a GC TTL longer than the window plus the longest open period, and never end an open period early', async () => {
    const store = new RedisStore({ client, prefix: 'ttl:' });
    const policy = policyOf({
      trip: consecutiveFailures(1),
      openMs: 1_000,
      backoff: { multiplier: 2, maxOpenMs: 20_000 },
      jitter: 0.5,
      probeLeaseMs: 5_000,
    });
    const { generation } = await store.acquire('quiet', policy);
    await store.record('quiet', policy, outcomes(generation)); // an empty batch makes the record
    const longest = policy.windowMs + 20_000 * 1.5 + 5_000;
    assert.ok((await client.pttl(breakerKey('ttl:', 'quiet'))) > longest);
    // An open period made far longer than the policy's by a jitter function still outlives it.
    const g = (await store.acquire('long', policy)).generation;
    const opened = await store.record('long', policy, outcomes(g, { failures: 1, jitterMs: 10 * longest }));
    assert.ok(
      (await client.pttl(breakerKey('ttl:', 'long'))) > opened.snapshot.openUntil - opened.snapshot.now,
    );
    // An operator's override is kept until cleared.
    await store.force('quiet', policy, 'forced-open');
    assert.equal(await client.pttl(breakerKey('ttl:', 'quiet')), -1);
  });

  it('that are corrupt are reset with a warning through the logger', async () => {
    const warnings: unknown[] = [];
    const store = new RedisStore({
      client,
      prefix: 'warn:',
      logger: { warn: (fields) => warnings.push(fields), error: () => undefined },
    });
    await client.hset(breakerKey('warn:', 'bad'), 'v', '1', 'state', 'sideways');
    const policy = policyOf();
    assert.equal((await store.acquire('bad', policy)).state, 'closed');
    assert.equal((await store.acquire('bad', policy)).state, 'closed');
    assert.deepEqual(
      warnings,
      [{ breaker: 'bad', key: breakerKey('warn:', 'bad') }],
      'reset once, reported once',
    );
  });

  it('a reply of the wrong shape is a StoreError, not a crash (functions and scripts)', async () => {
    const wrong = async () => ['acquire', 'not-a-number'];
    for (const fake of [
      { fcall: wrong, evalsha: async () => null, eval: async () => null },
      { evalsha: wrong, eval: async () => null }, // a client without fcall uses EVALSHA
    ]) {
      const store = new RedisStore({ client: fake as never });
      await assert.rejects(
        store.acquire('x', policyOf()),
        (e: Error & { code?: string }) => e.code === 'STORE_ERROR',
      );
    }
  });
});
