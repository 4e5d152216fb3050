import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import {
  BreakerFactory,
  adaptiveThrottle,
  consecutiveFailures,
  failureRate,
  isCircuitOpenError,
} from '../../src/index.js';
import type { Clock } from '../../src/index.js';
import { toRow } from '../../src/cli/fleet.js';
import { formatStatus } from '../../src/cli/format.js';
import { resolveOptions } from '../../src/options.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

/** What the scripts call inside Redis: commandstats counts these too, though no client sent them. */
const IN_SCRIPT = new Set([
  'exists',
  'get',
  'set',
  'hget',
  'hdel',
  'hgetall',
  'hmget',
  'time',
  'hset',
  'pexpire',
  'persist',
  'del',
  'publish',
]);

/** Commands clients sent since the last CONFIG RESETSTAT, by name, leaving out the measuring ones. */
async function commands(client: Redis): Promise<Record<string, number>> {
  const info = await client.info('commandstats');
  const counts: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = match[1]!;
    // subscribe: a factory subscribes in the background, once, whenever its connection is ready.
    if (name === 'info' || name === 'subscribe' || name.startsWith('config') || IN_SCRIPT.has(name)) continue;
    counts[name] = Number(match[2]);
  }
  return counts;
}

/** EXISTS commands since the stats were reset: the store's own, and those its scripts ran. */
async function existsCalls(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  return Number(/^cmdstat_exists:calls=(\d+)/m.exec(info)?.[1] ?? 0);
}

/** GET commands since the stats were reset: the store's own, and those its scripts ran. */
async function getCalls(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  return Number(/^cmdstat_get:calls=(\d+)/m.exec(info)?.[1] ?? 0);
}

/** Changes to the dataset since the server started (Redis's dirty counter): 0 means nothing was written. */
async function writes(client: Redis): Promise<number> {
  const info = await client.info('persistence');
  return Number(/^rdb_changes_since_last_save:(\d+)/m.exec(info)?.[1]);
}

const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<number> => Promise.resolve(1);

