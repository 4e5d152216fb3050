import type { Pool } from 'pg';

import { DEFAULT_TABLE, parseTableName } from './names.js';
import { schemaSql } from './schema.js';

/** Options of `createBreakerSchema`. */
export interface CreateBreakerSchemaOptions {
  /** `name` (created in the first schema of `search_path`) or `schema.name`. @defaultValue 'circuitry_breakers' */
  readonly table?: string;
}

/** Where `createBreakerSchema` made (or found) the table. */
export interface CreateBreakerSchemaResult {
  /** The schema the table and functions are in. */
  readonly schema: string;
  /** The table's name, without the schema. */
  readonly table: string;
}

/** Key of the advisory lock that serialises schema changes (any table): "circuitry" in ASCII. */
const LOCK_KEY = 0x63697263756974;

/**
 * Creates the table, the batch-id table and the functions a `PostgresStore` needs, in one
 * transaction under an advisory lock, so several processes may run it at once at start-up.
 * Idempotent: tables and indexes are created if missing, functions replaced. For teams that run
 * migrations themselves, docs/postgres.md prints the same SQL.
 */
export async function createBreakerSchema(
  pool: Pool,
  options: CreateBreakerSchemaOptions = {},
): Promise<CreateBreakerSchemaResult> {
  const name = parseTableName(options.table ?? DEFAULT_TABLE);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    let schema = name.schema;
    if (schema === null) {
      const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
      schema = rows[0]?.schema ?? null;
      if (schema === null)
        throw new Error('createBreakerSchema: no schema in search_path to create the table in');
    }
    await client.query(schemaSql({ schema, table: name.table }));
    await client.query('COMMIT');
    return { schema, table: name.table };
  } catch (error) {
    // A connection that cannot roll back is not given back to the pool.
    await client.query('ROLLBACK').catch((rollback: unknown) => {
      broken = rollback instanceof Error ? rollback : new Error(String(rollback));
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
