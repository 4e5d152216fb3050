import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { consecutiveFailures } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { policyOf } from '../../src/testing/conformance.js';
import { Fleet } from '../helpers/quorum-fleet.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

// A Redis restart without persistence forgets the active reporters (issue 25). The next heartbeat
// of a sick process answers it alone, and a quorum computed from that count (1 of 1) would let
// its failures open the breaker for the whole fleet, until the others beat again (up to 10 s).
describe('quorum through a Redis restart', { timeout: 120_000 }, () => {
  let server: RedisServer;
  let store: RedisStore;
  const prefix = `quorum-restart-${randomUUID()}:`;
  useRedisServer((s, client) => {
    server = s;
    store = new RedisStore({ client, prefix });
  });

  it('one sick process still opens only for itself after the reporters were lost', async () => {
    const name = `api-${randomUUID()}`;
    const fleet = await Fleet.start(
      4,
      { kind: 'redis', url: server.url, prefix },
      {
        minReporters: 2,
        minFraction: 0.5,
      },
    );
    try {
      // The healthy three write first, so the sick process's first count is all four (as it
      // is for a process that has been running a while).
      await Promise.all(
        [1, 2, 3].map((i) => fleet.run(i, { name: 'warm', calls: 1, fail: false, delayMs: 0 })),
      );
      await fleet.run(0, { name: 'warm', calls: 1, fail: false, delayMs: 0 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await server.kill();
      await server.restart();
      // Every process is connected again (its commands waited in the client's offline queue).
      await Promise.all(
        [0, 1, 2, 3].map((i) => fleet.run(i, { name: 'back', calls: 1, fail: false, delayMs: 0 })),
      );
      const client = server.client();
      try {
        assert.equal(await client.exists(`${prefix}reporters`), 0, 'the restart lost the reporters');
      } finally {
        client.disconnect();
      }

      const first = await fleet.run(0, { name, calls: 10, fail: true, delayMs: 1 });
      const [then, ...well] = await Promise.all([
        fleet.run(0, { name, calls: 20, fail: true, delayMs: 1 }),
        ...[1, 2, 3].map((i) => fleet.run(i, { name, calls: 30, fail: false, delayMs: 5 })),
      ]);
      const sick = { ...first.reasons };
      for (const [reason, n] of Object.entries(then.reasons)) sick[reason] = (sick[reason] ?? 0) + n;
      assert.ok(
        (sick['local-open'] ?? 0) > 0,
        `the sick process rejects its own calls: ${JSON.stringify(sick)}`,
      );
      assert.equal(sick.open ?? 0, 0, JSON.stringify(sick));
      for (const tally of well) {
        assert.deepEqual(tally.reasons, {}, 'the others are never rejected');
        assert.equal(tally.ran, 30);
      }
      const snapshot = await store.inspect(name, policyOf({ trip: consecutiveFailures(5), openMs: 60_000 }));
      assert.notEqual(snapshot?.state, 'open', 'the shared breaker never opened');
      for (const i of [1, 2, 3]) assert.deepEqual(fleet.transitions[i], [], 'nothing reached the others');
    } finally {
      await fleet.stop();
    }
  });
});
