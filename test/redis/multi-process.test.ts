import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { consecutiveFailures } from '../../src/index.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { useRedisServer } from '../helpers/redis-server.js';
import { COUNT_ALL_POLICY, Workers, sum } from '../helpers/workers.js';

// Eight worker processes, fifty concurrent callers each, on one breaker in one redis-server.

const WORKERS = 8;
const CALLERS = 50;

describe('RedisStore across 8 processes x 50 concurrent callers', { timeout: 120_000 }, () => {
  let server: RedisServer;
  let client: Redis;
  useRedisServer((s, c) => {
    server = s;
    client = c;
  });

  it('loses no outcome: every success and failure executed is in the store', async () => {
    const prefix = `mp-${randomUUID()}:`;
    const workers = await Workers.start(
      WORKERS,
      CALLERS,
      { kind: 'redis', url: server.url, prefix },
      {
        threshold: 1_000_000,
        trip: 'count-all',
        openMs: 1_000,
        halfOpenMaxCalls: 1,
      },
    );
    try {
      const tallies = await workers.run({ name: 'shared', callsPerCaller: 10, failEvery: 3, fnDelayMs: 0 });
      const store = new RedisStore({ client, prefix });
      const snapshot = await store.inspect('shared', COUNT_ALL_POLICY);
      assert.equal(sum(tallies, 'other'), 0);
      assert.equal(sum(tallies, 'value') + sum(tallies, 'boom'), WORKERS * CALLERS * 10);
      assert.equal(snapshot?.counts.successes, sum(tallies, 'value'));
      assert.equal(snapshot?.counts.failures, sum(tallies, 'boom'));
    } finally {
      await workers.stop();
    }
  });

  it('in half-open, exactly halfOpenMaxCalls calls reach fn cluster-wide, and each transition is reported once', async () => {
    const prefix = `mp-${randomUUID()}:`;
    const openMs = 400;
    // The test's own store opens each round's breaker for openMs; the workers' policy re-opens it
    // for a minute when the probes fail, so a caller whose acquire comes late on a busy machine
    // finds it open, not in a second half-open period with probes of its own.
    const settings = { threshold: 1, openMs: 60_000, halfOpenMaxCalls: 2 };
    const workers = await Workers.start(
      WORKERS,
      CALLERS,
      { kind: 'redis', url: server.url, prefix },
      settings,
    );
    const store = new RedisStore({ client, prefix });
    const policy = policyOf({ trip: consecutiveFailures(1), openMs, halfOpenMaxCalls: 2, jitter: 0 });
    try {
      for (let round = 0; round < 5; round++) {
        const name = `round-${round}`;
        const { generation } = await store.acquire(name, policy);
        const opened = await store.record(name, policy, outcomes(generation, { failures: 1 }));
        assert.equal(opened.snapshot.state, 'open');
        await new Promise((resolve) => setTimeout(resolve, openMs + 250));
        workers.transitions.length = 0;
        // Every caller at once; each probe fails, so the breaker re-opens and admits no one else.
        // Each probe runs long enough that both leases are granted before the first one fails.
        const tallies = await workers.run({ name, callsPerCaller: 1, failEvery: 'all', fnDelayMs: 300 });
        assert.equal(
          sum(tallies, 'fnCalls'),
          2,
          `round ${round}, transitions ${JSON.stringify(workers.transitions)}`,
        );
        assert.equal(sum(tallies, 'boom'), 2);
        assert.equal(sum(tallies, 'rejected'), WORKERS * CALLERS - 2);
        const seen = workers.transitions.map((t) => `${t.from}>${t.to}`).sort();
        assert.deepEqual(seen, ['half-open>open', 'open>half-open'], `round ${round}`);
      }
    } finally {
      await workers.stop();
    }
  });
});
