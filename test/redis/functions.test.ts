import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { consecutiveFailures } from '../../src/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { library } from '../../src/stores/redis/scripts.generated.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { readRecord } from '../helpers/redis-record.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

/** Calls of `command` since the last CONFIG RESETSTAT. */
async function calls(client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats');
  return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
}

describe('RedisStore runs its Lua as a FUNCTION library', () => {
  let server: RedisServer;
  let client: Redis;
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  it('loads the library on first use and again after the server lost it, by FCALL only', async () => {
    const store = new RedisStore({ client, prefix: `fn-${randomUUID()}:` });
    const policy = policyOf();
    await client.call('FUNCTION', 'FLUSH');
    // (A failure: an acquire with no record is answered by a plain EXISTS, no script.)
    const first = await store.record('dep', policy, outcomes(0, { failures: 1 }));
    const libraries = (await client.call('FUNCTION', 'LIST', 'LIBRARYNAME', library.name)) as unknown[];
    assert.equal(libraries.length, 1, 'the library is loaded under its versioned name');

    await client.call('FUNCTION', 'FLUSH'); // as a restart without persistence would
    await client.config('RESETSTAT');
    const result = await store.record('dep', policy, outcomes(first.snapshot.generation, { failures: 1 }));
    assert.equal(result.snapshot.counts.failures, 2);
    // (An acquire of a closed record is a plain GET: inspect runs a script.)
    for (let i = 0; i < 10; i++) await store.inspect('dep', policy);
    assert.equal(await calls(client, 'fcall'), 12, 'one failed FCALL, then one per operation');
    assert.equal(await calls(client, 'evalsha'), 0);
    assert.equal(await calls(client, 'eval'), 0);
  });

  it('falls back to EVALSHA, for good, where FCALL is refused (an ACL here; Redis before 7 alike)', async () => {
    const user = `noscripts-${randomUUID().slice(0, 8)}`;
    await client.call('ACL', 'SETUSER', user, 'on', 'nopass', '~*', '&*', '+@all', '-fcall', '-function');
    const restricted = server.client({ username: user, password: 'x' });
    try {
      const store = new RedisStore({ client: restricted, prefix: `fn-${randomUUID()}:` });
      const policy = policyOf();
      // (An acquire with no record, or of a closed one, is a plain GET: inspect runs a script.)
      const { generation } = await store.acquire('dep', policy);
      await store.inspect('dep', policy);
      await client.config('RESETSTAT');
      const result = await store.record('dep', policy, outcomes(generation, { failures: 2 }));
      assert.equal(result.snapshot.counts.failures, 2);
      await store.inspect('dep', policy);
      assert.equal(await calls(client, 'fcall'), 0, 'FCALL is not tried again');
      assert.equal(await calls(client, 'evalsha'), 2);
    } finally {
      restricted.disconnect();
      await client.call('ACL', 'DELUSER', user);
    }
  });

  it('parses a policy once per library load, and still rejects a malformed one', async () => {
    await new RedisStore({ client, prefix: `fn-${randomUUID()}:` }).inspect('dep', policyOf()); // loads it
    await assert.rejects(
      client.fcall(library.functions.inspect!, 1, 'fn-bad:{00}', 'ch', 'no-such-kind:1', 0),
      /CIRCUITRY_BADARG policy/,
    );
    await assert.rejects(
      client.fcall(
        library.functions.inspect!,
        1,
        'fn-bad:{00}',
        'ch',
        'failure-rate:0:0.5:10:60000:0:10:1000:2:60000:0:1:1:1000:0:30000',
        0,
      ),
      /CIRCUITRY_BADARG bucket shape/,
    );
  });
});

describe('the Redis record', () => {
  let client: Redis;
  useRedisServer((_s, c) => {
    client = c;
  });

  it('leaves out fields at their default, and drops them when they go back to it', async () => {
    const prefix = `rec-${randomUUID()}:`;
    const store = new RedisStore({ client, prefix });
    const policy = policyOf({ trip: consecutiveFailures(1), openMs: 1_000, jitter: 0 });
    const key = breakerKey(prefix, 'dep');
    // The fields not at their default, as the packed record holds them.
    const fields = async (): Promise<string[]> => {
      const r = (await readRecord(client, key, policy.bucketMs))!;
      return Object.entries(r)
        .filter(
          ([name, v]) =>
            !['stamp', 'gen', 'state'].includes(name) &&
            v !== 0 &&
            v !== '' &&
            !(Array.isArray(v) && v.length === 0),
        )
        .map(([name]) => name)
        .sort();
    };
    const failed = await store.record('dep', policyOf(), {
      ...outcomes(0, { failures: 1 }),
      id: 'p0.1',
      idFloor: 1,
    });
    assert.deepEqual(await fields(), ['buckets', 'cf', 'w']);
    // A state, a generation, a run, a bucket and the writer's batch number in one short string
    // (≤ 28 bytes: Redis keeps it inside its key's object, 193 B a key with an expiry).
    assert.ok((await client.strlen(key)) <= 20, `${await client.strlen(key)} bytes`);
    const opened = await store.record('dep', policy, outcomes(failed.snapshot.generation, { failures: 1 }));
    assert.equal(opened.snapshot.state, 'open');
    assert.ok((await fields()).includes('openUntil'));
    await store.force('dep', policy, 'forced-closed');
    assert.equal((await readRecord(client, key, policy.bucketMs))!.override, 'forced-closed');
    await store.force('dep', policy, null);
    assert.equal((await readRecord(client, key, policy.bucketMs))!.override, '');
    const reset = await store.reset('dep', policy);
    assert.equal(reset.snapshot.state, 'closed');
    const after = await fields();
    for (const gone of ['openUntil', 'cf', 'buckets', 'leases', 'ps']) {
      assert.ok(!after.includes(gone), `${gone} is dropped: ${after.join()}`);
    }
    assert.equal((await store.inspect('dep', policy))?.counts.failures, 0);
  });
});
