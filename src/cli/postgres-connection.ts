/**
 * The Postgres side of store-connection.ts: `--postgres URL [--table NAME]`. Loaded only when
 * `--postgres` is given, and it alone loads `pg`, an optional peer dependency.
 *
 * The CLI makes the `pg.Pool` (PostgresStore never closes the pool it is given) and ends it in
 * `close()`, bounded: a connection stuck on a server that stopped answering does not hold the
 * command up. Before any command runs, the table is checked: a wrong `--table` is told as such
 * (with the breaker tables the database does hold), not as a failed SQL function call.
 */
import type { Pool } from 'pg';

import { objectsOf, parseTableName } from '../stores/postgres/names.js';
import type { StoreConnection } from './store-connection.js';
import { CONNECT_TIMEOUT_MS, bounded, maskUrl } from './store-connection.js';
import { CliError } from './usage.js';

/** How long `close()` waits for the pool's connections to end. */
const END_TIMEOUT_MS = 2_000;

/**
 * Tables made by createBreakerSchema, found by the `<table>_channel()` function it makes beside
 * each one (8 = the length of `_channel`), those in the schema asked for first (`$1`; the
 * current schema for a name without one). Reads the catalog only.
 */
const BREAKER_TABLES_SQL = `
SELECT n.nspname AS schema, left(p.proname, -8) AS name
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname LIKE '%\\_channel' AND p.pronargs = 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND to_regclass(quote_ident(n.nspname) || '.' || quote_ident(left(p.proname, -8))) IS NOT NULL
ORDER BY n.nspname = coalesce($1, current_schema()) DESC, 1, 2
LIMIT 20`;

/** A driver error's message; a refused connection may be an AggregateError with none. */
function message(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message !== '') return error.message;
  const first = (error as Partial<AggregateError>).errors?.[0] as unknown;
  if (first instanceof Error && first.message !== '') return first.message;
  return (error as { code?: string }).code ?? error.name;
}

async function end(pool: Pool): Promise<void> {
  await bounded(pool.end(), END_TIMEOUT_MS, 'closing the Postgres pool').catch(() => undefined);
}

/** Connects and checks the table; exit 1 when the server cannot be reached or the table is not there. */
export async function openPostgres(
  url: string,
  table: string,
  callTimeoutMs: number,
): Promise<StoreConnection> {
  const [pg, { PostgresStore }] = await Promise.all([
    import('pg'),
    import('../stores/postgres/index.js'),
  ]).catch((error: unknown) => {
    throw new CliError(1, `--postgres needs the pg package (npm install pg): ${String(error)}`);
  });
  const server = `Postgres at ${maskUrl(url)}`;
  const description = `Postgres table ${table} at ${maskUrl(url)}`;
  const pool = new pg.default.Pool({
    connectionString: url,
    // Bounds both making a connection and waiting for a free one.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: callTimeoutMs,
    max: 10,
    application_name: 'circuitry-cli',
  });
  // Failures surface through the bounded calls; an idle connection's 'error' would crash the process.
  pool.on('error', () => {});
  const name = parseTableName(table);
  const objects = objectsOf(name);
  let found: { table_found: boolean; breakers: boolean };
  try {
    const { rows } = await bounded(
      pool.query<{ table_found: boolean; breakers: boolean }>(
        'SELECT to_regclass($1) IS NOT NULL AS table_found, to_regprocedure($2) IS NOT NULL AS breakers',
        [objects.table, `${objects.channelFunction}()`],
      ),
      CONNECT_TIMEOUT_MS + 500,
      `connecting to ${server}`,
    );
    found = rows[0]!;
  } catch (error) {
    await end(pool);
    throw new CliError(1, `cannot reach ${server}: ${message(error)}`);
  }
  if (!found.table_found || !found.breakers) {
    const tables = await bounded(
      pool.query<{ schema: string; name: string }>(BREAKER_TABLES_SQL, [name.schema]),
      callTimeoutMs,
      'listing breaker tables',
    ).then(
      ({ rows }) => rows.map((r) => `${r.schema}.${r.name}`),
      () => [],
    );
    await end(pool);
    const what = found.table_found
      ? `${table} in ${server} is not a circuitry breaker table (createBreakerSchema makes a ${table}_channel() function beside it, and there is none)`
      : `no table ${table} in ${server}${table.includes('.') ? '' : ' (a name without a schema is looked up through search_path)'}`;
    const hint =
      tables.length > 0
        ? `; breaker tables there: ${tables.join(', ')} (--table ${tables[0]!})`
        : '; none there: create one with createBreakerSchema (circuitry/postgres, or the SQL in docs/postgres.md)';
    throw new CliError(1, `${what}${hint}`);
  }
  const store = new PostgresStore({ pool, table });
  return {
    store,
    description,
    where: { store: description, prefix: null },
    callTimeoutMs,
    close: () => end(pool),
  };
}
