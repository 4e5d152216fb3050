/**
 * `npm run bench`: circuitry side by side with opossum and cockatiel, in one process, libraries
 * interleaved round by round so machine drift cancels; medians. Prints a markdown table and
 * writes bench/results/latest.json. `--quick` for a smoke run. See bench/README.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, platform } from 'node:os';

import { ConsecutiveBreaker, SamplingBreaker, circuitBreaker, handleAll } from 'cockatiel';
import { Redis } from 'ioredis';
import Opossum from 'opossum';
import pg from 'pg';

import { BreakerFactory, consecutiveFailures, failureRate } from '../src/index.js';
import { PostgresStore, createBreakerSchema } from '../src/stores/postgres/index.js';
import { RedisStore } from '../src/stores/redis/index.js';
import { registerMetrics as registerPrometheus } from '../src/prometheus/index.js';
import { Registry } from 'prom-client';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 3 : 9;
const scale = quick ? 0.1 : 1;

type Run = () => Promise<void>;
interface Result {
  readonly case: string;
  readonly library: string;
  readonly value: number;
  readonly unit: string;
  readonly note?: string;
}
const results: Result[] = [];
// opossum keeps timers for its rolling stats: shut every one down before the idle measurement.
const opossums: Opossum[] = [];
function track(breaker: Opossum): Opossum {
  opossums.push(breaker);
  return breaker;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Runs each library's loop once per round, in turn, and returns the median ns per op of each. */