describe('breakers on a RedisStore', () => {
  let server: RedisServer;
  let client: Redis;
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  it('cost a healthy call under a count policy one EXISTS (no script, no write); with a record, one script carrying the reset of the call before, or a GET with nothing to carry; the same under a failure rate (a write); none for a rejection known locally', async () => {
    const factory = new BreakerFactory({
      store: new RedisStore({ client, prefix: `rt-${randomUUID()}:` }),
      trip: consecutiveFailures(3),
      openMs: 60_000,
    });
    const rate = new BreakerFactory({
      store: new RedisStore({ client, prefix: `rt-${randomUUID()}:` }),
      trip: failureRate(0.5, { minimumCalls: 1_000_000, windowMs: 60_000 }),
    });
    try {
      const breaker = factory.breakerFor('dep');
      await breaker.execute(ok); // the first call loads the function library
      await rate.breakerFor('dep').execute(ok); // and subscribes
      await breaker.flush();
      await rate.breakerFor('dep').flush();
      await client.config('RESETSTAT');
      const before = await writes(client);
      for (let i = 0; i < 100; i++) await breaker.execute(ok);
      await breaker.flush();
      // Every success is sent (a run another process built since the acquire must be reset),
      // without the caller waiting for it. It waits for the next call's acquire, which carries
      // it; the last leaves at the flush. With no record there is no run to reset and the call is
      // admitted: a plain EXISTS answers both (no script runs, so every EXISTS is the store's).
      // The first call has nothing to carry: its acquire is a plain GET, which finds no record.
      assert.deepEqual(await commands(client), {}, 'no script');
      assert.equal(
        await existsCalls(client),
        100,
        'an EXISTS per call after the first, carrying the success before it',
      );
      assert.equal(await getCalls(client), 1, "the first call's acquire");
      assert.equal(await writes(client), before, 'a success with no run to reset writes nothing');

      // A failure starts a run; the success after it resets the run (one write), the next ones do not.
      await breaker.execute(fail).catch(() => undefined);
      const afterFailure = await writes(client);
      await client.config('RESETSTAT');
      await breaker.execute(ok);
      await breaker.flush();
      const afterReset = await writes(client);
      assert.ok(afterReset > afterFailure, 'the first success reset the run');
      for (let i = 0; i < 9; i++) await breaker.execute(ok);
      await breaker.flush();
      // An acquire with nothing to carry reads the record with a GET (closed: admitted, no
      // script): the first call, and the first after each flush.
      assert.deepEqual(
        await commands(client),
        { fcall: 10 },
        'the reset at the flush, then eight acquires carrying the successes before them, and the last at the flush',
      );
      // These 10 EXISTS are the scripts' own (a carried success looks for the record it resets);
      // an EXISTS before each call would add 11.
      assert.equal(await existsCalls(client), 10, 'no EXISTS before the scripts');
      assert.equal(await writes(client), afterReset, 'the others had no run to reset');

      await client.config('RESETSTAT');
      for (let i = 0; i < 100; i++) await rate.breakerFor('dep').execute(ok);
      await rate.breakerFor('dep').flush();
      assert.deepEqual(
        await commands(client),
        { fcall: 100 },
        'a failure rate counts every call, carried the same (the first acquire a GET)',
      );
      await breaker.flush();

      for (let i = 0; i < 3; i++) await breaker.execute(fail).catch(() => undefined);
      await client.config('RESETSTAT');
      for (let i = 0; i < 100; i++) {
        await assert.rejects(
          breaker.execute(ok),
          (e: unknown) => isCircuitOpenError(e) && e.reason === 'open',
        );
      }
      assert.deepEqual(await commands(client), {});
    } finally {
      await factory.close();
      await rate.close();
    }
  });

  for (const [mode, options] of [
    ['per-call', {}],
    ['local-first', { maxStalenessMs: 1_000, flushIntervalMs: 200 }],
  ] as const) {
    it(`a tenant that only succeeds has no key and costs no write (${mode}); a failing one gets its record`, async () => {
      const prefix = `healthy-${randomUUID()}:`;
      const factory = new BreakerFactory<{ tenant: string }>({
        store: new RedisStore({ client, prefix }),
        trip: consecutiveFailures(3),
        name: (base, ctx) => `${base}/${ctx?.tenant ?? '-'}`,
        ...options,
      });
      try {
        await factory.breakerFor('sync', { tenant: 'warm-up' }).execute(ok);
        await client.config('RESETSTAT');
        for (let round = 0; round < 3; round++) {
          await Promise.all(
            Array.from({ length: 200 }, (_, i) =>
              factory.breakerFor('sync', { tenant: `t${i}` }).execute(ok),
            ),
          );
        }
        for (let i = 0; i < 200; i++) await factory.breakerFor('sync', { tenant: `t${i}` }).flush();
        assert.deepEqual(await client.keys(`${prefix}*`), [], 'no key for 200 healthy tenants');
        const info = await client.info('commandstats');
        for (const write of ['set', 'hset', 'pexpire', 'del']) {
          assert.doesNotMatch(info, new RegExp(`^cmdstat_${write}:`, 'm'), `no ${write}`);
        }
        await factory
          .breakerFor('sync', { tenant: 't7' })
          .execute(fail)
          .catch(() => undefined);
        await factory.breakerFor('sync', { tenant: 't7' }).flush();
        const keys = await client.keys(`${prefix}*`);
        assert.equal(keys.filter((k) => !k.endsWith(':ids')).length, 1, keys.join());
        const snapshot = await factory.breakerFor('sync', { tenant: 't7' }).state();
        assert.equal(snapshot.counts.failures, 1);
      } finally {
        await factory.close();
      }
    });
  }

  it('an adaptive throttle: a healthy tenant writes nothing, a throttled call costs no command, and it never opens', async () => {
    const prefix = `throttle-${randomUUID()}:`;
    const factory = new BreakerFactory({
      store: new RedisStore({ client, prefix }),
      trip: adaptiveThrottle(),
    });
    try {
      const breaker = factory.breakerFor('dep');
      await breaker.execute(ok);
      await breaker.flush();
      for (let i = 0; i < 50; i++) await breaker.execute(ok);
      await breaker.flush();
      assert.deepEqual(await client.keys(`${prefix}*`), [], 'no key for a healthy tenant');
      for (let i = 0; i < 400; i++) await breaker.execute(fail).catch(() => undefined);
      await breaker.flush();
      // Operators see the rate the failures reported (CLI status, dashboard).
      const policy = resolveOptions({ trip: adaptiveThrottle() }).policy;
      const seen = await new RedisStore({ client, prefix }).inspect('dep', policy);
      assert.ok(seen?.throttle !== undefined && seen.throttle.rate > 0.5, JSON.stringify(seen?.throttle));
      assert.ok(Math.abs(seen.throttle.reportedAt - seen.now) < 5_000);
      assert.match(
        formatStatus(toRow('dep', seen)),
        /^throttle {7}rejecting \d+\.\d% of calls \(reported .* ago, with failures\)$/m,
      );
      await client.config('RESETSTAT');
      let throttled = 0;
      for (let i = 0; i < 100; i++) {
        await breaker.execute(ok).catch((e: unknown) => {
          if (isCircuitOpenError(e) && e.reason === 'throttled') throttled += 1;
        });
      }
      await breaker.flush();
      const ran = 100 - throttled;
      assert.ok(throttled > 30, `throttled ${throttled}`);
      // Each call that ran: its acquire, carrying the success before (the first, with none to
      // carry, reads the record: a GET); the last success at the flush; a throttled call: nothing.
      assert.deepEqual(await commands(client), { fcall: ran });
      assert.equal((await breaker.state()).state, 'closed');
    } finally {
      await factory.close();
    }
  });

  it('escalation: one process opens a base name, and another process rejects a tenant it never saw with base-open', async () => {
    const prefix = `escalate-${randomUUID()}:`;
    const other = client.duplicate();
    const make = (c: Redis) =>
      new BreakerFactory({
        store: new RedisStore({ client: c, prefix }),
        trip: consecutiveFailures(2),
        escalate: { maxOpenFraction: 0.5, minBreakers: 3 },
      });
    const a = make(client);
    const b = make(other);
    try {
      // b is subscribed and knows the base name is closed (one store ask, then its view).
      assert.equal(await b.breakerFor('api', { tenantId: 'b-only' }).execute(ok), 1);
      for (const tenant of ['t1', 't2', 't3', 't4']) {
        for (let i = 0; i < 2; i++) {
          await a
            .breakerFor('api', { tenantId: tenant })
            .execute(fail)
            .catch(() => undefined);
        }
      }
      assert.equal((await a.baseBreaker('api')?.state())?.state, 'open');
      const deadline = Date.now() + 2_000;
      let reason = '';
      while (reason !== 'base-open' && Date.now() < deadline) {
        await b
          .breakerFor('api', { tenantId: 'never-seen' })
          .execute(ok)
          .then(
            () => new Promise((resolve) => setTimeout(resolve, 20)),
            (error: unknown) => {
              if (isCircuitOpenError(error)) reason = error.reason;
            },
          );
      }
      assert.equal(reason, 'base-open');
      assert.ok(
        (await client.keys(`${prefix}*`)).includes(`${prefix}{${Buffer.from('api/*').toString('hex')}}`),
        'a record for the base name',
      );
    } finally {
      await a.close();
      await b.close();
      other.disconnect();
    }
  });

  it('a success resets a run another process built while it ran (completion order F F S F stays closed)', async () => {
    const prefix = `interleave-${randomUUID()}:`;
    const otherClient = server.client();
    const options = { trip: consecutiveFailures(3), openMs: 60_000 };
    const a = new BreakerFactory({ ...options, store: new RedisStore({ client, prefix }) });
    const b = new BreakerFactory({ ...options, store: new RedisStore({ client: otherClient, prefix }) });
    try {
      const slow = await a.breakerFor('dep').acquire(); // admitted while the run is empty
      await b
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      await b
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      await slow.success(); // completes after both failures: the run is reset
      await a.breakerFor('dep').flush();
      await b
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      const state = await b.breakerFor('dep').state();
      assert.equal(state.state, 'closed', 'three failures, but not in a row');
      assert.equal(state.counts.consecutiveFailures, 1);
    } finally {
      await a.close();
      await b.close();
      otherClient.disconnect();
    }
  });

  it('tell each other about an open over pub/sub: the other process rejects without asking', async () => {
    const prefix = `push-${randomUUID()}:`;
    const options = { trip: consecutiveFailures(2), openMs: 60_000 };
    const a = new BreakerFactory({ ...options, store: new RedisStore({ client, prefix }) });
    const otherClient = server.client();
    const b = new BreakerFactory({ ...options, store: new RedisStore({ client: otherClient, prefix }) });
    try {
      await b.breakerFor('dep').execute(ok);
      await a
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      await a
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      const deadline = Date.now() + 5_000;
      await client.config('RESETSTAT');
      let rejected = false;
      while (!rejected && Date.now() < deadline) {
        // Until the message arrives b asks the store (and is rejected by it too); after, it does not.
        rejected = await b
          .breakerFor('dep')
          .execute(ok)
          .then(
            () => false,
            (e: unknown) => isCircuitOpenError(e),
          );
      }
      assert.ok(rejected);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await client.config('RESETSTAT');
      await assert.rejects(b.breakerFor('dep').execute(ok), (e: unknown) => isCircuitOpenError(e));
      assert.deepEqual(await commands(client), {});
    } finally {
      await a.close();
      await b.close();
      otherClient.disconnect();
    }
  });

  it('keep tenants apart: one tenant failing never opens another', async () => {
    const factory = new BreakerFactory<{ tenant: string }>({
      store: new RedisStore({ client, prefix: `tenants-${randomUUID()}:` }),
      name: (base, context) => `${base}:${context?.tenant ?? ''}`,
      trip: consecutiveFailures(3),
    });
    const tenants = ['acme', '{acme}', 'acme}', 'ac:me', 'a c m e', 'äcmé 🚦', 'x'.repeat(10_240)];
    try {
      for (let i = 0; i < 5; i++) {
        await factory
          .breakerFor('billing', { tenant: tenants[0]! })
          .execute(fail)
          .catch(() => undefined);
      }
      assert.equal((await factory.breakerFor('billing', { tenant: tenants[0]! }).state()).state, 'open');
      for (const tenant of tenants.slice(1)) {
        assert.equal(await factory.breakerFor('billing', { tenant }).execute(ok), 1, tenant.slice(0, 20));
        assert.equal((await factory.breakerFor('billing', { tenant }).state()).state, 'closed');
      }
    } finally {
      await factory.close();
    }
  });

  it('agree across processes whose clocks are a minute apart: time is the server’s', async () => {
    const prefix = `skew-${randomUUID()}:`;
    const ahead: Clock = { now: () => Date.now() + 60_000 };
    const behind: Clock = { now: () => Date.now() - 60_000 };
    const options = { trip: consecutiveFailures(2), openMs: 300, jitter: 0, halfOpenMaxCalls: 1 };
    const early = new BreakerFactory({ ...options, clock: ahead, store: new RedisStore({ client, prefix }) });
    const late = new BreakerFactory({ ...options, clock: behind, store: new RedisStore({ client, prefix }) });
    try {
      await early
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      await late
        .breakerFor('dep')
        .execute(fail)
        .catch(() => undefined);
      const [e, l] = [await early.breakerFor('dep').state(), await late.breakerFor('dep').state()];
      assert.equal(e.state, 'open', 'one failure from each process trips a threshold of 2');
      assert.equal(l.generation, e.generation);
      assert.equal(l.openUntil, e.openUntil);
      const rejected = await late
        .breakerFor('dep')
        .execute(ok)
        .catch((error: unknown) => error);
      assert.ok(isCircuitOpenError(rejected) && rejected.retryAfterMs <= 300 && rejected.retryAfterMs > 0);
      await new Promise((resolve) => setTimeout(resolve, 350));
      // One probe for both: the one that gets it holds it, the other is told half-open-full.
      let release!: () => void;
      let probing!: () => void;
      const admitted = new Promise<void>((resolve) => (probing = resolve));
      const holding = early.breakerFor('dep').execute(() => {
        probing();
        return new Promise<number>((resolve) => (release = () => resolve(1)));
      });
      await admitted; // the early process holds the one probe
      const other = await late
        .breakerFor('dep')
        .execute(ok)
        .catch((error: unknown) => error);
      assert.ok(isCircuitOpenError(other) && other.reason === 'half-open-full', String(other));
      release();
      assert.equal(await holding, 1);
      assert.equal((await late.breakerFor('dep').state()).state, 'closed');
    } finally {
      await early.close();
      await late.close();
    }
  });
});
