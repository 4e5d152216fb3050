import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { LUA_DIR } from '../../scripts/build-lua.js';
import { consecutiveFailures } from '../../src/index.js';
import type { AcquireResult } from '../../src/core/types.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { closedView } from '../../src/stores/redis/record-view.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { seededRandom } from '../../src/testing/seeded-random.js';
import { encodeRecord, randomRecord, readRecord, writeRecord } from '../helpers/redis-record.js';
import { useRedisServer } from '../helpers/redis-server.js';

// common.lua's decode, run by EVAL on each value: what the scripts make of it.
const COMMON = readFileSync(join(LUA_DIR, 'common.lua'), 'utf8');

/** Calls of `command` since the last CONFIG RESETSTAT. */
async function calls(client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats');
  return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
}

/** What an acquire tells a breaker, without the time it was answered at. */
function admission(result: AcquireResult): Omit<AcquireResult, 'now'> {
  const { now: _now, ...rest } = result;
  return { ...rest, consecutiveFailures: rest.consecutiveFailures ?? 0, closedAt: rest.closedAt ?? 0 };
}

describe('an acquire answered from a GET of the record', () => {
  let client: Redis;
  useRedisServer((_s, c) => {
    client = c;
  });

  it("reads a closed record with no override as common.lua's decode does, and nothing decode would refuse", async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const next = seededRandom(seed);
    const int = (max: number) => Math.floor(next() * (max + 1));
    let read = 0;
    let mutatedRead = 0;
    for (const bucketMs of [6_000, 1_000, 333.5]) {
      const stamp = 1_700_000_000 + int(100_000_000);
      const now = stamp * 1000 + int(999);
      const values: Buffer[] = [];
      const mutated: boolean[] = [];
      for (let i = 0; i < 200; i++) {
        const r = randomRecord(next, stamp, bucketMs);
        if (next() < 0.6) Object.assign(r, { state: 'closed', override: '' });
        const value = encodeRecord(r, bucketMs);
        values.push(value);
        mutated.push(false);
        // The same value cut short, a byte changed, a byte added: what a reader must not take
        // for a closed record unless decode does.
        const bytes = [...value];
        const at = int(bytes.length - 1);
        values.push(Buffer.from(bytes.slice(0, at)));
        const changed = [...bytes];
        changed[at] = int(255);
        values.push(Buffer.from(changed));
        const added = [...bytes];
        added.splice(int(bytes.length), 0, int(255));
        values.push(Buffer.from(added));
        mutated.push(true, true, true);
      }
      const reply = (await client.eval(
        `${COMMON}
        local p = { bucketMs = tonumber(ARGV[1]) }
        local now = tonumber(ARGV[2])
        local out = {}
        for i = 3, #ARGV do
          local r = decode(ARGV[i], p, now)
          if r == nil then
            out[#out + 1] = 'refused'
          elseif r.state ~= 'closed' or r.override ~= '' then
            out[#out + 1] = 'other: ' .. r.state .. ' ' .. r.override
          else
            out[#out + 1] = 'closed ' .. int(r.gen) .. ' ' .. int(r.cf) .. ' ' .. int(r.ca)
          end
        end
        return out
        `,
        0,
        String(bucketMs),
        String(now),
        ...values,
      )) as string[];
      reply.forEach((lua, i) => {
        const view = closedView(values[i]!, bucketMs);
        const where = `seed ${seed}, bucketMs ${bucketMs}, value ${i} (${values[i]!.toString('hex').slice(0, 64)})`;
        if (view !== null) {
          // Never laxer than decode: a value read here is one the scripts read alike.
          assert.equal(`closed ${view.generation} ${view.consecutiveFailures} ${view.closedAt}`, lua, where);
          read += 1;
          if (mutated[i]) mutatedRead += 1;
        } else if (!mutated[i]) {
          // A record as the scripts write it: read whenever it is closed with no override.
          assert.ok(!lua.startsWith('closed '), `${where}: decode read ${lua}`);
        }
      });
    }
    // The check above is empty unless many values were read, mutated ones among them.
    assert.ok(read > 300, `read ${read}`);
    assert.ok(mutatedRead > 10, `read ${mutatedRead} mutated values`);
  });

  it('answers as the script does, without running it; an open breaker goes to the script, and stays with it until it closes', async () => {
    const prefix = `ra-${randomUUID()}:`;
    const store = new RedisStore({ client, prefix });
    const policy = policyOf({ trip: consecutiveFailures(2), openMs: 1_000, jitter: 0 });
    const script = new RedisStore({ client, prefix });
    // A store whose every acquire runs the script: a limit of its own makes it take the script path.
    const viaScript = async (): Promise<AcquireResult> => {
      const result = await script.acquire('dep', { ...policy, maxConcurrent: 1_000 });
      if (typeof result.slot === 'string')
        await script.record('dep', policy, { ...outcomes(result.generation), slots: [result.slot] });
      return { ...result, slot: null };
    };

    await client.config('RESETSTAT');
    const none = await store.acquire('dep', policy);
    assert.equal(none.generation, 0, 'no record: generation 0');
    const first = await store.record('dep', policy, outcomes(0, { failures: 1 }));
    await client.config('RESETSTAT');
    const closed = await store.acquire('dep', policy);
    assert.equal(await calls(client, 'fcall'), 0, 'no script');
    assert.equal(await calls(client, 'get'), 1, 'one GET');
    assert.equal(closed.generation, first.snapshot.generation);
    assert.equal(closed.consecutiveFailures, 1);
    assert.deepEqual(admission(closed), admission(await viaScript()));

    // Open: the script answers (and the GET before it); then the script alone, until it closes.
    await store.record('dep', policy, outcomes(closed.generation, { failures: 1 }));
    await client.config('RESETSTAT');
    const open = await store.acquire('dep', policy);
    assert.equal(open.admitted, false);
    assert.equal(open.reason, 'open');
    assert.deepEqual(
      [await calls(client, 'fcall'), await calls(client, 'get')],
      [1, 2],
      'a GET, then the script and its own',
    );
    await store.acquire('dep', policy);
    assert.deepEqual([await calls(client, 'fcall'), await calls(client, 'get')], [2, 3], 'the script alone');
    await store.reset('dep', policy);
    const again = await store.acquire('dep', policy);
    assert.equal(again.state, 'closed');
    await client.config('RESETSTAT');
    const reread = await store.acquire('dep', policy);
    assert.deepEqual(
      [await calls(client, 'fcall'), await calls(client, 'get')],
      [0, 1],
      'closed again: a GET',
    );
    assert.deepEqual(admission(reread), admission(again));
  });

  it("answers a breaker that closed once in the server's time, learned from a script first", async () => {
    const prefix = `rc-${randomUUID()}:`;
    const policy = policyOf({ trip: consecutiveFailures(1), openMs: 1_000, jitter: 0 });
    const key = breakerKey(prefix, 'dep');
    // A record that closed 5 s ago, in a store whose clock runs 90 s ahead of this process's.
    const offset = 90_000;
    const seeder = new RedisStore({ client, prefix });
    await seeder.record('dep', policy, outcomes(0, { failures: 0, successes: 0 }));
    const made = await readRecord(client, key, policy.bucketMs);
    assert.ok(made !== null);
    const closedAt = Date.now() + offset - 5_000;
    await writeRecord(client, key, { ...made, ca: closedAt }, policy.bucketMs);

    const store = new RedisStore({ client, prefix, timeOffsetMs: () => offset });
    await client.config('RESETSTAT');
    const first = await store.acquire('dep', policy);
    assert.equal(await calls(client, 'fcall'), 1, 'the script, which tells the server’s time');
    assert.equal(first.closedAt, closedAt);
    const second = await store.acquire('dep', policy);
    assert.equal(await calls(client, 'fcall'), 1, 'then a GET');
    assert.equal(second.closedAt, closedAt);
    // The store's time, not this process's: 90 s apart (a round trip and a loaded machine's
    // delays are well inside a second).
    assert.ok(Math.abs(second.now - first.now) < 1_000, `${second.now - first.now} ms apart`);
    assert.ok(second.now - Date.now() > offset - 1_000, 'in the store’s time');
  });

  it('leaves a value that is not a record, or not a string, to the script, which resets it', async () => {
    const prefix = `rx-${randomUUID()}:`;
    const policy = policyOf();
    const reset: string[] = [];
    const store = new RedisStore({ client, prefix, onCorruptRecord: (name) => reset.push(name) });
    await client.set(breakerKey(prefix, 'text'), 'not a record');
    await client.hset(breakerKey(prefix, 'hash'), 'state', 'closed');
    for (const name of ['text', 'hash']) {
      const result = await store.acquire(name, policy);
      assert.equal(result.admitted, true);
      assert.ok(result.generation > 0, 'a fresh record');
    }
    assert.deepEqual(reset, ['text', 'hash']);
  });
});
