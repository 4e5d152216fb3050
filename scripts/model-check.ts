// The model check, long: `npm run model-check -- --minutes 10 [--store redis] [--seed N]
// [--cross all|pairs|none]`. Runs the concurrent model check (src/testing/model-check.ts) on every
// store in turn (or one), each for the given minutes, against servers it starts itself (Redis, a
// Redis Cluster, dynalite) and the machine's Postgres. `--seed N` replays one history (as a failure
// report prints it). `--cross` says which settle-cross steps run (ModelCheckOptions.crossClient):
// all by default, pairs on DynamoDB.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { Redis } from 'ioredis';
import pg from 'pg';

import { createBreakerSchema } from '../src/stores/postgres/index.js';
import { replayModelCheck, runModelCheck } from '../src/testing/model-check.js';
import type { ModelCheckHarness, ModelCheckOptions } from '../src/testing/model-check.js';
import { Dynalite } from '../test/helpers/dynalite.js';
import {
  dynamoHarness,
  memoryHarness,
  postgresHarness,
  redisHarness,
} from '../test/helpers/model-harnesses.js';
import { POSTGRES } from '../test/helpers/postgres.js';
import { RedisCluster, RedisServer } from '../test/helpers/redis-server.js';
import { createBreakerTable } from '../src/stores/dynamodb/index.js';

const STORES = ['memory', 'redis', 'redis-cluster', 'dynamodb', 'postgres'] as const;
type StoreName = (typeof STORES)[number];

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    store: { type: 'string' },
    seed: { type: 'string' },
    // settle-cross steps: of two or three clients (all, the default), two (pairs), or none.
    cross: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
if (!Number.isFinite(minutes) || minutes <= 0) {
  console.error(`--minutes: expected a positive number, got ${values.minutes}`);
  process.exit(2);
}
const only = values.store as StoreName | undefined;
if (only !== undefined && !STORES.includes(only)) {
  console.error(`--store: expected one of ${STORES.join(', ')}, got ${only}`);
  process.exit(2);
}
const seed = values.seed === undefined ? undefined : Number(values.seed);
const CROSS = { all: true, pairs: 'pairs', none: false } as const;
if (values.cross !== undefined && !(values.cross in CROSS)) {
  console.error(`--cross: expected one of ${Object.keys(CROSS).join(', ')}, got ${values.cross}`);
  process.exit(2);
}
const cross = values.cross === undefined ? undefined : CROSS[values.cross as keyof typeof CROSS];

/** Starts what a store needs; returns its harness and how to stop it. */
async function start(store: StoreName): Promise<{ harness: ModelCheckHarness; stop: () => Promise<void> }> {
  switch (store) {
    case 'memory':
      return { harness: memoryHarness(), stop: async () => undefined };
    case 'redis': {
      const server = await RedisServer.start();
      return { harness: redisHarness(() => server.client()), stop: () => server.stop() };
    }
    case 'redis-cluster': {
      const cluster = await RedisCluster.start();
      return {
        harness: redisHarness(() => new Redis.Cluster(cluster.startupNodes)),
        stop: () => cluster.stop(),
      };
    }
    case 'dynamodb': {
      const server = await Dynalite.start();
      const client = server.client();
      await createBreakerTable(client, 'model-check');
      client.destroy();
      return { harness: dynamoHarness(server.endpoint, 'model-check'), stop: () => server.stop() };
    }
    case 'postgres': {
      const pool = new pg.Pool(POSTGRES);
      const schema = `circuitry_model_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
      await pool.query(`CREATE SCHEMA ${schema}`);
      await createBreakerSchema(pool, { table: `${schema}.breakers` });
      return {
        harness: postgresHarness(POSTGRES, `${schema}.breakers`),
        stop: async () => {
          await pool.query(`DROP SCHEMA ${schema} CASCADE`);
          await pool.end();
        },
      };
    }
  }
}

let failed = false;
for (const store of only === undefined ? STORES : [only]) {
  const { harness, stop } = await start(store);
  const options: ModelCheckOptions = {
    log: (line) => console.log(`  ${store}: ${line}`),
    ...(store === 'memory' ? { faults: ['failed-write', 'late-reply'] as const } : {}),
    crossClient: cross ?? true,
  };
  const started = performance.now();
  try {
    const report =
      seed === undefined
        ? await runModelCheck(harness, { ...options, budgetMs: minutes * 60_000 })
        : await replayModelCheck(harness, seed, options);
    console.log(
      `${store}: seed ${report.seed}: ${report.histories} histories, ${report.steps} steps, ` +
        `${report.faults} faults, ${report.quorum.histories} with a quorum (${report.quorum.localOpens} local opens), no violation (${((performance.now() - started) / 1_000).toFixed(0)} s)`,
    );
  } catch (error) {
    failed = true;
    console.error(`${store}: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await stop();
  }
}
process.exit(failed ? 1 : 0);
