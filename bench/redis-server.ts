/**
 * The bench's view of the Redis server: connecting (or learning there is none), counting what the
 * server ran from `INFO commandstats`, and cleaning up what a case wrote under its prefix.
 */
import { Redis } from 'ioredis';

import { RedisStore } from '../src/stores/redis/index.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Every connection the bench opens carries this name, so `CLIENT LIST` tells ours from others'. */
export const CLIENT_NAME = 'circuitry-bench';

/** A connected client, or null (with a warning) when no Redis answers at `REDIS_URL`. */
export async function connectRedis(what: string): Promise<Redis | null> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectionName: CLIENT_NAME,
  });
  try {
    await client.connect();
    return client;
  } catch {
    console.warn(`no Redis at ${REDIS_URL}: skipping ${what}`);
    client.disconnect();
    return null;
  }
}

/**
 * Commands the server ran, by name, from `INFO commandstats`. Commands a script or function runs
 * are counted under their own names too (an FCALL of `record` adds one `fcall` and, say, one
 * `hset`, one `pexpire`, one `zadd`...).
 */
export type CommandCounts = Record<string, number>;

export async function commandStats(client: Redis): Promise<CommandCounts> {
  const info = await client.info('commandstats');
  const counts: CommandCounts = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    counts[m[1]!] = Number(m[2]);
    // Microseconds the server spent in the command (a script's own commands included).
    counts[`${m[1]!}.usec`] = Number(m[3]);
  }
  return counts;
}

/**
 * What ran between two readings. Readings are subtracted rather than taken after a `CONFIG
 * RESETSTAT`: the same counts, without resetting statistics another user of a shared server may be
 * reading. `disturbed` says a reset happened in between (a count went down): the delta is void.
 */
export function commandDelta(
  before: CommandCounts,
  after: CommandCounts,
): { delta: CommandCounts; disturbed: boolean } {
  const delta: CommandCounts = {};
  let disturbed = false;
  for (const [name, calls] of Object.entries(after)) {
    const d = calls - (before[name] ?? 0);
    if (d < 0) disturbed = true;
    if (d !== 0) delta[name] = d;
  }
  return { delta, disturbed };
}

/** The commands that change the keyspace or publish, whoever sent them (a client or a script). */
export const WRITE_COMMANDS: readonly string[] = [
  'hset',
  'hmset',
  'hsetnx',
  'hdel',
  'hincrby',
  'pexpire',
  'expire',
  'pexpireat',
  'persist',
  'zadd',
  'zrem',
  'zremrangebyscore',
  'del',
  'unlink',
  'set',
  'publish',
];
/** The commands that run circuitry's Lua (one per store operation). */
export const SCRIPT_COMMANDS: readonly string[] = ['fcall', 'evalsha', 'eval'];

export function sum(delta: CommandCounts, names: readonly string[]): number {
  return names.reduce((total, name) => total + (delta[name] ?? 0), 0);
}

/** `name:calls` of the non-zero entries, for a note. */
export function listed(delta: CommandCounts, names: readonly string[]): string {
  const parts = names.filter((n) => (delta[n] ?? 0) > 0).map((n) => `${n} ${delta[n]}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** Connections to the server that are not the bench's: their commands would be in the counts too. */
export async function otherClients(client: Redis): Promise<number> {
  const list = (await client.client('LIST')) as string;
  return list.split('\n').filter((line) => line.trim() !== '' && !line.includes(` name=${CLIENT_NAME} `))
    .length;
}

/** Every key under `prefix` (SCAN, not KEYS: the server may be shared). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

export async function deleteUnder(client: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(client, prefix);
  for (let i = 0; i < keys.length; i += 500) await client.unlink(...keys.slice(i, i + 500));
}

/** A RedisStore that counts the operations breakers ask of it (each one is one FCALL). */
export class CountingRedisStore extends RedisStore {
  readonly ops = { acquire: 0, record: 0, inspect: 0, force: 0 };

  override acquire(...args: Parameters<RedisStore['acquire']>): ReturnType<RedisStore['acquire']> {
    this.ops.acquire += 1;
    return super.acquire(...args);
  }

  override record(...args: Parameters<RedisStore['record']>): ReturnType<RedisStore['record']> {
    this.ops.record += 1;
    return super.record(...args);
  }

  override inspect(...args: Parameters<RedisStore['inspect']>): ReturnType<RedisStore['inspect']> {
    this.ops.inspect += 1;
    return super.inspect(...args);
  }

  override force(...args: Parameters<RedisStore['force']>): ReturnType<RedisStore['force']> {
    this.ops.force += 1;
    return super.force(...args);
  }

  resetOps(): void {
    this.ops.acquire = this.ops.record = this.ops.inspect = this.ops.force = 0;
  }
}

/** Runs `task(i)` for i in [0, count) with at most `width` at once. */
export async function pool(
  count: number,
  width: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}
