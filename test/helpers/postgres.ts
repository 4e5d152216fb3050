import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';

import pg from 'pg';
import type { PoolConfig } from 'pg';

import { createBreakerSchema } from '../../src/stores/postgres/index.js';

/** The machine's Postgres (trust auth), overridable with PGHOST / PGPORT. */
export const POSTGRES: PoolConfig = {
  host: process.env.PGHOST ?? '127.0.0.1',
  port: Number(process.env.PGPORT ?? 5432),
  user: process.env.PGUSER ?? 'postgres',
  database: process.env.PGDATABASE ?? 'postgres',
};

export interface PostgresSchema {
  readonly pool: pg.Pool;
  /** A schema of this test file's own, dropped afterwards. */
  readonly schema: string;
  /** `<schema>.breakers`, created by createBreakerSchema. */
  readonly table: string;
}

/** A schema per test file, with the breaker table in it; dropped (with everything in it) afterwards. */
export function usePostgresSchema(use: (s: PostgresSchema) => void, config: PoolConfig = {}): void {
  let pool: pg.Pool;
  let schema: string;
  before(async () => {
    pool = new pg.Pool({ ...POSTGRES, max: 10, ...config });
    schema = `circuitry_test_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    await pool.query(`CREATE SCHEMA ${schema}`);
    const table = `${schema}.breakers`;
    await createBreakerSchema(pool, { table });
    use({ pool, schema, table });
  });
  after(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  });
}
