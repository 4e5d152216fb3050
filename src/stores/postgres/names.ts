import { createHash } from 'node:crypto';

import { invalid } from '../../options.js';

/**
 * The only place Postgres identifiers are checked and quoted, and where the names of everything
 * the schema creates beside the table are derived from the table's name.
 *
 * The user names the table: `breakers` (resolved through `search_path`, as Postgres resolves any
 * unqualified name) or `schema.breakers`. Each part is a plain identifier (letters, digits, `_`,
 * not starting with a digit), at most 40 characters so every derived name (`<table>_batches`,
 * `<table>_acquire`, ...) stays within Postgres's 63. Parts are always double-quoted, so the name
 * is used exactly as given (`Breakers` is not `breakers`) and never reaches SQL unquoted.
 */

const PART = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/;

/** The table when none is given. */
export const DEFAULT_TABLE = 'circuitry_breakers';

/**
 * A breaker name longer than this many characters (code points) is stored under a key made of its
 * first 600 and its SHA-256: a btree entry is limited to about 2,700 bytes.
 */
export const MAX_PLAIN_KEY_CHARS = 600;

/**
 * The row key of a breaker `name` (well-formed UTF-16), as the SQL functions compute it (schema.ts
 * `KEY`): the name itself up to 600 code points, else its first 600, `#` and the hex SHA-256 of its
 * UTF-8. The plain read (`peekSql`) takes it from here.
 */
export function keyOf(name: string): string {
  // Fewer UTF-16 units than the limit means fewer code points too.
  if (name.length <= MAX_PLAIN_KEY_CHARS) return name;
  const points = Array.from(name);
  if (points.length <= MAX_PLAIN_KEY_CHARS) return name;
  return `${points.slice(0, MAX_PLAIN_KEY_CHARS).join('')}#${createHash('sha256').update(name, 'utf8').digest('hex')}`;
}

export interface TableName {
  /** The schema, or null when the name resolves through `search_path`. */
  readonly schema: string | null;
  readonly table: string;
}

/** Checks the `table` option: `table` or `schema.table`, plain identifiers. */
export function parseTableName(value: unknown, option = 'table'): TableName {
  const parts = typeof value === 'string' ? value.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => PART.test(p))) {
    throw invalid(
      option,
      '`table` or `schema.table`, each a plain identifier (letters, digits, `_`; at most 40 characters)',
      value,
    );
  }
  return parts.length === 2 ? { schema: parts[0]!, table: parts[1]! } : { schema: null, table: parts[0]! };
}

/** A double-quoted identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A single-quoted SQL string literal. */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** `"schema"."name"`, or `"name"` when the schema comes from `search_path`. */
function qualified(name: TableName, suffix: string): string {
  const own = quoteIdent(`${name.table}${suffix}`);
  return name.schema === null ? own : `${quoteIdent(name.schema)}.${own}`;
}

/** The quoted names of everything the schema holds for one table. */
export interface SchemaObjects {
  readonly table: string;
  readonly batches: string;
  readonly reporters: string;
  readonly acquire: string;
  readonly record: string;
  readonly inspect: string;
  readonly force: string;
  readonly reset: string;
  readonly window: string;
  readonly add: string;
  readonly channelFunction: string;
}

export function objectsOf(name: TableName): SchemaObjects {
  return {
    table: qualified(name, ''),
    batches: qualified(name, '_batches'),
    reporters: qualified(name, '_reporters'),
    acquire: qualified(name, '_acquire'),
    record: qualified(name, '_record'),
    inspect: qualified(name, '_inspect'),
    force: qualified(name, '_force'),
    reset: qualified(name, '_reset'),
    window: qualified(name, '_window'),
    add: qualified(name, '_add'),
    channelFunction: qualified(name, '_channel'),
  };
}

/**
 * The NOTIFY channel of a table (schema and table both known): short, so it is never truncated,
 * and different for the same table name in two schemas. `<table>_channel()` returns it, so a
 * listener that knows the table only through `search_path` finds it.
 */
export function channelOf(schema: string, table: string): string {
  return `circuitry_${createHash('sha256').update(`${schema}.${table}`).digest('hex').slice(0, 20)}`;
}

/** `LIKE` pattern for keys that start with `prefix` (the key of a long name starts with its prefix). */
export function likePrefix(prefix: string): string {
  // Code points, as Postgres's left() counts them.
  const head =
    prefix.length <= MAX_PLAIN_KEY_CHARS ? prefix : [...prefix].slice(0, MAX_PLAIN_KEY_CHARS).join('');
  return `${head.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}
