import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { BreakerFactory, failureRate, isCircuitOpenError } from '../../src/index.js';
import { PostgresStore, createBreakerSchema } from '../../src/stores/postgres/index.js';
import { policyOf } from '../../src/testing/conformance.js';
import { PostgresServer } from '../helpers/postgres-server.js';

// A server of the test's own, crashed and restarted (`pg_ctl restart -m immediate`) while callers
// keep calling. The caller's work must never fail because the store did; the store is used again
// once the server is back, and the subscription comes back and says pushes may have been missed.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('a Postgres server restart mid-run', { timeout: 60_000 }, () => {
  let server: PostgresServer;
  let pool: pg.Pool;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await PostgresServer.start();
    pool = new pg.Pool({ ...server.connection, max: 10 });
    // Connections the crash cuts while idle in the pool: the pool replaces them.
    pool.on('error', () => undefined);
    await createBreakerSchema(pool, { table: 'breakers' });
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await pool.end();
    await server.stop();
    assert.deepEqual(unhandled, []);
  });

  it('no call fails, counting resumes in the store, and the subscription resyncs', async () => {
    const store = new PostgresStore({ pool, table: 'breakers' });
    // A failure rate that cannot trip: every outcome is written (count policies skip idle successes).
    const trip = failureRate(1, { minimumCalls: 1_000_000, windowMs: 600_000 });
    const policy = policyOf({ trip });
    let resyncs = 0;
    const unsubscribe = await store.subscribe(() => undefined, { onResync: () => void (resyncs += 1) });
    const factory = new BreakerFactory({
      store,
      storeTimeoutMs: 200,
      trip,
    });
    const breaker = factory.breakerFor('dep');
    let report: Awaited<ReturnType<BreakerFactory['close']>> | undefined;
    let running = true;
    let calls = 0;
    let wrong = 0;
    const boom = new Error('dependency failed');
    const callers = Array.from({ length: 50 }, async (_, i) => {
      for (let n = 0; running; n++) {
        const fails = (i + n) % 5 === 0;
        try {
          const value = await breaker.execute(async () => {
            await new Promise((resolve) => setImmediate(resolve));
            if (fails) throw boom;
            return 'value';
          });
          if (value !== 'value' || fails) wrong += 1;
        } catch (error) {
          // Not a rejection either: a million calls would be needed before it could open.
          if (error !== boom || isCircuitOpenError(error)) wrong += 1;
        }
        calls += 1;
        await sleep(2);
      }
    });
    try {
      await sleep(700);
      const before = (await store.inspect('dep', policy))?.counts.successes ?? 0;
      assert.ok(before > 0, 'the store counts before the restart');
      await server.restartImmediate();
      const restartedAt = calls;
      // Until the local fallback hands back to the store and the kept outcomes are written.
      let after = 0;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        await sleep(200);
        after = (await store.inspect('dep', policy).catch(() => null))?.counts.successes ?? 0;
        if (after > before && resyncs > 0 && calls > restartedAt + 500) break;
      }
      assert.ok(after > before, `counting resumed in the store (${before} before, ${after} after)`);
      assert.ok(resyncs > 0, 'the subscription came back and asked for a resync');
    } finally {
      running = false;
      await Promise.all(callers);
      await unsubscribe();
      report = await factory.close();
    }
    assert.equal(report?.complete, true, 'what was kept during the restart was written afterwards');
    assert.equal(wrong, 0, 'every call ended with its own value or error');
    assert.ok(calls > 1_000, `${calls} calls`);
  });
});
