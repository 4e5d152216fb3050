// Where a worker process finds the shared state (Redis, DynamoDB or Postgres), as its parent
// passes it on the command line, and the store a worker opens from it.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import pg from 'pg';

import type { Store } from '../../src/index.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { PostgresStore } from '../../src/stores/postgres/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

/** Where the shared state is, as the parent passes it. */
export type StoreSpec =
  | { readonly kind: 'redis'; readonly url: string; readonly prefix: string }
  | { readonly kind: 'dynamodb'; readonly endpoint: string; readonly table: string }
  | { readonly kind: 'postgres'; readonly connection: pg.PoolConfig; readonly table: string };

/** A store on a connection of this process's own, and how to let the connection go. */
export function openStore(
  spec: StoreSpec,
  redisOptions: RedisOptions = {},
): { store: Store; disconnect: () => void } {
  if (spec.kind === 'redis') {
    const client = new Redis(spec.url, redisOptions);
    return { store: new RedisStore({ client, prefix: spec.prefix }), disconnect: () => client.disconnect() };
  }
  if (spec.kind === 'postgres') {
    const pool = new pg.Pool({ max: 4, ...spec.connection });
    // A pooled connection that drops is replaced by the next query; its error must not crash us.
    pool.on('error', () => undefined);
    return { store: new PostgresStore({ pool, table: spec.table }), disconnect: () => void pool.end() };
  }
  const client = new DynamoDBClient({
    endpoint: spec.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  return {
    store: new DynamoDBStore({ client, tableName: spec.table }),
    disconnect: () => client.destroy(),
  };
}
