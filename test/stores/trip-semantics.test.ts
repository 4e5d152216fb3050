import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Redis } from 'ioredis';

import { failureRate, failuresInWindow } from '../../src/core/policy.js';
import type { BreakerPolicy, OutcomeBatch, TripPolicy } from '../../src/core/types.js';
import { MemoryStore } from '../../src/index.js';
import { resolveOptions } from '../../src/options.js';
import type { Store } from '../../src/store.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { useDynalite } from '../helpers/dynalite.js';
import { useRedisServer } from '../helpers/redis-server.js';

// When a closed breaker trips, checked against every store with the same scenarios (the
// conformance suite belongs to someone else's rewrite; these are the trip-policy cases of issue 11).

interface Harness {
  readonly store: Store;
  /** Moves the store's clock by `ms`, backwards when negative. */
  readonly step: (ms: number) => void;
}

function policyOf(trip: TripPolicy): BreakerPolicy {
  return resolveOptions({ trip, openMs: 1_000, jitter: 0 }).policy;
}

/** Records `outcomes` at the breaker's current generation (a new record's comes from the store's clock). */
async function recordAt(
  store: Store,
  key: string,
  policy: BreakerPolicy,
  outcomes: { successes?: number; failures?: number },
) {
  const { generation } = await store.acquire(key, policy);
  return store.record(key, policy, batch(outcomes, generation));
}

function batch(outcomes: { successes?: number; failures?: number }, generation = 1): OutcomeBatch {
  const successes = outcomes.successes ?? 0;
  const failures = outcomes.failures ?? 0;
  return {
    generation,
    successes,
    failures,
    trailingFailures: failures,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
  };
}

/** The scenarios, for one store. */
function describeTripSemantics(name: string, harness: () => Harness): void {
  describe(`${name}: trip semantics`, () => {
    it('counts outcomes recorded while the clock is behind, and trips on them', async () => {
      const { store, step } = harness();
      const key = `behind-${randomUUID()}`;
      const policy = policyOf(failuresInWindow(3, 10_000));
      // (A failure makes the newest bucket: under a count policy a success counts in no bucket.)
      await recordAt(store, key, policy, { failures: 1 });
      step(-2_000);
      const first = await recordAt(store, key, policy, { failures: 1 });
      assert.equal(first.snapshot.counts.failures, 2, 'a failure counted 2 s behind is in the window');
      const third = await recordAt(store, key, policy, { failures: 1 });
      assert.equal(third.snapshot.state, 'open');
      assert.deepEqual(third.transition, {
        from: 'closed',
        to: 'open',
        generation: first.snapshot.generation + 1,
      });
    });

    it('still forgets what fell out of the window once the clock catches up', async () => {
      const { store, step } = harness();
      const key = `behind-later-${randomUUID()}`;
      const policy = policyOf(failuresInWindow(3, 10_000));
      await recordAt(store, key, policy, { failures: 1 });
      step(-2_000);
      await recordAt(store, key, policy, { failures: 1 });
      step(12_000);
      const later = await recordAt(store, key, policy, { failures: 1 });
      assert.equal(later.snapshot.counts.failures, 1, '10 s after the newest bucket, it left the window');
      assert.equal(later.snapshot.counts.successes, 0);
      assert.equal(later.snapshot.state, 'closed');
    });

    it('trips a failure rate when failures / calls equals the ratio exactly (55/100 at 0.55)', async () => {
      const { store } = harness();
      const policy = policyOf(failureRate(0.55, { minimumCalls: 100, windowMs: 60_000 }));
      const key = `rate-55-${randomUUID()}`;
      await recordAt(store, key, policy, { successes: 45 });
      const result = await recordAt(store, key, policy, { failures: 55 });
      assert.equal(result.snapshot.state, 'open');

      const below = `rate-54-${randomUUID()}`;
      await recordAt(store, below, policy, { successes: 46 });
      const closed = await recordAt(store, below, policy, { failures: 54 });
      assert.equal(closed.snapshot.state, 'closed', '54/100 is below 0.55');
    });

    it('trips a failure rate when failures / calls equals the ratio exactly (7/25 at 0.28)', async () => {
      const { store } = harness();
      const policy = policyOf(failureRate(0.28, { minimumCalls: 25, windowMs: 60_000 }));
      const key = `rate-28-${randomUUID()}`;
      await recordAt(store, key, policy, { successes: 18 });
      const result = await recordAt(store, key, policy, { failures: 7 });
      assert.equal(result.snapshot.state, 'open');
    });

    it('trips a failure rate on the success that brings the calls to minimumCalls', async () => {
      const { store } = harness();
      const policy = policyOf(failureRate(0.5, { minimumCalls: 10, windowMs: 60_000 }));
      const key = `rate-success-${randomUUID()}`;
      const nine = await recordAt(store, key, policy, { failures: 9 });
      assert.equal(nine.snapshot.state, 'closed', 'only 9 calls');
      const tenth = await recordAt(store, key, policy, { successes: 1 });
      assert.equal(tenth.snapshot.counts.total, 10);
      assert.equal(tenth.snapshot.state, 'open', '9 failures in 10 calls is a rate of 0.9');
      assert.deepEqual(tenth.transition, {
        from: 'closed',
        to: 'open',
        generation: nine.snapshot.generation + 1,
      });
    });

    it('does not trip a failure rate on a success while the rate is below the ratio', async () => {
      const { store } = harness();
      const policy = policyOf(failureRate(0.5, { minimumCalls: 10, windowMs: 60_000 }));
      const key = `rate-healthy-${randomUUID()}`;
      await recordAt(store, key, policy, { failures: 4, successes: 5 });
      const tenth = await recordAt(store, key, policy, { successes: 1 });
      assert.equal(tenth.snapshot.counts.total, 10);
      assert.equal(tenth.snapshot.state, 'closed', '4 failures in 10 calls');
    });
  });
}

describeTripSemantics('MemoryStore', () => {
  const clock = new ManualClock();
  return { store: new MemoryStore({ clock }), step: (ms) => clock.set(clock.now() + ms) };
});

describe('RedisStore', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });
  describeTripSemantics('RedisStore', () => {
    let offset = 0;
    const store = new RedisStore({ client, prefix: 'trip:', timeOffsetMs: () => offset });
    return {
      store,
      step: (ms) => {
        offset += ms;
      },
    };
  });
});

describe('DynamoDBStore', () => {
  const table = 'circuitry-trip-semantics';
  let client: DynamoDBClient;
  useDynalite(table, (_server, c) => {
    client = c;
  });
  describeTripSemantics('DynamoDBStore', () => {
    const clock = new ManualClock();
    return {
      store: new DynamoDBStore({ client, tableName: table, clock }),
      step: (ms) => clock.set(clock.now() + ms),
    };
  });
});
