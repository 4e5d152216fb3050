import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { consecutiveFailures } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { useRedisServer } from '../helpers/redis-server.js';
import { COUNT_ALL_POLICY, Workers, sum } from '../helpers/workers.js';

// Processes that start together, as in a rolling deploy or a scale-out: each builds its Redis
// client and its factory when the load arrives, with the default timeouts, and calls at once. The
// first calls include connecting; they must not be mistaken for an outage.

const WORKERS = 8;
const CALLERS = 50;

describe(
  'RedisStore from a cold start: 8 fresh processes x 50 callers, default options',
  { timeout: 180_000 },
  () => {
    let server: RedisServer;
    let client: Redis;
    useRedisServer((s, c) => {
      server = s;
      client = c;
    });

    it('count every outcome exactly, and close() leaves nothing unwritten', async () => {
      const prefix = `cold-${randomUUID()}:`;
      const workers = await Workers.start(
        WORKERS,
        CALLERS,
        { kind: 'redis', url: server.url, prefix },
        {
          threshold: 1_000_000,
          trip: 'count-all',
          openMs: 1_000,
          halfOpenMaxCalls: 1,
          cold: true,
          defaultTimeouts: true,
        },
      );
      let tallies;
      try {
        tallies = await workers.run({ name: 'shared', callsPerCaller: 20, failEvery: 3, fnDelayMs: 0 });
      } finally {
        await workers.stop();
      }
      assert.equal(sum(tallies, 'other'), 0);
      assert.equal(sum(tallies, 'value') + sum(tallies, 'boom'), WORKERS * CALLERS * 20);
      const snapshot = await new RedisStore({ client, prefix }).inspect('shared', COUNT_ALL_POLICY);
      assert.equal(snapshot?.counts.successes, sum(tallies, 'value'));
      assert.equal(snapshot?.counts.failures, sum(tallies, 'boom'));
      assert.deepEqual(
        workers.closeReports.map((r) => r.complete),
        Array.from({ length: WORKERS }, () => true),
      );
    });

    it('admit exactly halfOpenMaxCalls probes cluster-wide into a half-open breaker, one report per transition', async () => {
      const prefix = `cold-${randomUUID()}:`;
      const openMs = 300;
      const store = new RedisStore({ client, prefix });
      const policy = policyOf({ trip: consecutiveFailures(1), openMs, halfOpenMaxCalls: 2, jitter: 0 });
      const { generation } = await store.acquire('tenant', policy);
      assert.equal(
        (await store.record('tenant', policy, outcomes(generation, { failures: 1 }))).snapshot.state,
        'open',
      );
      await new Promise((resolve) => setTimeout(resolve, openMs + 50));
      const workers = await Workers.start(
        WORKERS,
        CALLERS,
        { kind: 'redis', url: server.url, prefix },
        { threshold: 1, openMs: 60_000, halfOpenMaxCalls: 2, cold: true, defaultTimeouts: true },
      );
      try {
        // Every caller at once; each probe fails, so the breaker re-opens and admits no one else.
        const tallies = await workers.run({
          name: 'tenant',
          callsPerCaller: 1,
          failEvery: 'all',
          fnDelayMs: 30,
        });
        assert.equal(sum(tallies, 'fnCalls'), 2);
        assert.equal(sum(tallies, 'rejected'), WORKERS * CALLERS - 2);
        assert.equal(sum(tallies, 'other'), 0);
        const seen = workers.transitions.map((t) => `${t.from}>${t.to}`).sort();
        assert.deepEqual(seen, ['half-open>open', 'open>half-open']);
      } finally {
        await workers.stop();
      }
    });
  },
);
