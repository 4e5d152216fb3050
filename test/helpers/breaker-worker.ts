// A worker process for the multi-process tests: one BreakerFactory on a shared store (Redis,
// DynamoDB or Postgres), driven by the parent over IPC. Reports every state change its own store operations
// made.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Redis } from 'ioredis';
import pg from 'pg';

import { BreakerFactory, consecutiveFailures, failureRate, isCircuitOpenError } from '../../src/index.js';
import type { Store } from '../../src/index.js';
import { DynamoDBStore } from '../../src/stores/dynamodb/index.js';
import { PostgresStore } from '../../src/stores/postgres/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

/** Where the shared state is, as the parent passes it. */
export type StoreSpec =
  | { readonly kind: 'redis'; readonly url: string; readonly prefix: string }
  | { readonly kind: 'dynamodb'; readonly endpoint: string; readonly table: string }
  | { readonly kind: 'postgres'; readonly connection: pg.PoolConfig; readonly table: string };

interface Run {
  readonly cmd: 'run';
  readonly name: string;
  readonly callers: number;
  readonly callsPerCaller: number;
  /** Which calls fail: every nth (0: none), or every call ('all'). */
  readonly failEvery: number | 'all';
  readonly fnDelayMs: number;
  /** Each call GETs this URL (after `fnDelayMs`), and fails if the answer is not 200. */
  readonly url?: string;
  /** Each call runs until the process dies: it holds whatever it took (a concurrency slot). No result is sent. */
  readonly hold?: boolean;
}

const [spec, options] = process.argv.slice(2).map((arg) => JSON.parse(arg) as unknown) as [StoreSpec, object];
const settings = options as {
  threshold: number;
  /**
   * 'count-all': a failure rate that needs `threshold` calls before it can trip, so every outcome
   * is written (a count policy skips successes with no run of failures to reset). Default: the
   * threshold as consecutive failures.
   */
  trip?: 'count-all';
  openMs: number;
  halfOpenMaxCalls: number;
  maxStalenessMs?: number;
  flushIntervalMs?: number;
  /** Build the client and the factory only when the first run arrives: a cold start, no warm-up. */
  cold?: boolean;
  /** Leave storeTimeoutMs and connectTimeoutMs at their defaults (else a generous 5 s). */
  defaultTimeouts?: boolean;
  /** ioredis options for the worker's own client. */
  redisOptions?: object;
  maxConcurrent?: number;
  concurrencyLeaseMs?: number;
  queueMs?: number;
};

interface Setup {
  readonly factory: BreakerFactory;
  readonly disconnect: () => void;
}

function setUp(): Setup {
  let store: Store;
  let disconnect: () => void;
  if (spec.kind === 'redis') {
    const client = new Redis(spec.url, settings.redisOptions ?? {});
    store = new RedisStore({ client, prefix: spec.prefix });
    disconnect = () => client.disconnect();
  } else if (spec.kind === 'postgres') {
    const pool = new pg.Pool({ max: 4, ...spec.connection });
    // A pooled connection that drops is replaced by the next query; its error must not crash us.
    pool.on('error', () => undefined);
    store = new PostgresStore({ pool, table: spec.table });
    disconnect = () => void pool.end();
  } else {
    const client = new DynamoDBClient({
      endpoint: spec.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    store = new DynamoDBStore({ client, tableName: spec.table });
    disconnect = () => client.destroy();
  }
  const factory = new BreakerFactory({
    store,
    ...(settings.defaultTimeouts === true ? {} : { storeTimeoutMs: 5_000 }),
    jitter: 0,
    trip:
      settings.trip === 'count-all'
        ? failureRate(1, { minimumCalls: settings.threshold, windowMs: 600_000 })
        : consecutiveFailures(settings.threshold),
    openMs: settings.openMs,
    halfOpenMaxCalls: settings.halfOpenMaxCalls,
    maxStalenessMs: settings.maxStalenessMs ?? 0,
    flushIntervalMs: settings.flushIntervalMs ?? 0,
    ...(settings.maxConcurrent === undefined ? {} : { maxConcurrent: settings.maxConcurrent }),
    ...(settings.concurrencyLeaseMs === undefined ? {} : { concurrencyLeaseMs: settings.concurrencyLeaseMs }),
    ...(settings.queueMs === undefined ? {} : { queueMs: settings.queueMs }),
    onStateChange: (name, _context, from, to) => process.send!({ transition: { name, from, to } }),
  });
  return { factory, disconnect };
}

let setup: Setup | null = settings.cold === true ? null : setUp();

process.on('message', (message: Run | { cmd: 'exit' }) => {
  if (message.cmd === 'exit') {
    const done = setup;
    if (done === null) process.exit(0);
    void done.factory.close().then((report) => {
      process.send!({ closed: report }, () => {
        done.disconnect();
        process.exit(0);
      });
    });
    return;
  }
  setup ??= setUp();
  const running = run(setup.factory, message);
  if (message.hold !== true) void running.then((result) => process.send!({ result }));
});

async function run(factory: BreakerFactory, r: Run) {
  const breaker = factory.breakerFor(r.name);
  let fnCalls = 0;
  const tally = { value: 0, boom: 0, rejected: 0, other: 0, reasons: {} as Record<string, number> };
  let n = 0;
  await Promise.all(
    Array.from({ length: r.callers }, async () => {
      for (let i = 0; i < r.callsPerCaller; i++) {
        const fail = r.failEvery === 'all' || (r.failEvery > 0 && ++n % r.failEvery === 0);
        try {
          await breaker.execute(async () => {
            fnCalls += 1;
            if (r.hold === true) await new Promise(() => undefined);
            if (r.fnDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, r.fnDelayMs));
            if (r.url !== undefined) {
              const response = await fetch(r.url);
              await response.text();
              if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
            }
            if (fail) throw new Error('boom');
            return 1;
          });
          tally.value += 1;
        } catch (error) {
          if (isCircuitOpenError(error)) {
            tally.rejected += 1;
            tally.reasons[error.reason] = (tally.reasons[error.reason] ?? 0) + 1;
          } else if ((error as Error).message === 'boom') tally.boom += 1;
          else tally.other += 1;
        }
      }
    }),
  );
  return { fnCalls, ...tally };
}

process.send!({ ready: true });
