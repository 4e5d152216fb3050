import { describe } from 'node:test';

import type pg from 'pg';

import { PostgresStore } from '../../src/stores/postgres/index.js';
import { describeStoreConformance } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { usePostgresSchema } from '../helpers/postgres.js';

/** Spoils the row of `name` the way `kind` says, as a foreign writer or an old version would. */
export async function corruptPostgresRow(
  pool: pg.Pool,
  table: string,
  name: string,
  kind: CorruptionKind,
): Promise<void> {
  const set = {
    garbage: `version = NULL, state = 'not a state', override = NULL, generation = NULL, opened_at = NULL,
      open_until = NULL, reopens = NULL, consecutive_failures = NULL, probe_successes = NULL,
      lease_seq = NULL, lease_ids = NULL, lease_expires = NULL, buckets = NULL`,
    'missing-field': 'generation = NULL',
    'wrong-type': `buckets = '{1,2,3}'`,
    'foreign-schema': 'version = 99',
  }[kind];
  const { rowCount } = await pool.query(`UPDATE ${table} SET ${set} WHERE name = $1`, [name]);
  if (rowCount !== 1) throw new Error(`no row for ${name}`);
}

describe('PostgresStore', () => {
  let pool: pg.Pool;
  let table: string;
  usePostgresSchema((s) => {
    pool = s.pool;
    table = s.table;
  });
  describeStoreConformance(
    'PostgresStore',
    () => {
      let offset = 0;
      const store = new PostgresStore({
        pool,
        table,
        timeOffsetMs: () => offset,
        onCorruptRecord: () => undefined,
      });
      return {
        store,
        advance: (ms: number) => {
          offset += ms;
        },
        corrupt: (name: string, kind: CorruptionKind) => corruptPostgresRow(pool, table, name, kind),
      };
    },
    { idempotentBatches: true, concurrencyLimit: true, quorum: true, recordThenAcquire: true },
  );
});
