import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey, decodeName, encodeName, validatePrefix } from '../../src/stores/redis/keys.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { consecutiveFailures, failureRate } from '../../src/index.js';

import { emptyRecord, encodeRecord, readRecord, writeRecord } from '../helpers/redis-record.js';
import type { PackedBucket, PackedRecord } from '../helpers/redis-record.js';
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

  it('read records strictly: cut short, bytes past the end, counts past 2^53, buckets out of order or unknown fields are corrupt', async () => {
    const reset: string[] = [];
    const store = new RedisStore({ client, prefix: 'buckets:', onCorruptRecord: (name) => reset.push(name) });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const key = breakerKey('buckets:', 'b');
    const stamp = Math.floor(Date.now() / 1000);
    const index = Math.floor((stamp * 1000) / policy.bucketMs);
    const bucket = (i: number, f: number) => ({ index: i, s: 0, f, sl: 0, ig: 0 });
    const good = (buckets: PackedBucket[]): PackedRecord => ({ ...emptyRecord(stamp), buckets });
    // A failure recorded onto the record `value`: its failures after.
    const record = async (value: Buffer) => {
      await client.del(key);
      await client.set(key, value);
      const failure = { ...outcomes(100, { failures: 1 }), id: 'a.1', idFloor: 1 };
      return (await store.record('b', policy, failure)).snapshot.counts.failures;
    };
    assert.equal(
      await record(encodeRecord(good([bucket(index - 1, 2), bucket(index, 3)]), policy.bucketMs)),
      6,
    );
    assert.equal(await record(encodeRecord(good([bucket(index, 3)]), policy.bucketMs)), 4);
    assert.deepEqual(reset, []);
    const two = encodeRecord(good([bucket(index - 1, 2), bucket(index, 3)]), policy.bucketMs);
    const huge = encodeRecord(good([bucket(index, 3)]), policy.bucketMs);
    for (const [what, bad] of [
      ['cut short', two.subarray(0, two.length - 1)],
      ['a byte past the end', Buffer.concat([two, Buffer.from([0])])],
      ['buckets out of order', encodeRecord(good([bucket(index, 2), bucket(index, 3)]), policy.bucketMs)],
      // The failures count (the last byte, 3) as 2^56: a varint of 9 bytes.
      [
        'a count past 2^53',
        Buffer.concat([huge.subarray(0, huge.length - 1), Buffer.from([...Array(8).fill(0x80), 1])]),
      ],
      [
        'an unknown field',
        Buffer.concat([two.subarray(0, 1), Buffer.from([0x81, 0x80, 0x10]), two.subarray(2)]),
      ],
      ['another schema', Buffer.concat([Buffer.from([0xc0]), two.subarray(1)])],
      ['a hash', null],
    ] as const) {
      reset.length = 0;
      // Reset: a fresh record, of which the batch (admitted under the old generation) is stale.
      if (bad === null) {
        await client.del(key);
        await client.hset(key, 'v', '1', 'state', 'closed', 'gen', '100');
        const failure = { ...outcomes(100, { failures: 1 }), id: 'a.1', idFloor: 1 };
        assert.equal((await store.record('b', policy, failure)).snapshot.counts.failures, 0, what);
        assert.match((await store.examine('b', policy)).kind, /record/, what);
      } else {
        assert.equal(await record(bad), 0, what);
      }
      assert.deepEqual(reset, ['b'], what);
    }
  });

  it('a counted write leaves buckets saying what every outcome added to the bucket it landed in', async () => {
    // Through buckets dropped from the front, a new one, a gap and the clock stepping back.
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
      const { buckets } = (await readRecord(client, key, policy.bucketMs))!;
      // The outcome landed in the newest bucket (the clock stepping back counts there too).
      const newest = buckets.at(-1)!.index;
      const [s, f] = sent.get(newest) ?? [0, 0];
      sent.set(newest, [s + successes, f + failures]);
      const expected = [...sent]
        .filter(([index]) => index > newest - policy.bucketCount)
        .sort(([a], [b]) => a - b)
        .map(([index, [s2, f2]]) => ({ index, s: s2, f: f2, sl: 0, ig: 0 }));
      assert.deepEqual(buckets, expected, `after a write at bucket +${at}`);
      const total = expected.reduce((t, b) => t + b.s + b.f, 0);
      assert.equal(result.snapshot.counts.successes + result.snapshot.counts.failures, total);
    }
  });

  it('a counted write reads the record as it is, after another writer changed it', async () => {
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
    const { index } = (await readRecord(client, key, policy.bucketMs))!.buckets[0]!;
    // Another writer (an operator, a test) rewrote the buckets: the next write counts on what the
    // record holds now, in each of these shapes.
    for (const [buckets, before] of [
      [[{ index, s: 40, f: 0, sl: 0, ig: 0 }], 40],
      [
        [
          { index: index - 1, s: 7, f: 0, sl: 0, ig: 0 },
          { index, s: 40, f: 0, sl: 0, ig: 0 },
        ],
        47,
      ],
      [[{ index: index - 2, s: 5, f: 0, sl: 0, ig: 0 }], 5],
    ] as const) {
      const r = (await readRecord(client, key, policy.bucketMs))!;
      await writeRecord(client, key, { ...r, buckets: buckets.map((b) => ({ ...b })) }, policy.bucketMs);
      assert.equal(await write(1), before + 1, JSON.stringify(buckets));
      assert.equal(await write(2), before + 3, `${JSON.stringify(buckets)}, then again`);
    }
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

  it('remember one entry per writer: a re-send or a batch below its floor is stale, a new number counts', async () => {
    const store = new RedisStore({ client, prefix: 'writers:' });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const key = breakerKey('writers:', 'w');
    const { generation } = await store.acquire('w', policy);
    const failure = (n: number) => ({ ...outcomes(generation, { failures: 1 }), id: `a.${n}`, idFloor: n });
    await store.record('w', policy, failure(1));
    const first = (await readRecord(client, key, policy.bucketMs))!;
    assert.deepEqual(first.w, [{ id: 'a', floor: 1, untilS: first.stamp + 61, numbers: [1] }]);
    assert.equal((await store.record('w', policy, failure(1))).stale, true, 'a re-send');
    // Two entries, one with several numbers: batch 5 of writer a was applied.
    const untilS = first.stamp + 60;
    await writeRecord(
      client,
      key,
      {
        ...first,
        w: [
          { id: 'b', floor: 1, untilS, numbers: [1] },
          { id: 'a', floor: 4, untilS, numbers: [4, 5] },
        ],
      },
      policy.bucketMs,
    );
    assert.equal((await store.record('w', policy, failure(5))).stale, true);
    assert.equal(
      (await store.record('w', policy, { ...failure(3), idFloor: 3 })).stale,
      true,
      'below its floor',
    );
    const before = (await store.inspect('w', policy))!.counts.failures;
    const counted = await store.record('w', policy, failure(6));
    assert.equal(counted.stale, false);
    assert.equal(counted.snapshot.counts.failures, before + 1);
    const after = (await readRecord(client, key, policy.bucketMs))!;
    assert.deepEqual(
      after.w.map((e) => [e.id, e.floor, e.numbers]),
      [
        ['b', 1, [1]],
        ['a', 6, [6]],
      ],
      "a's numbers below its new floor are forgotten, and its entry moves last",
    );
    // An entry past its time is forgotten: the same number counts again.
    await writeRecord(
      client,
      key,
      { ...after, w: [{ id: 'a', floor: 6, untilS: after.stamp - 1, numbers: [6] }] },
      policy.bucketMs,
    );
    assert.equal((await store.record('w', policy, failure(6))).stale, false);
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
