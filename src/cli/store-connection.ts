/**
 * Opens the store an operator command works on, from `--redis URL [--prefix P]`,
 * `--dynamodb TABLE [--endpoint URL] [--region R]` or `--postgres URL [--table NAME]` (or the
 * environment), with every call bounded: a command against a store that cannot be reached ends
 * with exit code 1 within seconds, never hangs. The drivers are loaded only here (Postgres: in
 * postgres-connection.ts), so the core keeps no runtime dependency.
 */
import type { Redis as RedisClient } from 'ioredis';

import type { Store } from '../store.js';
import { DEFAULT_TABLE, parseTableName } from '../stores/postgres/names.js';
import { DEFAULT_PREFIX, isRecordMarker } from '../stores/redis/keys.js';
import { CliError } from './usage.js';

/** Store flags for `parseArgs`, shared by every command that talks to a store. */
export const STORE_OPTIONS = {
  redis: { type: 'string' },
  prefix: { type: 'string' },
  dynamodb: { type: 'string' },
  endpoint: { type: 'string' },
  region: { type: 'string' },
  postgres: { type: 'string' },
  table: { type: 'string' },
  timeout: { type: 'string' },
} as const;

export const STORE_HELP = `Store (one of them; a flag wins over the environment):
  --redis URL        a Redis server, e.g. redis://127.0.0.1:6379   (env CIRCUITRY_REDIS_URL)
  --prefix P         the RedisStore key prefix (default circuitry:) (env CIRCUITRY_PREFIX)
  --dynamodb TABLE   a table made by createBreakerTable              (env CIRCUITRY_DYNAMODB_TABLE)
  --endpoint URL     DynamoDB endpoint, e.g. http://127.0.0.1:8000   (env CIRCUITRY_DYNAMODB_ENDPOINT)
  --region R         AWS region (env AWS_REGION); credentials come from the usual AWS chain
  --postgres URL     a Postgres database, e.g. postgres://user@127.0.0.1:5432/app
                     (env CIRCUITRY_POSTGRES_URL; PG* variables fill in what the URL leaves out)
  --table NAME       the PostgresStore table, NAME or SCHEMA.NAME (default ${DEFAULT_TABLE})
                     (env CIRCUITRY_POSTGRES_TABLE)
  --timeout MS       bound of each store call (default 5000); connecting is bounded by 3000

Counts, failure rates and the retry-after of a forced-open breaker are computed with the default
breaker policy (resolveOptions({}).policy: a 60 s window in 10 buckets, openMs 30000), since the
store holds no policy. Breakers whose options differ show their state and override exactly; their
counts are summed over 10 buckets of 6 s.

Exit codes: 0 done, 1 not found or the store cannot be reached, 2 bad usage.
`;

export interface StoreFlags {
  readonly redis?: string | undefined;
  readonly prefix?: string | undefined;
  readonly dynamodb?: string | undefined;
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly postgres?: string | undefined;
  readonly table?: string | undefined;
  readonly timeout?: string | undefined;
}

/** What a command read: the store, and the key prefix when the store has one (Redis). */
export interface StoreWhere {
  /** The store without the prefix, e.g. `Redis at redis://127.0.0.1:6379/` (password masked). */
  readonly store: string;
  /** The Redis key prefix; null for a store without one (DynamoDB, Postgres). */
  readonly prefix: string | null;
}

export interface StoreConnection {
  readonly store: Store;
  /** Where the store is, for messages (a Redis password is masked). */
  readonly description: string;
  readonly where: StoreWhere;
  /**
   * Other key prefixes, near the one given, under which breaker records exist: the hint for a
   * command that found nothing (`myapp:breakers` when the records are under `myapp:breakers:`).
   * Reads only. Absent for a store without prefixes.
   */
  nearPrefixes?(): Promise<string[]>;
  /** Bound of each store call. */
  readonly callTimeoutMs: number;
  /** Closes what was opened for the store; never waits on an unreachable server. */
  close(): Promise<void>;
}

/** Bound of connecting to a store. */
export const CONNECT_TIMEOUT_MS = 3_000;

/** The store's timeout error: a call that took longer than its bound. */
export class StoreTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'StoreTimeoutError';
  }
}

/** `work`, or a `StoreTimeoutError` once `ms` have passed. */
export async function bounded<T>(work: PromiseLike<T> | T, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      Promise.resolve(work),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StoreTimeoutError(what, ms)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `url` with its password shown as `***`: the one in the authority, and a `password` (or
 * `sslpassword`) query parameter, which Postgres connection strings accept too.
 */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    for (const key of [...parsed.searchParams.keys()]) {
      if (/password/i.test(key)) parsed.searchParams.set(key, '***');
    }
    return parsed.toString();
  } catch {
    // Not a URL, but it may still hold `user:password@`.
    return url.replace(/^([^/]*\/\/[^:/@]*:)[^@]*@/, '$1***@');
  }
}

