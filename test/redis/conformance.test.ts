import { after, before, describe } from 'node:test';

import { Redis } from 'ioredis';
import type { Cluster } from 'ioredis';

import { breakerKey } from '../../src/stores/redis/keys.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { describeStoreConformance } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { RedisCluster, useRedisServer } from '../helpers/redis-server.js';

const PREFIX = 'conformance:';

/**
 * Spoils the record of `name` the way `kind` says, as a foreign writer or another version would.
 * A record is one packed string (common.lua encode): byte 1 marks it, then the field mask.
 */
export async function corruptRedisRecord(
  client: Redis | Cluster,
  key: string,
  kind: CorruptionKind,
): Promise<void> {
  const packed = (await client.getBuffer(key)) ?? Buffer.from([0xa0, 0x00, 0, 0, 0, 1, 2]);
  const ttl = await client.pttl(key);
  const put = async (value: Buffer | string) => {
    await client.del(key);
    if (ttl > 0) await client.set(key, value, 'PX', ttl);
    else await client.set(key, value);
  };
  switch (kind) {
    case 'garbage':
      await put('not a record');
      return;
    case 'missing-field':
      // Cut short: the fields the mask announces run past the end.
      await put(packed.subarray(0, packed.length - 1));
      return;
    case 'wrong-type':
      // A mask naming fields this version does not know.
      await put(Buffer.concat([packed.subarray(0, 1), Buffer.from([0xff, 0xff, 0x7f]), packed.subarray(2)]));
      return;
    case 'foreign-schema':
      await put(Buffer.concat([Buffer.from([0xb0]), packed.subarray(1)]));
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
