import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey, decodeName, encodeName, validatePrefix } from '../../src/stores/redis/keys.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { consecutiveFailures, failureRate } from '../../src/index.js';

/** Successes and failures over a buckets field. */
function sum(field: string): number {
  return field === ''
    ? 0
    : field.split(',').reduce((t, e) => t + Number(e.split(':')[1]) + Number(e.split(':')[2]), 0);
}
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

  it('read buckets strictly: any stray character, empty entry or sixth number is corrupt', async () => {
    const reset: string[] = [];
    const store = new RedisStore({ client, prefix: 'buckets:', onCorruptRecord: (name) => reset.push(name) });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const key = breakerKey('buckets:', 'b');
    const index = Math.floor(Date.now() / policy.bucketMs);
    const bucket = (i: number, f: number) => `${i}:0:${f}:0:0`;
    // A failure recorded onto a record whose buckets field is `buckets`: its failures after.
    const record = async (buckets: string) => {
      await client.del(key);
      await client.hset(key, 'v', '1', 'state', 'closed', 'gen', '100', 'buckets', buckets);
      const failure = { ...outcomes(100, { failures: 1 }), id: 'a.1', idFloor: 1 };
      return (await store.record('b', policy, failure)).snapshot.counts.failures;
    };
    assert.equal(await record(`${bucket(index - 1, 2)},${bucket(index, 3)}`), 6);
    assert.equal(await record(bucket(index, 3)), 4);
    assert.deepEqual(reset, []);
    for (const bad of [
      `${bucket(index - 1, 2)}:${bucket(index, 3)}`, // ':' between entries
      `${bucket(index - 1, 2)}-${bucket(index, 3)}`, // '-' between entries
      `${bucket(index - 1, 2)},`,
      `,${bucket(index, 3)}`,
      `${bucket(index - 1, 2)},,${bucket(index, 3)}`,
      `${bucket(index, 3)}:0`,
      `x${bucket(index, 3)}`,
      `${bucket(index, 3)} `,
      `${index}:0:${'9'.repeat(17)}:0:0`,
    ]) {
      reset.length = 0;
      // Reset: a fresh record, of which the batch (admitted under the old generation) is stale.
      assert.equal(await record(bad), 0, bad);
      assert.deepEqual(reset, ['b'], bad);
    }
  });

  it('a counted write rewrites only the newest bucket, leaving the field as a whole write would', async () => {
    // The hot path takes the other buckets' text as it was (encode_counted): through buckets
    // dropped from the front, a new one, a gap and the clock stepping back, the field must say
    // exactly what every outcome sent added to the bucket it landed in.
    let offset = 0;
    const store = new RedisStore({ client, prefix: 'counted:', timeOffsetMs: () => offset });
    const policy = policyOf({ trip: failureRate(0.99, { minimumCalls: 1_000_000, windowMs: 10_000 }) });
    const key = breakerKey('counted:', 'c');
    const sent = new Map<number, [number, number]>(); // bucket index -> successes, failures
    let generation = 0;
    let n = 0;
    for (const at of [0, 0, 1, 1, 3, 9, 9, 8, 7, 12, 12, 13, 30, 30, 31, 32, 35, 41, 40, 41]) {
      offset = at * policy.bucketMs;
      const successes = (n % 3) + 1;
      const failures = n % 2;
      n += 1;
      const batch = { ...outcomes(generation, { successes, failures }), id: `c.${n}`, idFloor: n };
      const result = await store.record('c', policy, batch);
      assert.equal(result.stale, false);
      generation = result.snapshot.generation;
      const field = (await client.hget(key, 'buckets')) ?? '';
      const entries = field.split(',').map((e) => e.split(':').map(Number));
      // The outcome landed in the newest bucket (the clock stepping back counts there too).
      const newest = entries.at(-1)![0]!;
      const [s, f] = sent.get(newest) ?? [0, 0];
      sent.set(newest, [s + successes, f + failures]);
      const expected = [...sent]
        .filter(([index]) => index > newest - policy.bucketCount)
        .sort(([a], [b]) => a - b)
        .map(([index, [s2, f2]]) => `${index}:${s2}:${f2}:0:0`)
        .join(',');
      assert.equal(field, expected, `after a write at bucket +${at}`);
      assert.equal(result.snapshot.counts.successes + result.snapshot.counts.failures, sum(expected));
    }
  });

  it('a counted write reads the buckets field as it is, after another writer changed it', async () => {
    // The hot path keeps the buckets it wrote, parsed, for the breaker's next write; kept buckets
    // are used only while the field still holds exactly the text they were written as.
    const store = new RedisStore({ client, prefix: 'kept:' });
    const policy = policyOf({ trip: failureRate(0.99, { minimumCalls: 1_000_000, windowMs: 10_000 }) });
    const key = breakerKey('kept:', 'k');
    let n = 0;
    const write = async (successes: number): Promise<number> => {
      n += 1;
      const { generation } = await store.acquire('k', policy);
      const batch = { ...outcomes(generation, { successes }), id: `k.${n}`, idFloor: n };
      const result = await store.record('k', policy, batch);
      assert.equal(result.stale, false);
      return result.snapshot.counts.successes;
    };
    assert.equal(await write(1), 1);
    assert.equal(await write(1), 2);
    const [index] = ((await client.hget(key, 'buckets')) ?? '').split(':');
    // Another writer (a process of an older version, an operator) rewrote the field: the next
    // write counts on what it holds now, in each of these shapes.
    for (const [field, before] of [
      [`${index}:40:0:0:0`, 40],
      [`${Number(index) - 1}:7:0:0:0,${index}:40:0:0:0`, 47],
      [`${Number(index) - 2}:5:0:0:0`, 5],
    ] as const) {
      await client.hset(key, 'buckets', field);
      assert.equal(await write(1), before + 1, field);
      assert.equal(await write(2), before + 3, `${field}, then the breaker's own field again`);
    }
    // And the field the breaker last wrote, written again by someone else as it was: the same.
    const own = (await client.hget(key, 'buckets'))!;
    await client.hset(key, 'buckets', own);
    assert.equal(await write(1), 9);
  });

  it('a breaker with no record is answered by EXISTS; one another process made or removed since, by the script', async () => {
    const prefix = `exists-${Date.now()}:`;
    const mine = new RedisStore({ client, prefix });
    const other = new RedisStore({ client, prefix }); // another process sharing the breaker
    const policy = policyOf({ trip: consecutiveFailures(2), openMs: 60_000 });
    const scripts = async (): Promise<number> =>
      Number(/^cmdstat_fcall:calls=(\d+)/m.exec(await client.info('commandstats'))?.[1] ?? 0);
    await client.config('RESETSTAT');
    const first = await mine.acquire('x', policy);
    assert.equal(first.admitted, true);
    assert.equal(first.generation, 0, 'no record');
    assert.equal(await scripts(), 0, 'a plain EXISTS, no script');
    // The other process opens it: this one's next acquire finds the record and asks the script.
    const opened = await other.record('x', policy, outcomes(0, { failures: 2 }));
    assert.equal(opened.snapshot.state, 'open');
    const rejected = await mine.acquire('x', policy);
    assert.equal(rejected.admitted, false);
    assert.equal(rejected.reason, 'open');
    assert.equal(await scripts(), 2, "the other's write, then this acquire's script");
    // The record is gone (an operator reset, or its TTL): the script says so, and the next call
    // is an EXISTS again.
    await client.del(breakerKey(prefix, 'x'));
    assert.equal((await mine.acquire('x', policy)).generation, 0);
    assert.equal(await scripts(), 3);
    const success = await mine.record('x', policy, outcomes(0, { successes: 1 }));
    assert.equal(success.stale, false);
    assert.equal((await mine.acquire('x', policy)).admitted, true);
    assert.equal(await scripts(), 3, 'no record: EXISTS for the success and the acquire');
    // A success admitted under a record that is gone since is stale, as the script says.
    assert.equal(
      (await mine.record('x', policy, outcomes(opened.snapshot.generation, { successes: 1 }))).stale,
      true,
    );
    assert.equal(await client.exists(breakerKey(prefix, 'x')), 0, 'a success made no record');
  });

  it('a malformed field w is forgotten; a well-formed one still dedupes', async () => {
    const store = new RedisStore({ client, prefix: 'writers:' });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const key = breakerKey('writers:', 'w');
    const { generation } = await store.acquire('w', policy);
    const failure = (n: number) => ({ ...outcomes(generation, { failures: 1 }), id: `a.${n}`, idFloor: n });
    await store.record('w', policy, failure(1));
    assert.match((await client.hget(key, 'w')) ?? '', /^a=1:\d+:1$/);
    assert.equal((await store.record('w', policy, failure(1))).stale, true, 'a re-send');
    // Two entries, one with several numbers, parse: batch 5 of writer a was applied.
    const until = Math.floor(Date.now() / 1000) + 60;
    await client.hset(key, 'w', `b=1:${until}:1,a=4:${until}:4:5`);
    assert.equal((await store.record('w', policy, failure(5))).stale, true);
    assert.equal(
      (await store.record('w', policy, { ...failure(3), idFloor: 3 })).stale,
      true,
      'below its floor',
    );
    // Malformed: the field is forgotten, so the batch counts (and is remembered again).
    for (const bad of [
      `a=4:${until}:5,`,
      `a=4:${until}:5;b=1:${until}:1`,
      `a=4:${until}:5,,b=1:${until}:1`,
    ]) {
      await client.hset(key, 'w', bad);
      const before = (await store.inspect('w', policy))!.counts.failures;
      const result = await store.record('w', policy, failure(5));
      assert.equal(result.stale, false, bad);
      assert.equal(result.snapshot.counts.failures, before + 1, bad);
      assert.match((await client.hget(key, 'w')) ?? '', /^a=5:\d+:5$/, bad);
    }
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
