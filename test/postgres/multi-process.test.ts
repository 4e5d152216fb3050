import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type pg from 'pg';

import { consecutiveFailures } from '../../src/index.js';
import { PostgresStore } from '../../src/stores/postgres/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { POSTGRES, usePostgresSchema } from '../helpers/postgres.js';
import { COUNT_ALL_POLICY, Workers, sum } from '../helpers/workers.js';

// Eight worker processes, fifty concurrent callers each, on one breaker row in the machine's
// Postgres: warm (clients made before the load), then cold (made when the load arrives, default
// timeouts: the first calls include connecting and must not be mistaken for an outage).

const WORKERS = 8;
const CALLERS = 50;

describe('PostgresStore across 8 processes x 50 concurrent callers', { timeout: 120_000 }, () => {
  let pool: pg.Pool;
  let table: string;
  usePostgresSchema((s) => {
    pool = s.pool;
    table = s.table;
  });

  for (const cold of [false, true]) {
    const how = cold ? 'cold start, default timeouts' : 'warm';
    const extra = cold ? { cold: true, defaultTimeouts: true } : {};

    it(`${how}: loses no outcome, every success and failure executed is in the store`, async () => {
      const name = `shared-${cold}`;
      const workers = await Workers.start(
        WORKERS,
        CALLERS,
        { kind: 'postgres', connection: POSTGRES, table },
        { threshold: 1_000_000, trip: 'count-all', openMs: 1_000, halfOpenMaxCalls: 1, ...extra },
      );
      let tallies;
      try {
        tallies = await workers.run({ name, callsPerCaller: 10, failEvery: 3, fnDelayMs: 0 });
      } finally {
        await workers.stop();
      }
      const store = new PostgresStore({ pool, table });
      const snapshot = await store.inspect(name, COUNT_ALL_POLICY);
      assert.equal(sum(tallies, 'other'), 0);
      assert.equal(sum(tallies, 'value') + sum(tallies, 'boom'), WORKERS * CALLERS * 10);
      assert.equal(snapshot?.counts.successes, sum(tallies, 'value'));
      assert.equal(snapshot?.counts.failures, sum(tallies, 'boom'));
      assert.deepEqual(
        workers.closeReports.map((r) => r.complete),
        Array.from({ length: WORKERS }, () => true),
      );
    });

    it(`${how}: in half-open, exactly halfOpenMaxCalls calls reach fn cluster-wide, one report per transition`, async () => {
      const openMs = 300;
      const store = new PostgresStore({ pool, table });
      const policy = policyOf({ trip: consecutiveFailures(1), openMs, halfOpenMaxCalls: 2, jitter: 0 });
      const rounds = cold ? 1 : 3;
      const open = async (name: string): Promise<void> => {
        const { generation } = await store.acquire(name, policy);
        const opened = await store.record(name, policy, outcomes(generation, { failures: 1 }));
        assert.equal(opened.snapshot.state, 'open');
        await new Promise((resolve) => setTimeout(resolve, openMs + 100));
      };
      // Cold: the breaker is already half-open-due when the processes start.
      if (cold) await open(`round-${cold}-0`);
      const workers = await Workers.start(
        WORKERS,
        CALLERS,
        { kind: 'postgres', connection: POSTGRES, table },
        // The test's own store opens each round's breaker for openMs; the workers' policy re-opens
        // it for a minute when the probes fail, so a caller whose acquire reaches the row late (400
        // acquires queue on one row lock on a busy machine) finds it open, not in a second
        // half-open period with probes of its own (4 probes where 2 are allowed, seen once in CI).
        { threshold: 1, openMs: 60_000, halfOpenMaxCalls: 2, ...extra },
      );
      try {
        for (let round = 0; round < rounds; round++) {
          const name = `round-${cold}-${round}`;
          if (!cold) await open(name);
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
          assert.equal(sum(tallies, 'other'), 0);
          const seen = workers.transitions.map((t) => `${t.from}>${t.to}`).sort();
          assert.deepEqual(seen, ['half-open>open', 'open>half-open'], `round ${round}`);
        }
      } finally {
        await workers.stop();
      }
    });
  }
});
