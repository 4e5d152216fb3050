import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { consecutiveFailures } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { outcomes, policyOf } from '../../src/testing/conformance.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { Workers } from '../helpers/workers.js';

// A process SIGKILLed while its call holds the half-open probe (a BullMQ worker killed mid-job):
// with the breaker's timeoutMs set, the probe's lease is timeoutMs + 1 s, so the breaker is
// half-open-full for that long at most (not the 30 s of a lease without a timeout), and then
// another process probes.

const TIMEOUT_MS = 2_000;
const OPEN_MS = 300;

describe(
  'a prober killed mid-call holds the half-open probe for timeoutMs + 1 s at most (Redis)',
  { timeout: 60_000 },
  () => {
    let server: RedisServer;
    let client: Redis;
    useRedisServer((s, c) => {
      server = s;
      client = c;
    });

    it('frees the probe a second after the call would have timed out, and only then', async () => {
      const prefix = `lease-${randomUUID()}:`;
      const workers = await Workers.start(
        2,
        1,
        { kind: 'redis', url: server.url, prefix },
        {
          threshold: 1,
          openMs: OPEN_MS,
          halfOpenMaxCalls: 1,
          timeoutMs: TIMEOUT_MS,
        },
      );
      try {
        const store = new RedisStore({ client, prefix });
        // The workers' policy, for the parent's own store calls (the lease comes from the caller's).
        const policy = policyOf({
          trip: consecutiveFailures(1),
          openMs: OPEN_MS,
          jitter: 0,
          timeoutMs: TIMEOUT_MS,
        });
        assert.equal(policy.probeLeaseMs, TIMEOUT_MS + 1_000);
        const name = 'tenant';
        const { generation } = await store.acquire(name, policy);
        await store.record(name, policy, outcomes(generation, { failures: 1 }));
        await new Promise((resolve) => setTimeout(resolve, OPEN_MS + 300));
        // Worker 0's call becomes the probe and never ends.
        workers.hold(0, name, 1);
        for (let i = 0; (await store.inspect(name, policy))?.activeProbes !== 1; i++) {
          assert.ok(i < 500, 'worker 0 took the probe');
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        const took = performance.now();
        await workers.kill(0);
        // Meanwhile every other caller is told half-open-full.
        const turnedAway = await store.acquire(name, policy);
        assert.equal(turnedAway.reason, 'half-open-full');
        assert.ok(turnedAway.retryAfterMs <= TIMEOUT_MS + 1_000, `retryAfterMs ${turnedAway.retryAfterMs}`);
        // Then, once the lease has ended, the next caller is the probe.
        let freedAfterMs = 0;
        for (;;) {
          const answer = await store.acquire(name, policy);
          if (answer.admitted) {
            assert.notEqual(answer.lease, null, 'admitted as the probe');
            freedAfterMs = performance.now() - took;
            break;
          }
          assert.equal(answer.reason, 'half-open-full');
          assert.ok(performance.now() - took < 10_000, 'the probe was freed within 10 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(
          freedAfterMs >= TIMEOUT_MS && freedAfterMs <= TIMEOUT_MS + 1_000 + 500,
          `freed after ${freedAfterMs.toFixed(0)} ms`,
        );
      } finally {
        await workers.stop();
      }
    });
  },
);
