import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import type { PoolConfig } from 'pg';

import type { Clock } from '../../src/core/clock.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { PostgresStore } from '../../src/stores/postgres/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import type { ModelCheckHarness } from '../../src/testing/model-check.js';
import { answerWithItem } from './dynalite.js';

/** Model-check harnesses: one store per client, each on a connection of its own, on the model's clock. */

/** One `MemoryStore` shared by every client (it lives in one process). */
export function memoryHarness(): ModelCheckHarness {
  let store: MemoryStore | null = null;
  return { makeStore: (clock: Clock) => (store ??= new MemoryStore({ clock })) };
}

/** A `RedisStore` per client, each on its own ioredis client (or Cluster client). */
export function redisHarness(connect: () => Redis | Cluster, prefix = 'model-check:'): ModelCheckHarness {
  const clients: Array<Redis | Cluster> = [];
  return {
    makeStore: (clock: Clock) => {
      const client = connect();
      clients.push(client);
      return new RedisStore({ client, prefix, timeOffsetMs: () => clock.now() - Date.now() });
    },
    close: () => {
      for (const client of clients) client.disconnect();
    },
  };
}

/** A `DynamoDBStore` per client, each with its own `DynamoDBClient`. */
export function dynamoHarness(endpoint: string, tableName: string): ModelCheckHarness {
  const clients: DynamoDBClient[] = [];
  return {
    makeStore: (clock: Clock) => {
      const connect = () =>
        new DynamoDBClient({
          endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
          maxAttempts: 1,
        });
      const client = connect();
      // Every other client has its failed conditions answered with the item, as DynamoDB does.
      if (clients.length % 2 === 1) answerWithItem(client, connect());
      clients.push(client);
      return new DynamoDBStore({ client, tableName, clock });
    },
    close: () => {
      for (const client of clients) client.destroy();
    },
  };
}

/** A `PostgresStore` per client, each with a pool of its own. */
export function postgresHarness(config: PoolConfig, table: string): ModelCheckHarness {
  const pools: pg.Pool[] = [];
  return {
    makeStore: (clock: Clock) => {
      const pool = new pg.Pool({ ...config, max: 2 });
      pools.push(pool);
      return new PostgresStore({ pool, table, timeOffsetMs: () => clock.now() - Date.now() });
    },
    close: async () => {
      await Promise.all(pools.map((pool) => pool.end()));
    },
  };
}
