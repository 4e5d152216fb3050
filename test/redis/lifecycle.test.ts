import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import type {
  BreakerPolicy,
  OutcomeBatch,
  Override,
  StateChangeMessage,
  Store,
  SubscribeOptions,
} from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { breakerKey } from '../../src/stores/redis/keys.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { readRecord } from '../helpers/redis-record.js';
import { RedisServer, freePort } from '../helpers/redis-server.js';
import { useRedisServer } from '../helpers/redis-server.js';

// What a rolling deploy does to a worker: it starts while Redis is away, Redis restarts under it,
// a record disappears, a write's reply is lost, and the worker shuts down with Redis unreachable.

/** Counts the calls a breaker makes to its store (subscribe and timing pass through). */
class Counting implements Store {
  acquires = 0;
  constructor(readonly inner: RedisStore) {}
  get timing() {
    return this.inner.timing;
  }
  acquire(key: string, policy: BreakerPolicy) {
    this.acquires += 1;
    return this.inner.acquire(key, policy);
  }
  record(key: string, policy: BreakerPolicy, batch: OutcomeBatch) {
    return this.inner.record(key, policy, batch);
  }
  inspect(key: string, policy: BreakerPolicy) {
    return this.inner.inspect(key, policy);
  }
  force(key: string, policy: BreakerPolicy, override: Override | null) {
    return this.inner.force(key, policy, override);
  }
  list(prefix: string, cursor?: string | null) {
    return this.inner.list(prefix, cursor);
  }
  subscribe(listener: (message: StateChangeMessage) => void, options?: SubscribeOptions) {
    return this.inner.subscribe(listener, options);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<number> => Promise.resolve(1);

describe('RedisStore through a rolling deploy', { timeout: 120_000 }, () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  for (const retries of ['default', 'null'] as const) {
    it(`with Redis unreachable, close() settles within its bound and the process exits by itself (maxRetriesPerRequest: ${retries})`, async () => {
      const port = await freePort();
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          new URL('../helpers/close-unreachable.ts', import.meta.url).pathname,
          String(port),
          retries,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const timeout = sleep(30_000).then(() => 'still running');
      const result = await Promise.race([exited, timeout]);
      if (result === 'still running') child.kill('SIGKILL');
      assert.equal(result, 0, `the process did not exit by itself: ${out}`);
      const printed = JSON.parse(out) as {
        values: number;
        closeMs: number;
        report: { complete: boolean; unwritten: { successes: number }[] };
      };
      assert.equal(printed.values, 20, 'every call ran, on the fallback');
      assert.ok(printed.closeMs < 1_500, `close() took ${printed.closeMs} ms with a 1,000 ms bound`);
      assert.equal(printed.report.complete, false);
      assert.equal(printed.report.unwritten[0]?.successes, 20, 'and it says what it could not write');
    });
  }

  it('pushes resume when a subscription that first failed gets through, and after a restart', async () => {
    const own = await RedisServer.start();
    const port = own.port;
    await own.kill();
    const prefix = `sub-${randomUUID()}:`;
    const listenerClient = (await import('ioredis')).Redis;
    const lateClient = new listenerClient({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    lateClient.on('error', () => undefined);
    const counting = new Counting(new RedisStore({ client: lateClient, prefix }));
    const listening = new BreakerFactory({
      store: counting,
      trip: consecutiveFailures(1),
      openMs: 60_000,
      connectTimeoutMs: 200,
    });
    try {
      const breaker = listening.breakerFor('dep');
      await breaker.execute(ok).catch(() => undefined); // starts the subscription, which fails
      await sleep(300);
      await own.restart();
      await sleep(1_500); // the subscription retries with backoff
      const other = own.client();
      const policy = policyOf({ trip: consecutiveFailures(1), openMs: 60_000 });
      const tripper = new RedisStore({ client: other, prefix });
      for (const round of [1, 2]) {
        const name = `dep-${round}`;
        const b = listening.breakerFor(name);
        await b.execute(ok);
        const { generation } = await tripper.acquire(name, policy);
        await tripper.record(name, policy, outcomes(generation, { failures: 1 }));
        await sleep(300);
        const before = counting.acquires;
        await assert.rejects(b.execute(ok), (e: unknown) => isCircuitOpenError(e) && e.reason === 'open');
        assert.equal(counting.acquires, before, `round ${round}: the open arrived as a push`);
        if (round === 1) {
          await own.kill();
          await own.restart();
          await sleep(1_500);
        }
      }
      other.disconnect();
    } finally {
      await listening.close({ timeoutMs: 1_000 });
      lateClient.disconnect();
      await own.stop();
    }
  });

  it('a record deleted under running breakers: local-first keeps its store-call rate', async () => {
    const prefix = `del-${randomUUID()}:`;
    const counting = new Counting(new RedisStore({ client, prefix }));
    const factory = new BreakerFactory({
      store: counting,
      maxStalenessMs: 1_000,
      trip: consecutiveFailures(2),
      openMs: 200,
      jitter: 0,
    });
    try {
      const breaker = factory.breakerFor('dep');
      for (let i = 0; i < 2; i++) await breaker.execute(fail).catch(() => undefined);
      await sleep(250);
      await breaker.execute(ok); // the probe closes it: the generation moved on three times
      await client.del(breakerKey(prefix, 'dep'));
      await sleep(1_100); // the local view expires
      const before = counting.acquires;
      for (let i = 0; i < 40; i++) await breaker.execute(ok);
      assert.ok(counting.acquires - before <= 2, `${counting.acquires - before} store calls for 40 calls`);
    } finally {
      await factory.close();
    }
  });

  it('a batch re-sent after its reply was lost is counted once', async () => {
    const prefix = `dup-${randomUUID()}:`;
    const store = new RedisStore({ client, prefix });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const { generation } = await store.acquire('dep', policy);
    const batch = {
      ...outcomes(generation, { successes: 3, failures: 2, trailingFailures: 2 }),
      id: 'p1.42',
    };
    const first = await store.record('dep', policy, batch);
    const again = await store.record('dep', policy, batch);
    assert.equal(first.stale, false);
    assert.equal(again.stale, true);
    assert.deepEqual(again.snapshot.counts, first.snapshot.counts);
    const other = await store.record('dep', policy, { ...batch, id: 'p1.43' });
    assert.equal(other.snapshot.counts.successes, 6);
    // Remembered inside the record: one key, one entry per opaque id.
    assert.deepEqual(await client.keys(`${prefix}*`), [breakerKey(prefix, 'dep')]);
    assert.deepEqual(
      (await readRecord(client, breakerKey(prefix, 'dep'), policy.bucketMs))!.w.map((e) => [
        e.id,
        e.floor,
        e.numbers,
      ]),
      [
        ['.p1.42', 0, [0]],
        ['.p1.43', 0, [0]],
      ],
    );
  });

  it('numbered batches: one entry per writer, numbers below its floor forgotten, re-sends counted once', async () => {
    const prefix = `dup-${randomUUID()}:`;
    let offset = 0;
    const store = new RedisStore({ client, prefix, timeOffsetMs: () => offset });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const { generation } = await store.acquire('dep', policy);
    const failure = (id: string, idFloor: number) => ({
      ...outcomes(generation, { failures: 1, trailingFailures: 1 }),
      id,
      idFloor,
    });
    const failures = async () => (await store.inspect('dep', policy))!.counts.failures;
    const key = breakerKey(prefix, 'dep');
    const writers = async () =>
      (await readRecord(client, key, policy.bucketMs))!.w
        .map((e) => `${e.id}=${[e.floor, ...e.numbers].join(':')}`)
        .join(',');
    // Two batches in flight (floor 1); the second lands first, then the first: both count.
    assert.equal((await store.record('dep', policy, failure('w1.2', 1))).stale, false);
    assert.equal((await store.record('dep', policy, failure('w1.1', 1))).stale, false);
    assert.equal(await failures(), 2);
    assert.equal(await writers(), 'w1=1:2:1');
    // Each re-sent: counted once.
    assert.equal((await store.record('dep', policy, failure('w1.2', 1))).stale, true);
    assert.equal((await store.record('dep', policy, failure('w1.1', 1))).stale, true);
    assert.equal(await failures(), 2);
    // A batch whose floor is its own number: the writer will send nothing older; one number kept.
    await store.record('dep', policy, failure('w1.a', 10));
    assert.equal(await writers(), 'w1=10:10');
    assert.equal((await store.record('dep', policy, failure('w1.3', 1))).stale, true, 'below the floor');
    // Another writer has an entry of its own; the same number from it counts.
    await store.record('dep', policy, failure('w2.a', 10));
    assert.equal(await failures(), 4);
    assert.equal(await writers(), 'w1=10:10,w2=10:10');
    // A writer silent for the dedupe period is forgotten at the next write.
    offset = 61_000;
    await store.record('dep', policy, failure('w3.1', 1));
    assert.equal(await writers(), 'w3=1:1');
    assert.deepEqual(await client.keys(`${prefix}*`), [key]);
  });

  it('rejects an idFloor its id cannot carry', async () => {
    const store = new RedisStore({ client, prefix: `dup-${randomUUID()}:` });
    const policy = policyOf({ trip: consecutiveFailures(100) });
    const batch = outcomes(0, { failures: 1, trailingFailures: 1 });
    for (const [id, idFloor] of [
      ['opaque', 0],
      ['w.1', 2],
      ['w.1', -1],
      ['w.1', 0.5],
      ['w.x!', 0],
      ['.1', 0],
    ] as const) {
      await assert.rejects(
        () => store.record('dep', policy, { ...batch, id, idFloor }),
        (error: Error) => error instanceof TypeError && /idFloor/.test(error.message),
        `${id} ${idFloor}`,
      );
    }
  });
});
