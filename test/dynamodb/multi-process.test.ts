import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { consecutiveFailures, isCircuitOpenError, BreakerFactory } from '../../src/index.js';
import { DynamoDBStore, createBreakerTable } from '../../src/stores/dynamodb/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { useDynalite } from '../helpers/dynalite.js';
import type { Dynalite } from '../helpers/dynalite.js';
import { COUNT_ALL_POLICY, Workers, sum } from '../helpers/workers.js';

const WORKERS = 4;
const CALLERS = 10;
const TABLE = 'circuitry-multi';

describe('DynamoDBStore across 4 processes', { timeout: 120_000 }, () => {
  let server: Dynalite;
  let client: DynamoDBClient;
  useDynalite(TABLE, (s, c) => {
    server = s;
    client = c;
  });
  const spec = () => ({ kind: 'dynamodb' as const, endpoint: server.endpoint, table: TABLE });

  it('loses no outcome, and in half-open lets exactly halfOpenMaxCalls through with one report per transition', async () => {
    const openMs = 500;
    const workers = await Workers.start(WORKERS, CALLERS, spec(), {
      threshold: 1_000_000,
      trip: 'count-all',
      openMs,
      halfOpenMaxCalls: 2,
    });
    try {
      const tallies = await workers.run({ name: 'counted', callsPerCaller: 10, failEvery: 4, fnDelayMs: 0 });
      const store = new DynamoDBStore({ client, tableName: TABLE });
      const snapshot = await store.inspect('counted', COUNT_ALL_POLICY);
      assert.equal(sum(tallies, 'value') + sum(tallies, 'boom'), WORKERS * CALLERS * 10);
      assert.equal(snapshot?.counts.successes, sum(tallies, 'value'));
      assert.equal(snapshot?.counts.failures, sum(tallies, 'boom'));
    } finally {
      await workers.stop();
    }

    // The test's own store opens each round's breaker for openMs; the workers' policy re-opens it
    // for a minute when the probes fail, so a caller whose acquire comes late on a busy machine
    // finds it open, not in a second half-open period with probes of its own.
    const probing = await Workers.start(WORKERS, CALLERS, spec(), {
      threshold: 1,
      openMs: 60_000,
      halfOpenMaxCalls: 2,
    });
    const store = new DynamoDBStore({ client, tableName: TABLE });
    const policy = policyOf({ trip: consecutiveFailures(1), openMs, halfOpenMaxCalls: 2, jitter: 0 });
    try {
      for (let round = 0; round < 3; round++) {
        const name = `probe-${round}`;
        const { generation } = await store.acquire(name, policy);
        await store.record(name, policy, outcomes(generation, { failures: 1 }));
        await new Promise((resolve) => setTimeout(resolve, openMs + 250));
        probing.transitions.length = 0;
        // Each probe runs long enough that both leases are granted before the first one fails:
        // 40 callers race conditional writes for the item, and on a loaded machine the second
        // grant can come tens of ms after the first (a 50 ms probe then re-opened the breaker
        // before it, and the round saw one probe: a flake, not a lost admission).
        const tallies = await probing.run({ name, callsPerCaller: 1, failEvery: 'all', fnDelayMs: 1_500 });
        assert.equal(
          sum(tallies, 'fnCalls'),
          2,
          `round ${round}, transitions ${JSON.stringify(probing.transitions)}`,
        );
        assert.equal(sum(tallies, 'rejected'), WORKERS * CALLERS - 2);
        assert.equal(sum(tallies, 'other'), 0);
        const seen = probing.transitions.map((t) => `${t.from}>${t.to}`).sort();
        assert.deepEqual(seen, ['half-open>open', 'open>half-open'], `round ${round}`);
      }
    } finally {
      await probing.stop();
    }
  });

  it('an outage of DynamoDB (dynalite stopped, then back) never fails a call and is used again', async () => {
    const local = server.client();
    const factory = new BreakerFactory({
      store: new DynamoDBStore({ client: local, tableName: TABLE }),
      storeTimeoutMs: 200,
      trip: consecutiveFailures(1_000_000),
    });
    const breaker = factory.breakerFor('outage');
    let wrong = 0;
    let calls = 0;
    let running = true;
    const boom = new Error('boom');
    const loops = Array.from({ length: 20 }, async (_, i) => {
      while (running) {
        calls += 1;
        const fails = (calls + i) % 5 === 0;
        try {
          const value = await breaker.execute(async () => {
            if (fails) throw boom;
            return 'value';
          });
          if (value !== 'value' || fails) wrong += 1;
        } catch (error) {
          if (error !== boom && !isCircuitOpenError(error)) wrong += 1;
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await server.stop();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await server.restart();
      await createBreakerTable(client, TABLE); // dynalite comes back empty
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      running = false;
      await Promise.all(loops);
      await breaker.flush();
      assert.equal(wrong, 0, 'every call ended with its own value or error');
      assert.ok(calls > 200);
      // Read from the store itself: the breaker's state() is bounded by its 200 ms timeout, which
      // a loaded machine (dynalite runs in this process, beside 20 busy loops) can exceed.
      const stored = await new DynamoDBStore({ client: local, tableName: TABLE }).inspect(
        'outage',
        policyOf({ trip: consecutiveFailures(1_000_000) }),
      );
      assert.ok((stored?.counts.failures ?? 0) > 0, 'counting in the store again');
    } finally {
      running = false;
      await factory.close();
      local.destroy();
    }
  });
});
