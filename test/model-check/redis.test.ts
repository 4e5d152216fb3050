import { after, before, describe } from 'node:test';

import { Redis } from 'ioredis';

import { describeModelCheck } from '../../src/testing/model-check.js';
import { redisHarness } from '../helpers/model-harnesses.js';
import { RedisCluster, RedisServer } from '../helpers/redis-server.js';

describe('RedisStore on one server', () => {
  let server: RedisServer;
  before(async () => {
    server = await RedisServer.start();
  });
  after(async () => {
    await server.stop();
  });
  describeModelCheck('RedisStore', () => redisHarness(() => server.client()));
});

describe('RedisStore on a 3-master cluster', () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await RedisCluster.start();
  });
  after(async () => {
    await cluster.stop();
  });
  describeModelCheck('RedisStore (cluster)', () =>
    redisHarness(() => new Redis.Cluster(cluster.startupNodes)),
  );
});