async function interleaved(ops: number, runs: Record<string, Run>): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
  for (const run of Object.values(runs)) await run(); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of Object.entries(runs)) {
      const start = process.hrtime.bigint();
      await run();
      samples[name]!.push(Number(process.hrtime.bigint() - start) / ops);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

const noop = (): Promise<number> => Promise.resolve(1);
// One error object for every failure: creating an Error (its stack trace) would cost more than
// any breaker and drown the difference.
const down = new Error('down');
const failing = (): Promise<never> => Promise.reject(down);
const swallow = (): undefined => undefined;

// ---- closed path -------------------------------------------------------------------------------
async function closedPath(): Promise<void> {
  const ops = Math.round(200_000 * scale);
  const circuitry = new BreakerFactory().breakerFor('bench');
  const cockatiel = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const opossum = track(new Opossum(noop, { timeout: false, resetTimeout: 30_000 }));
  const loop =
    (call: () => Promise<unknown>): Run =>
    async () => {
      for (let i = 0; i < ops; i++) await call();
    };
  // The same breaker with Prometheus metrics on (calls, durations, by base name).
  const measuredFactory = new BreakerFactory();
  registerPrometheus(measuredFactory, { registry: new Registry() });
  const measured = measuredFactory.breakerFor('bench');
  const ns = await interleaved(ops, {
    bare: loop(noop),
    circuitry: loop(() => circuitry.execute(noop)),
    'circuitry + metrics': loop(() => measured.execute(noop)),
    cockatiel: loop(() => cockatiel.execute(noop)),
    opossum: loop(() => opossum.fire()),
  });
  for (const library of ['bare', 'circuitry', 'circuitry + metrics', 'cockatiel', 'opossum']) {
    results.push({
      case: 'closed path, per execute of an async no-op',
      library,
      value: ns[library]!,
      unit: 'ns/op',
      note:
        library === 'bare'
          ? 'await fn()'
          : library === 'circuitry + metrics'
            ? `${(ns[library]! / ns.circuitry!).toFixed(2)}x without metrics`
            : `${(ns[library]! / ns.bare!).toFixed(2)}x bare`,
    });
  }
}

// ---- rejection while open ----------------------------------------------------------------------
async function openPath(): Promise<void> {
  const ops = Math.round(100_000 * scale);
  const circuitry = new BreakerFactory({ trip: consecutiveFailures(1), openMs: 3_600_000 }).breakerFor(
    'bench',
  );
  await circuitry.execute(failing).catch(swallow);
  const cockatiel = circuitBreaker(handleAll, {
    halfOpenAfter: 3_600_000,
    breaker: new ConsecutiveBreaker(1),
  });
  await cockatiel.execute(failing).catch(swallow);
  const opossum = track(new Opossum(noop, { timeout: false, resetTimeout: 3_600_000 }));
  opossum.open();
  const loop =
    (call: () => Promise<unknown>): Run =>
    async () => {
      for (let i = 0; i < ops; i++) await call().catch(swallow);
    };
  const ns = await interleaved(ops, {
    circuitry: loop(() => circuitry.execute(noop)),
    cockatiel: loop(() => cockatiel.execute(noop)),
    opossum: loop(() => opossum.fire()),
  });
  for (const [library, value] of Object.entries(ns)) {
    results.push({ case: 'rejection while open', library, value, unit: 'ns/op' });
  }
}

// ---- 1,000 calls in flight ---------------------------------------------------------------------
async function inFlight(): Promise<void> {
  const ops = Math.round(200_000 * scale);
  const circuitry = new BreakerFactory().breakerFor('bench');
  const cockatiel = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const opossum = track(new Opossum(noop, { timeout: false, resetTimeout: 30_000 }));
  const tick = (): Promise<number> => new Promise((resolve) => setImmediate(() => resolve(1)));
  const concurrent =
    (call: () => Promise<unknown>): Run =>
    async () => {
      let left = ops;
      await Promise.all(
        Array.from({ length: 1_000 }, async () => {
          while (left-- > 0) await call();
        }),
      );
    };
  const ns = await interleaved(ops, {
    bare: concurrent(tick),
    circuitry: concurrent(() => circuitry.execute(tick)),
    cockatiel: concurrent(() => cockatiel.execute(tick)),
    opossum: concurrent(() => opossum.fire()),
  });
  for (const [library, value] of Object.entries(ns)) {
    results.push({
      case: 'throughput, 1,000 calls in flight',
      library,
      value: Math.round(1e9 / value),
      unit: 'calls/s',
    });
  }
}

// ---- a failing call after 100,000 successes in the window --------------------------------------
async function failureAfterSuccesses(): Promise<void> {
  const successes = 100_000;
  const failures = quick ? 100 : 1_000;
  const measure = async (
    name: string,
    run: () => Promise<unknown>,
    fail: () => Promise<unknown>,
  ): Promise<void> => {
    for (let i = 0; i < successes; i++) await run();
    const start = process.hrtime.bigint();
    for (let i = 0; i < failures; i++) await fail().catch(swallow);
    results.push({
      case: 'a failing call after 100,000 successes in the window',
      library: name,
      value: Number(process.hrtime.bigint() - start) / failures,
      unit: 'ns/op',
    });
  };
  const never = failureRate(0.99, { minimumCalls: 1_000_000, windowMs: 60_000 });
  const circuitry = new BreakerFactory({ trip: never }).breakerFor('bench');
  await measure(
    'circuitry',
    () => circuitry.execute(noop),
    () => circuitry.execute(failing),
  );
  const cockatiel = circuitBreaker(handleAll, {
    halfOpenAfter: 30_000,
    breaker: new SamplingBreaker({ threshold: 0.99, duration: 60_000, minimumRps: 1_000_000 }),
  });
  await measure(
    'cockatiel',
    () => cockatiel.execute(noop),
    () => cockatiel.execute(failing),
  );
  let fail = false;
  const opossum = new Opossum(() => (fail ? failing() : noop()), {
    timeout: false,
    errorThresholdPercentage: 99,
    volumeThreshold: 1_000_000,
    rollingCountTimeout: 60_000,
    rollingCountBuckets: 10,
  });
  await measure(
    'opossum',
    () => opossum.fire(),
    () => {
      fail = true;
      return opossum.fire();
    },
  );
  opossum.shutdown();
}

// ---- memory and idle CPU with 100,000 per-tenant breakers --------------------------------------
async function perTenant(): Promise<void> {
  const tenants = quick ? 10_000 : 100_000;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.warn('run with --expose-gc for the memory case (npm run bench does)');
    return;
  }
  gc();
  const before = process.memoryUsage().heapUsed;
  const factory = new BreakerFactory({ maxBreakers: tenants });
  for (let i = 0; i < tenants; i++) await factory.breakerFor(`tenant-${i}`).execute(noop);
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / tenants;
  results.push({
    case: 'heap per idle per-tenant breaker (100,000 tenants)',
    library: 'circuitry',
    value: bytes,
    unit: 'bytes',
  });
  // Let the collector finish with what building them left behind, then watch an idle second.
  gc();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const cpu = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const used = process.cpuUsage(cpu);
  results.push({
    case: 'idle CPU with those breakers, over 1 s',
    library: 'circuitry',
    value: (used.user + used.system) / 1_000,
    unit: 'ms',
    note: 'no timer per breaker; what remains is the runtime',
  });
  await factory.close();
}