export function readTimeout(flags: StoreFlags): number {
  if (flags.timeout === undefined) return 5_000;
  const ms = Number(flags.timeout);
  if (!Number.isInteger(ms) || ms < 1) {
    throw new CliError(2, `--timeout must be a positive integer of milliseconds, got ${flags.timeout}`);
  }
  return ms;
}

type StoreKind = 'redis' | 'dynamodb' | 'postgres';

const STORE_KINDS: readonly StoreKind[] = ['redis', 'dynamodb', 'postgres'];

/** The variable each store flag falls back on. */
const STORE_ENV: Readonly<Record<StoreKind, string>> = {
  redis: 'CIRCUITRY_REDIS_URL',
  dynamodb: 'CIRCUITRY_DYNAMODB_TABLE',
  postgres: 'CIRCUITRY_POSTGRES_URL',
};

/** `a`, `a and b`, `a, b and c`. */
function andList(items: readonly string[]): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`;
}

/**
 * Checks the store flags (exit 2 when they are missing or contradictory) without connecting, so
 * usage errors come before any network wait. A store flag wins over every store variable: the
 * environment is read only when no store flag is given.
 */
export function checkStoreFlags(flags: StoreFlags, env: NodeJS.ProcessEnv = process.env): StoreFlags {
  const fromFlags = STORE_KINDS.some((kind) => flags[kind] !== undefined);
  const source = (kind: StoreKind): string => (fromFlags ? `--${kind}` : STORE_ENV[kind]);
  const value = (kind: StoreKind): string | undefined => (fromFlags ? flags[kind] : env[STORE_ENV[kind]]);
  const given = STORE_KINDS.filter((kind) => value(kind) !== undefined && value(kind) !== '');
  if (given.length > 1) {
    throw new CliError(
      2,
      `give one store: ${andList(given.map(source))} were ${given.length === 2 ? 'both' : 'all'} given`,
    );
  }
  const kind = given[0];
  if (kind === undefined) {
    throw new CliError(
      2,
      `no store: give --redis URL, --dynamodb TABLE or --postgres URL (or set ${andList(STORE_KINDS.map((k) => STORE_ENV[k])).replace(/ and /, ' or ')})`,
    );
  }
  if (kind !== 'postgres' && flags.table !== undefined) {
    // A DynamoDB table is --dynamodb TABLE; --table is only ever Postgres's.
    throw new CliError(2, `--table names a Postgres table and needs --postgres; ${source(kind)} was given`);
  }
  readTimeout(flags);
  if (kind === 'redis') {
    const redis = value('redis')!;
    if (!/^rediss?:\/\//.test(redis)) throw new CliError(2, `--redis must be a redis:// URL, got ${redis}`);
    const prefix = flags.prefix ?? env.CIRCUITRY_PREFIX;
    if (prefix === '') {
      // Every key of the database would be a candidate, and another application's keys are not ours.
      throw new CliError(
        2,
        `${flags.prefix === undefined ? 'CIRCUITRY_PREFIX' : '--prefix'} must not be empty, got "": give the prefix your RedisStore uses (its default is circuitry:)`,
      );
    }
    return { redis, prefix, timeout: flags.timeout };
  }
  if (kind === 'postgres') {
    const postgres = value('postgres')!;
    if (!/^postgres(?:ql)?:\/\//.test(postgres) || !URL.canParse(postgres)) {
      throw new CliError(
        2,
        `${source('postgres')} must be a postgres:// URL, e.g. postgres://user@127.0.0.1:5432/app, got ${maskUrl(postgres)}`,
      );
    }
    const table = flags.table ?? env.CIRCUITRY_POSTGRES_TABLE ?? DEFAULT_TABLE;
    try {
      parseTableName(table, flags.table === undefined ? 'CIRCUITRY_POSTGRES_TABLE' : '--table');
    } catch (error) {
      throw new CliError(2, (error as Error).message);
    }
    return { postgres, table, timeout: flags.timeout };
  }
  return {
    dynamodb: value('dynamodb'),
    endpoint: flags.endpoint ?? env.CIRCUITRY_DYNAMODB_ENDPOINT,
    region: flags.region ?? env.AWS_REGION,
    timeout: flags.timeout,
  };
}

export interface OpenOptions {
  /**
   * Keep reconnecting after a drop (watch, dashboard) instead of failing every later call at once
   * (one-shot commands).
   */
  readonly reconnect?: boolean;
}

/** Connects to the store the (checked) flags name; exit 1 when it cannot be reached in time. */
export async function openStore(flags: StoreFlags, options: OpenOptions = {}): Promise<StoreConnection> {
  const callTimeoutMs = readTimeout(flags);
  if (flags.redis !== undefined) return openRedis(flags.redis, flags.prefix, callTimeoutMs, options);
  if (flags.postgres !== undefined) {
    // Imported here, not at the top: postgres-connection.ts uses this module's helpers.
    const { openPostgres } = await import('./postgres-connection.js');
    return openPostgres(flags.postgres, flags.table ?? DEFAULT_TABLE, callTimeoutMs);
  }
  return openDynamoDB(flags, callTimeoutMs);
}

