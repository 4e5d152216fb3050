import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { BreakerFactory, failuresInWindow } from '../../src/index.js';
import type { BreakerPolicy, OutcomeBatch } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedisServer } from '../helpers/redis-server.js';

// What a quorum costs on Redis (issue 25): no store call on a success, and on a failure the same
// write as without one, plus a heartbeat at most every 250 ms while the process keeps failing.

/** A RedisStore that counts its operations. */
class CountingStore extends RedisStore {
  readonly calls = { acquire: 0, record: 0, carried: 0, heartbeat: 0 };
  override acquire(key: string, policy: BreakerPolicy) {
    this.calls.acquire += 1;
    return super.acquire(key, policy);
  }
  override record(key: string, policy: BreakerPolicy, batch: OutcomeBatch) {
    this.calls.record += 1;
    return super.record(key, policy, batch);
  }
  override recordThenAcquire(key: string, policy: BreakerPolicy, batch: OutcomeBatch) {
    this.calls.carried += 1;
    return super.recordThenAcquire(key, policy, batch);
  }
  override heartbeat(reporter: string, ttlMs: number) {
    this.calls.heartbeat += 1;
    return super.heartbeat(reporter, ttlMs);
  }
}

/**
 * Counts the round trips `client` sends for the store: scripts, the plain EXISTS that answers
 * for a breaker with no record, and the GET that answers an acquire of a closed one (what the
 * scripts run inside is not sent).
 */
function countSent(client: Redis): { readonly sent: () => number; restore: () => void } {
  const original = client.sendCommand.bind(client);
  let n = 0;
  client.sendCommand = (command: { name: string }, ...rest: unknown[]) => {
    if (/^(fcall|fcall_ro|evalsha|eval|exists|get)$/i.test(command.name)) n += 1;
    return (original as (...args: unknown[]) => unknown)(command, ...rest);
  };
  return { sent: () => n, restore: () => void (client.sendCommand = original) };
}

describe('what a quorum costs on Redis', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });

  it('a success costs what it costs without one; a failure, the same write and few heartbeats', async (t) => {
    const CALLS = 200;
    const figures: Record<
      string,
      { acquire: number; record: number; carried: number; heartbeat: number; commands: number }
    > = {};
    const counter = countSent(client);
    t.after(counter.restore);
    const sentCommands = async (): Promise<number> => counter.sent();
    for (const quorum of [false, { minReporters: 2, minFraction: 0.5 }] as const) {
      const store = new CountingStore({ client, prefix: `qc-${randomUUID()}:` });
      const factory = new BreakerFactory({ store, trip: failuresInWindow(1_000_000, 60_000), quorum });
      const breaker = factory.breakerFor('api');
      const phase = async (label: string, fail: boolean): Promise<void> => {
        const before = { ...store.calls, commands: await sentCommands() };
        const started = performance.now();
        for (let i = 0; i < CALLS; i++) {
          await breaker
            .execute(() => (fail ? Promise.reject(new Error('down')) : Promise.resolve('ok')))
            .catch(() => undefined);
        }
        await breaker.flush();
        const ms = performance.now() - started;
        const after = { ...store.calls, commands: await sentCommands() };
        figures[`${quorum === false ? 'without' : 'with'} a quorum, ${label}`] = {
          acquire: after.acquire - before.acquire,
          record: after.record - before.record,
          carried: after.carried - before.carried,
          heartbeat: after.heartbeat - before.heartbeat,
          commands: after.commands - before.commands,
        };
        if (quorum !== false && fail) {
          const beats = after.heartbeat - before.heartbeat;
          assert.ok(
            beats <= 1 + Math.ceil(ms / 250),
            `${beats} heartbeats in ${ms.toFixed(0)} ms of failures`,
          );
        }
      };
      await phase('first successes', false);
      await phase('failures', true);
      await phase('successes after failures', false);
      await factory.close();
    }
    t.diagnostic(JSON.stringify(figures));
    for (const label of ['first successes', 'failures', 'successes after failures']) {
      const without = figures[`without a quorum, ${label}`]!;
      const withQuorum = figures[`with a quorum, ${label}`]!;
      assert.equal(withQuorum.acquire, without.acquire, label);
      assert.equal(withQuorum.record, without.record, label);
      assert.equal(withQuorum.carried, without.carried, label);
      // Every store call here is one round trip (a script, an acquire carrying a record too, an
      // EXISTS for a breaker with no record, or a GET for an acquire of a closed breaker): the
      // commands sent are the calls made.
      assert.equal(
        withQuorum.commands,
        withQuorum.acquire + withQuorum.record + withQuorum.carried + withQuorum.heartbeat,
        label,
      );
    }
    // The first write of a factory tells the store it is active: one heartbeat, then none while
    // it only succeeds (the next is due after half a window).
    assert.equal(figures['with a quorum, first successes']!.heartbeat, 1);
    assert.equal(figures['with a quorum, successes after failures']!.heartbeat, 0);
  });
});
