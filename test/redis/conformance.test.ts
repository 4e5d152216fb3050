import { after, before, describe } from 'node:test';

import { Redis } from 'ioredis';
import type { Cluster } from 'ioredis';

import { breakerKey } from '../../src/stores/redis/keys.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { describeStoreConformance } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { RedisCluster, useRedisServer } from '../helpers/redis-server.js';

const PREFIX = 'conformance:';

/** Spoils the hash of `name` the way `kind` says, as a foreign writer or an old version would. */
export async function corruptRedisRecord(
  client: Redis | Cluster,
  key: string,
  kind: CorruptionKind,
): Promise<void> {
  switch (kind) {
    case 'garbage':
      await client.del(key);
      await client.set(key, 'not a hash');
      return;
    case 'missing-field':
      await client.hdel(key, 'gen');
      return;
    case 'wrong-type':
      await client.hset(key, 'openUntil', 'soon');
      return;
    case 'foreign-schema':
      await client.hset(key, 'v', '99');
      return;
  }
}

function harness(client: Redis | Cluster) {
  let offset = 0;
  const store = new RedisStore({
    client,
    prefix: PREFIX,
    timeOffsetMs: () => offset,
    onCorruptRecord: () => undefined,
  });
  return {
    store,
    advance: (ms: number) => {
      offset += ms;
    },
    corrupt: (name: string, kind: CorruptionKind) =>
      corruptRedisRecord(client, breakerKey(PREFIX, name), kind),
  };
}

describe('RedisStore on one server', () => {
  let client: Redis;
  useRedisServer((_server, c) => {
    client = c;
  });
  describeStoreConformance('RedisStore', () => harness(client), {
    idempotentBatches: true,
    concurrencyLimit: true,
    quorum: true,
    recordThenAcquire: true,
  });
});

describe('RedisStore on a 3-master cluster', () => {
  let cluster: RedisCluster;
  let client: Cluster;
  before(async () => {
    cluster = await RedisCluster.start();
    client = new Redis.Cluster(cluster.startupNodes);
  });
  after(async () => {
    client.disconnect();
    await cluster.stop();
  });
  describeStoreConformance('RedisStore (cluster)', () => harness(client), {
    idempotentBatches: true,
    concurrencyLimit: true,
    quorum: true,
    recordThenAcquire: true,
  });
});
