import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

import { consecutiveFailures } from '../../src/index.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { useDynalite } from '../helpers/dynalite.js';
import type { Dynalite } from '../helpers/dynalite.js';
import { COUNT_ALL_POLICY, Workers, sum } from '../helpers/workers.js';

// Six processes that start together, each building its DynamoDB client when the load arrives
// (the first request resolves credentials and connects), with the default timeouts.

const WORKERS = 6;
const CALLERS = 20;
const TABLE = 'circuitry-cold';

describe('DynamoDBStore from a cold start: 6 fresh processes, default options', { timeout: 180_000 }, () => {
  let server: Dynalite;
  let client: DynamoDBClient;
  useDynalite(TABLE, (s, c) => {
    server = s;
    client = c;
  });

  it('admit exactly halfOpenMaxCalls probe, count every outcome, one report per transition', async () => {
    const openMs = 300;
    const store = new DynamoDBStore({ client, tableName: TABLE });
    const policy = policyOf({ trip: consecutiveFailures(1), openMs, jitter: 0 });
    const { generation } = await store.acquire('tenant', policy);
    await store.record('tenant', policy, outcomes(generation, { failures: 1 }));
    await new Promise((resolve) => setTimeout(resolve, openMs + 50));
    const spec = { kind: 'dynamodb' as const, endpoint: server.endpoint, table: TABLE };
    const settings = { threshold: 1, openMs: 60_000, halfOpenMaxCalls: 1, cold: true, defaultTimeouts: true };
    const workers = await Workers.start(WORKERS, CALLERS, spec, settings);
    try {
      const probes = await workers.run({
        name: 'tenant',
        callsPerCaller: 1,
        failEvery: 'all',
        fnDelayMs: 50,
      });
      assert.equal(sum(probes, 'fnCalls'), 1);
      assert.equal(sum(probes, 'rejected'), WORKERS * CALLERS - 1);
      assert.equal(sum(probes, 'other'), 0);
      const seen = workers.transitions.map((t) => `${t.from}>${t.to}`).sort();
      assert.deepEqual(seen, ['half-open>open', 'open>half-open']);
    } finally {
      await workers.stop();
    }

    const counting = await Workers.start(WORKERS, CALLERS, spec, {
      ...settings,
      threshold: 1_000_000,
      trip: 'count-all',
    });
    let tallies;
    try {
      tallies = await counting.run({ name: 'counted', callsPerCaller: 5, failEvery: 4, fnDelayMs: 0 });
    } finally {
      await counting.stop();
    }
    assert.equal(sum(tallies, 'value') + sum(tallies, 'boom'), WORKERS * CALLERS * 5);
    const snapshot = await store.inspect('counted', COUNT_ALL_POLICY);
    const reports = JSON.stringify(counting.closeReports);
    assert.equal(snapshot?.counts.successes, sum(tallies, 'value'), reports);
    assert.equal(snapshot?.counts.failures, sum(tallies, 'boom'), reports);
  });
});