// ---- RedisStore, per-call coordination ---------------------------------------------------------
async function redis(): Promise<void> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
  } catch {
    console.warn(`no Redis at ${url}: skipping the RedisStore case`);
    client.disconnect();
    return;
  }
  const ops = Math.round(5_000 * scale);
  const prefix = `bench-${process.pid}:`;
  const breaker = new BreakerFactory({ store: new RedisStore({ client, prefix }) }).breakerFor('bench');
  await breaker.execute(noop);
  const commands = async (): Promise<number> => {
    const info = await client.info('commandstats');
    let total = 0;
    for (const m of info.matchAll(/^cmdstat_(evalsha|eval|get):calls=(\d+)/gm)) total += Number(m[2]);
    return total;
  };
  const ns = await interleaved(ops, {
    'GET round trip (floor)': async () => {
      for (let i = 0; i < ops; i++) await client.get(`${prefix}floor`);
    },
    'circuitry + RedisStore': async () => {
      for (let i = 0; i < ops; i++) await breaker.execute(noop);
    },
  });
  const before = await commands();
  for (let i = 0; i < ops; i++) await breaker.execute(noop);
  const perCall = ((await commands()) - before - 1) / ops;
  const floor = ns['GET round trip (floor)']!;
  for (const [library, value] of Object.entries(ns)) {
    results.push({
      case: 'RedisStore, per-call coordination',
      library,
      value,
      unit: 'ns/op',
      note:
        library === 'GET round trip (floor)'
          ? '1 command'
          : `${(value / floor).toFixed(2)}x the GET floor, ${perCall.toFixed(2)} commands/call`,
    });
  }
  const keys = await client.keys(`${prefix}*`);
  if (keys.length > 0) await client.del(...keys);
  client.disconnect();
}

// ---- PostgresStore, per-call coordination ------------------------------------------------------
async function postgres(): Promise<void> {
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 2_000 });
  pool.on('error', () => undefined);
  const schema = `circuitry_bench_${process.pid}`;
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch {
    console.warn(`no Postgres at ${url}: skipping the PostgresStore case`);
    await pool.end();
    return;
  }
  try {
    const table = `${schema}.breakers`;
    await createBreakerSchema(pool, { table });
    const ops = Math.round(2_000 * scale);
    // Counts the statements the store sends (each is one round trip).
    let statements = 0;
    const counted = Object.create(pool) as pg.Pool;
    counted.query = ((...args: Parameters<pg.Pool['query']>) => {
      statements += 1;
      return (pool.query as (...a: unknown[]) => unknown)(...args);
    }) as pg.Pool['query'];
    const factory = new BreakerFactory({
      store: new PostgresStore({ pool: counted, table }),
      maxStalenessMs: 0,
      flushIntervalMs: 0,
    });
    const breaker = factory.breakerFor('bench');
    await breaker.execute(noop);
    const ns = await interleaved(ops, {
      'SELECT 1 round trip (floor)': async () => {
        for (let i = 0; i < ops; i++) await pool.query('SELECT 1');
      },
      'circuitry + PostgresStore': async () => {
        for (let i = 0; i < ops; i++) await breaker.execute(noop);
      },
    });
    statements = 0;
    for (let i = 0; i < ops; i++) await breaker.execute(noop);
    const perCall = statements / ops;
    const floor = ns['SELECT 1 round trip (floor)']!;
    for (const [library, value] of Object.entries(ns)) {
      results.push({
        case: 'PostgresStore, per-call coordination',
        library,
        value,
        unit: 'ns/op',
        note:
          library === 'SELECT 1 round trip (floor)'
            ? '1 statement'
            : `${(value / floor).toFixed(2)}x the SELECT 1 floor, ${perCall.toFixed(2)} statements/call`,
      });
    }
    await factory.close();
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

await closedPath();
await openPath();
await inFlight();
await failureAfterSuccesses();
for (const breaker of opossums) breaker.shutdown();
await perTenant();
await redis();
await postgres();

const machine = {
  date: new Date().toISOString(),
  node: process.version,
  platform: `${platform()} ${arch()}`,
  cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
  quick,
};
const format = (r: Result): string =>
  r.unit === 'calls/s'
    ? Math.round(r.value).toLocaleString('en-US')
    : r.value < 100
      ? r.value.toFixed(1)
      : Math.round(r.value).toLocaleString('en-US');
console.log(`\n${machine.date}, Node ${machine.node}, ${machine.cpus}${quick ? ' (--quick)' : ''}\n`);
console.log('| case | library | value | unit | note |');
console.log('| --- | --- | ---: | --- | --- |');
for (const r of results)
  console.log(`| ${r.case} | ${r.library} | ${format(r)} | ${r.unit} | ${r.note ?? ''} |`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('./results/latest.json', import.meta.url),
  `${JSON.stringify({ machine, results }, null, 2)}\n`,
);
process.exit(0);