async function openRedis(
  url: string,
  prefix: string | undefined,
  callTimeoutMs: number,
  options: OpenOptions,
): Promise<StoreConnection> {
  const [{ Redis }, { RedisStore }] = await Promise.all([
    import('ioredis'),
    import('../stores/redis/index.js'),
  ]).catch((error: unknown) => {
    throw new CliError(1, `--redis needs the ioredis package (npm install ioredis): ${String(error)}`);
  });
  const description = `Redis at ${maskUrl(url)}`;
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: callTimeoutMs,
    maxRetriesPerRequest: 1,
    // A one-shot command while disconnected fails at once instead of waiting in a queue. Watching
    // keeps the queue, so the subscription (on a duplicate of this client, connected on first use)
    // waits for its connection instead of failing and being retried later: a transition right
    // after "watching" must not be missed. Every call stays bounded by commandTimeout.
    enableOfflineQueue: options.reconnect === true,
    retryStrategy: options.reconnect === true ? (times) => Math.min(250 * times, 2_000) : () => null,
  });
  // Failures surface through the bounded calls; an unhandled 'error' event would crash the process.
  client.on('error', () => {});
  try {
    await bounded(client.connect(), CONNECT_TIMEOUT_MS + 500, `connecting to ${description}`);
  } catch (error) {
    client.disconnect();
    throw new CliError(1, `cannot reach ${description}: ${(error as Error).message}`);
  }
  let store: Store;
  try {
    store = new RedisStore({ client, ...(prefix === undefined ? {} : { prefix }) });
  } catch (error) {
    client.disconnect();
    throw new CliError(2, (error as Error).message);
  }
  const shownPrefix = prefix ?? DEFAULT_PREFIX;
  return {
    store,
    description: `${description}, prefix ${JSON.stringify(shownPrefix)}`,
    where: { store: description, prefix: shownPrefix },
    nearPrefixes: () => nearRedisPrefixes(client, shownPrefix, callTimeoutMs),
    callTimeoutMs,
    close: () => {
      client.disconnect();
      return Promise.resolve();
    },
  };
}

async function openDynamoDB(flags: StoreFlags, callTimeoutMs: number): Promise<StoreConnection> {
  const [{ DynamoDBClient }, { DynamoDBStore }] = await Promise.all([
    import('@aws-sdk/client-dynamodb'),
    import('../stores/dynamodb/index.js'),
  ]).catch((error: unknown) => {
    throw new CliError(
      1,
      `--dynamodb needs the @aws-sdk/client-dynamodb package (npm install @aws-sdk/client-dynamodb): ${String(error)}`,
    );
  });
  const table = flags.dynamodb!;
  const client = new DynamoDBClient({
    ...(flags.region === undefined ? {} : { region: flags.region }),
    ...(flags.endpoint === undefined ? {} : { endpoint: flags.endpoint }),
    maxAttempts: 2,
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: callTimeoutMs },
  });
  let store: Store;
  try {
    store = new DynamoDBStore({ client, tableName: table });
  } catch (error) {
    client.destroy();
    throw new CliError(2, (error as Error).message);
  }
  return {
    store,
    description: `DynamoDB table ${table}${flags.endpoint === undefined ? '' : ` at ${flags.endpoint}`}`,
    where: {
      store: `DynamoDB table ${table}${flags.endpoint === undefined ? '' : ` at ${flags.endpoint}`}`,
      prefix: null,
    },
    callTimeoutMs,
    close: () => {
      client.destroy();
      return Promise.resolve();
    },
  };
}

/** A breaker key: `<prefix>{<hex of the name>}` (stores/redis/keys.ts). */
const BREAKER_KEY = /^([\s\S]*)\{(?:[0-9a-f]*|u[0-9a-f]*)\}$/;

/**
 * Prefixes near `prefix` (the same text with or without trailing separators, and longer ones
 * starting with it) under which keys carry the record marker. A bounded, read-only SCAN: at most
 * 20 rounds of 1,000 keys, and one `HGET <key> v` per prefix found.
 */
async function nearRedisPrefixes(client: RedisClient, prefix: string, timeoutMs: number): Promise<string[]> {
  const stem = prefix.replace(/[:/._-]+$/, '');
  const pattern = `${stem.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
  const samples = new Map<string, string>();
  let cursor = '0';
  for (let round = 0; round < 20; round++) {
    const [next, keys] = await bounded(
      client.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000),
      timeoutMs,
      'scan',
    );
    for (const key of keys) {
      const near = BREAKER_KEY.exec(key)?.[1];
      if (near !== undefined && near !== prefix && !samples.has(near) && samples.size < 20)
        samples.set(near, key);
    }
    cursor = next;
    if (cursor === '0') break;
  }
  const found: string[] = [];
  for (const [near, key] of samples) {
    const marker = await bounded(client.getrangeBuffer(key, 0, 0), timeoutMs, 'getrange').catch(() => null);
    if (isRecordMarker(marker)) found.push(near);
  }
  return found.sort();
}
