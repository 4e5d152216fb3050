import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import type { Store } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { RedisServer } from '../helpers/redis-server.js';

// Real outages of a real redis-server under many concurrent calls: SIGKILL (then a restart on the
// same port) and SIGSTOP (then SIGCONT). The caller's work must never fail because the store did.

const STORE_TIMEOUT_MS = 100;

/** Counts the store calls started, to show an outage does not pile calls up. */
function counting(store: Store): { store: Store; started: () => number } {
  let started = 0;
  const wrapped: Store = {
    acquire: (key, policy) => (started++, store.acquire(key, policy)),
    record: (key, policy, batch) => (started++, store.record(key, policy, batch)),
    inspect: (key, policy) => (started++, store.inspect(key, policy)),
    force: (key, policy, override) => (started++, store.force(key, policy, override)),
    list: (prefix, cursor) => store.list(prefix, cursor),
  };
  return { store: wrapped, started: () => started };
}

interface Load {
  readonly calls: number;
  readonly wrong: number;
  readonly slowest: number;
  readonly callsAfter: (t: number) => number[];
}

/** `callers` loops calling `execute` until `stop()`; every result must be fn's own. */
function load(breaker: ReturnType<BreakerFactory['breakerFor']>, callers: number, failing: () => boolean) {
  let running = true;
  const durations: Array<[number, number]> = [];
  let wrong = 0;
  let rejected = 0;
  let ran = 0;
  const boom = new Error('dependency failed');
  const loops = Array.from({ length: callers }, async () => {
    while (running) {
      const start = performance.now();
      const fails = failing();
      try {
        const value = await breaker.execute(async () => {
          ran += 1;
          await new Promise((resolve) => setImmediate(resolve));
          if (fails) throw boom;
          return 'value';
        });
        if (value !== 'value' || fails) wrong += 1;
      } catch (error) {
        if (isCircuitOpenError(error)) rejected += 1;
        else if (error !== boom) wrong += 1;
      }
      durations.push([start, performance.now() - start]);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  });
  return {
    /** Calls rejected so far, and calls that reached fn. */
    counts: () => ({ rejected, ran }),
    /** Stops the callers (again is fine: a failed assertion's cleanup calls it too). */
    async stop(): Promise<Load> {
      running = false;
      await Promise.all(loops);
      return {
        calls: durations.length,
        wrong,
        slowest: durations.reduce((max, [, d]) => Math.max(max, d), 0),
        callsAfter: (t) => durations.filter(([s]) => s >= t).map(([, d]) => d),
      };
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('a real Redis outage', { timeout: 60_000 }, () => {
  let server: RedisServer;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await RedisServer.start();
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await server.stop();
    assert.deepEqual(unhandled, []);
  });

  it('SIGKILL mid-run: every call ends with its own outcome, fast; a restart is used again', async () => {
    const client = server.client({ maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => undefined);
    const counted = counting(new RedisStore({ client, prefix: `kill-${randomUUID()}:` }));
    const factory = new BreakerFactory({
      store: counted.store,
      storeTimeoutMs: STORE_TIMEOUT_MS,
      trip: consecutiveFailures(1_000_000),
    });
    const breaker = factory.breakerFor('dep');
    let running: ReturnType<typeof load> | undefined;
    try {
      running = load(breaker, 100, () => Math.random() < 0.2);
      await sleep(500);
      const killedAt = performance.now();
      await server.kill();
      await sleep(1_500);
      const during = counted.started();
      await sleep(500);
      assert.ok(counted.started() - during < 20, 'the store is left alone during the outage');
      await server.restart();
      const restartedAt = performance.now();
      await sleep(1_500);
      const result = await running.stop();
      assert.equal(result.wrong, 0, 'every call ended with its own value or error');
      assert.ok(result.calls > 1_000, `${result.calls} calls`);
      // The first second pays at most a store timeout; after that, nothing waits for the store.
      const firstSecond = result.callsAfter(killedAt);
      // (A loop, not Math.max(...): a spread of 100k values overflows the stack.)
      const slowest = firstSecond.reduce((max, d) => Math.max(max, d), 0);
      assert.ok(slowest < STORE_TIMEOUT_MS * 2 + 300, `slowest ${slowest} ms since the kill`);
      const later = result.callsAfter(killedAt + 1_000).sort((a, b) => a - b);
      assert.ok(later.length > 100);
      const median = later[Math.floor(later.length / 2)]!;
      assert.ok(median < STORE_TIMEOUT_MS / 2, `median ${median} ms after the first second`);
      // Back on the store: what is counted after the restart is in Redis.
      const state = await breaker.state();
      assert.ok(state.now > 0 && state.counts.total > 0, 'counted in the restarted server');
      assert.ok(restartedAt > killedAt);
    } finally {
      // Even after a failed assertion: no caller left running, no server left stopped.
      await running?.stop();
      server.resume();
      await factory.close();
      client.disconnect();
    }
  });

  it('SIGSTOP for two seconds: no pile-up of store calls, calls keep their outcomes, SIGCONT resumes', async () => {
    const client = server.client();
    client.on('error', () => undefined);
    const counted = counting(new RedisStore({ client, prefix: `pause-${randomUUID()}:` }));
    const factory = new BreakerFactory({
      store: counted.store,
      storeTimeoutMs: STORE_TIMEOUT_MS,
      trip: consecutiveFailures(10),
      openMs: 60_000,
    });
    const breaker = factory.breakerFor('dep');
    let running: ReturnType<typeof load> | undefined;
    try {
      let dependencyDown = false;
      running = load(breaker, 100, () => dependencyDown);
      await sleep(300);
      server.pause();
      const pausedAt = counted.started();
      await sleep(500);
      // The dependency starts failing during the outage: the local breaker still cuts it off.
      dependencyDown = true;
      await sleep(500);
      const before = running.counts();
      await sleep(1_000);
      const after = running.counts();
      assert.ok(after.rejected - before.rejected > 100, 'calls rejected during the outage');
      assert.ok(
        after.ran - before.ran < 20,
        `${after.ran - before.ran} calls reached the failing dependency`,
      );
      const startedDuringPause = counted.started() - pausedAt;
      server.resume();
      dependencyDown = false;
      await sleep(1_200);
      const result = await running.stop();
      assert.equal(result.wrong, 0);
      // 100 callers for 2 s is thousands of calls; the store saw few of them: each caller admitted
      // just before the pause sends its outcome once (a success too: it may reset a run), then
      // the store is left alone but for one trial call at a time. Bounded by the callers, not by
      // the calls: no pile-up.
      assert.ok(startedDuringPause < 300, `${startedDuringPause} store calls during the pause`);
      assert.ok(result.calls > startedDuringPause * 5, `${result.calls} calls`);
      assert.ok((await breaker.state()).now > 0);
    } finally {
      // Even after a failed assertion: no caller left running, no server left stopped.
      await running?.stop();
      server.resume();
      await factory.close();
      client.disconnect();
    }
  });
});
