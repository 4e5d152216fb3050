import { randomUUID } from 'node:crypto';

import { RedisStore } from '../../src/stores/redis/index.js';
import { describeQuorumFleet } from '../helpers/quorum-fleet.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

describeQuorumFleet('Redis', () => {
  let server: RedisServer;
  let store: RedisStore;
  // A prefix of its own: the reporters the store counts are this file's only.
  const prefix = `quorum-${randomUUID()}:`;
  useRedisServer((s, client) => {
    server = s;
    store = new RedisStore({ client, prefix });
  });
  return {
    spec: () => ({ kind: 'redis', url: server.url, prefix }),
    inspect: (name, policy) => Promise.resolve(store.inspect(name, policy)),
  };
});
