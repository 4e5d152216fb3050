/**
 * `npm run bench`: circuitry side by side with opossum and cockatiel, libraries interleaved round
 * by round so machine drift cancels; medians; then circuitry's stores (Redis, Postgres, DynamoDB on
 * dynalite) and the cases that need other processes (open propagation, a million tenants, the
 * closed path in the conditions of issue 26). Prints a results table and the targets of issues 13
 * and 26 with a verdict each, and writes bench/results/latest.json. `--quick` for a smoke run;
 * `--only <case or group>[,...]` for some cases (then bench/results/only.json). See bench/README.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, platform } from 'node:os';

import {
  ConsecutiveBreaker,
  SamplingBreaker,
  TimeoutStrategy,
  circuitBreaker,
  handleAll,
  timeout,
  wrap,
} from 'cockatiel';
import Opossum from 'opossum';
import pg from 'pg';

import { BreakerFactory, consecutiveFailures, failureRate } from '../src/index.js';
import { PostgresStore, createBreakerSchema } from '../src/stores/postgres/index.js';
import { registerMetrics as registerPrometheus } from '../src/prometheus/index.js';
import { Registry } from 'prom-client';

import { compiledLibrary } from './compiled.js';
import { dynamoDBCase } from './dynamodb-case.js';
import { fetchCase } from './fetch-case.js';
import { librariesCases, tenantsCases, warmPathsCases } from './conditions.js';
import {
  failing,
  interleaved,
  noop,
  only,
  quick,
  ratio,
  results,
  scale,
  swallow,
  targets,
} from './harness.js';
import type { Result, Run } from './harness.js';
import { propagationCase } from './propagation.js';
import { redisCases } from './redis-cases.js';
import { tenantMemoryCase } from './tenant-memory.js';

/** The library as tsc builds it (bench/compiled.ts); plain `circuitry` rows run src through tsx. */
const COMPILED = 'circuitry (compiled)';

// opossum keeps timers for its rolling stats: every one is shut down before the idle measurement.
const opossums: Opossum[] = [];
function track(breaker: Opossum): Opossum {
  opossums.push(breaker);
  return breaker;
}

// ---- closed path -------------------------------------------------------------------------------
async function closedPath(): Promise<void> {
  const ops = Math.round(200_000 * scale);
  const circuitry = new BreakerFactory().breakerFor('bench');
  const built = new (await compiledLibrary()).BreakerFactory().breakerFor('bench');
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
    [COMPILED]: loop(() => built.execute(noop)),
    'circuitry + metrics': loop(() => measured.execute(noop)),
    cockatiel: loop(() => cockatiel.execute(noop)),
    opossum: loop(() => opossum.fire()),
  });
  // The verdict is the compiled library's, which is what users run; src through tsx is shown beside it.
  targets.push({
    case: 'closed execute, MemoryStore vs cockatiel',
    target: '≤ 0.8x',
    measured: `${ratio(ns[COMPILED]!, ns.cockatiel!)} compiled (${ns[COMPILED]!.toFixed(0)} ns vs ${ns.cockatiel!.toFixed(0)} ns); src through tsx ${ratio(ns.circuitry!, ns.cockatiel!)}`,
    verdict: ns[COMPILED]! / ns.cockatiel! <= 0.8 ? 'met' : 'missed',
  });
  for (const library of ['bare', 'circuitry', COMPILED, 'circuitry + metrics', 'cockatiel', 'opossum']) {
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

// ---- closed path with a timeout ----------------------------------------------------------------
/**
 * The closed path as most callers run it, with a per-call timeout (1 s, never reached): circuitry
 * `timeoutMs`, cockatiel a cooperative `timeout` policy wrapped around its breaker, opossum's own
 * `timeout`. Each gives the call a timer, and circuitry and cockatiel an `AbortSignal` of its own.
 * A report: no target.
 */
async function timeoutPath(): Promise<void> {
  const ops = Math.round(50_000 * scale);
  const { BreakerFactory: Compiled } = await compiledLibrary();
  const built = new Compiled({ timeoutMs: 1_000 }).breakerFor('bench');
  const plain = new Compiled().breakerFor('bench');
  const cockatiel = wrap(
    timeout(1_000, TimeoutStrategy.Cooperative),
    circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) }),
  );
  const opossum = track(new Opossum(noop, { timeout: 1_000, resetTimeout: 30_000 }));
  // A literal per contender, so each call site sees one library (as a caller's code does).
  const ns = await interleaved(ops, {
    [`${COMPILED}, no timeout`]: async () => {
      for (let i = 0; i < ops; i++) await plain.execute(noop);
    },
    [COMPILED]: async () => {
      for (let i = 0; i < ops; i++) await built.execute(noop);
    },
    cockatiel: async () => {
      for (let i = 0; i < ops; i++) await cockatiel.execute(noop);
    },
    opossum: async () => {
      for (let i = 0; i < ops; i++) await opossum.fire();
    },
  });
  for (const [library, value] of Object.entries(ns)) {
    results.push({
      case: 'closed path with a 1 s timeout per call, per execute of an async no-op',
      library,
      value,
      unit: 'ns/op',
      note:
        library === 'cockatiel'
          ? 'timeout policy (cooperative) wrapped around the breaker'
          : `${ratio(value, ns.cockatiel!)} cockatiel`,
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
  const built = new (await compiledLibrary()).BreakerFactory().breakerFor('bench');
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
    [COMPILED]: concurrent(() => built.execute(tick)),
    cockatiel: concurrent(() => cockatiel.execute(tick)),
    opossum: concurrent(() => opossum.fire()),
  });
  // ns per op: throughput is its inverse, so circuitry's throughput over cockatiel's is the inverse ratio.
  targets.push({
    case: '1,000 calls in flight, throughput vs cockatiel',
    target: '≥ 1.3x',
    measured: `${ratio(ns.cockatiel!, ns[COMPILED]!)} compiled (${Math.round(1e9 / ns[COMPILED]!).toLocaleString('en-US')} vs ${Math.round(1e9 / ns.cockatiel!).toLocaleString('en-US')} calls/s); src through tsx ${ratio(ns.cockatiel!, ns.circuitry!)}`,
    verdict: ns.cockatiel! / ns[COMPILED]! >= 1.3 ? 'met' : 'missed',
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
    // Measured on this machine: 3.4 KB per breaker through tsx, 1.6 KB compiled by tsc.
    note: 'src through tsx, whose esbuild keepNames gives each named closure its own property store: the compiled library is measured in the 1,000,000-tenant case',
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

// ---- PostgresStore, per-call coordination ------------------------------------------------------
const POSTGRES_TARGET = 'PostgresStore per call vs SELECT 1';
async function postgres(): Promise<void> {
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 2_000 });
  pool.on('error', () => undefined);
  const schema = `circuitry_bench_${process.pid}`;
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch {
    console.warn(`no Postgres at ${url}: skipping the PostgresStore case`);
    targets.push({
      case: POSTGRES_TARGET,
      target: '≤ 1.5x',
      measured: '',
      verdict: 'skipped',
      note: `no Postgres at ${url}`,
    });
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
    const byStore = ns['circuitry + PostgresStore']!;
    targets.push({
      case: POSTGRES_TARGET,
      target: '≤ 1.5x',
      measured: `${ratio(byStore, floor)} (${(byStore / 1_000).toFixed(0)} µs vs ${(floor / 1_000).toFixed(0)} µs; ${perCall.toFixed(2)} statements/call)`,
      verdict: byStore / floor <= 1.5 ? 'met' : 'missed',
      note: 'default options (consecutiveFailures(5), per call): sequential calls that succeed',
    });
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

// The cases in the order they run, by the names `--only` takes.
const CASES: Record<string, () => Promise<void>> = {
  closed: closedPath,
  timeout: timeoutPath,
  open: openPath,
  'in-flight': inFlight,
  'failure-after-successes': failureAfterSuccesses,
  'per-tenant': perTenant,
  // Each in child processes of their own (bench/conditions.ts); warm-paths and fresh-breaker share one.
  'warm-paths': () => warmPathsCases(true, selected('fresh-breaker')),
  'fresh-breaker': () => (selected('warm-paths') ? Promise.resolve() : warmPathsCases(false, true)),
  libraries: librariesCases,
  tenants: tenantsCases,
  fetch: fetchCase,
  redis: redisCases,
  propagation: propagationCase,
  postgres,
  dynamodb: dynamoDBCase,
  'tenant-memory': tenantMemoryCase,
};
const GROUPS: Record<string, readonly string[]> = {
  // Issue 26: the closed path and 1,000 in flight in the conditions users run in.
  'hot-path': ['warm-paths', 'fresh-breaker', 'libraries', 'tenants'],
  stores: ['redis', 'postgres', 'dynamodb'],
};
const chosen: ReadonlySet<string> | null =
  only === null ? null : new Set([...only].flatMap((name) => GROUPS[name] ?? [name]));
const unknown = chosen === null ? [] : [...chosen].filter((name) => !(name in CASES));
if (chosen !== null && (chosen.size === 0 || unknown.length > 0)) {
  console.error(
    `--only takes case names or groups, comma-separated: ${[...Object.keys(CASES), ...Object.keys(GROUPS)].join(', ')}${unknown.length > 0 ? ` (unknown: ${unknown.join(', ')})` : ''}`,
  );
  process.exit(2);
}
function selected(name: string): boolean {
  return chosen === null || chosen.has(name);
}

// The in-process comparisons keep their opossums to the end of the last of them; opossum keeps
// timers for its rolling stats, so they are shut down before anything else runs (the idle CPU).
const COMPARISONS = new Set(['closed', 'timeout', 'open', 'in-flight', 'failure-after-successes']);
for (const [name, run] of Object.entries(CASES)) {
  if (!selected(name)) continue;
  if (!COMPARISONS.has(name)) for (const breaker of opossums.splice(0)) breaker.shutdown();
  const start = performance.now();
  await run();
  console.error(`${name}: ${((performance.now() - start) / 1_000).toFixed(1)} s`);
}
for (const breaker of opossums.splice(0)) breaker.shutdown();

const machine = {
  date: new Date().toISOString(),
  node: process.version,
  platform: `${platform()} ${arch()}`,
  cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
  quick,
  only: chosen === null ? null : [...chosen],
};
const format = (r: Result): string =>
  r.unit === 'calls/s'
    ? Math.round(r.value).toLocaleString('en-US')
    : r.value < 100
      ? r.value.toFixed(1)
      : Math.round(r.value).toLocaleString('en-US');
console.log(
  `\n${machine.date}, Node ${machine.node}, ${machine.cpus}${quick ? ' (--quick)' : ''}${chosen === null ? '' : ` (--only ${[...chosen].join(',')})`}\n`,
);
console.log('| case | library | value | unit | note |');
console.log('| --- | --- | ---: | --- | --- |');
for (const r of results)
  console.log(`| ${r.case} | ${r.library} | ${format(r)} | ${r.unit} | ${r.note ?? ''} |`);
console.log('\n### Targets (issues 13, 21 and 26)\n');
console.log('| case | target | measured | verdict | note |');
console.log('| --- | --- | --- | --- | --- |');
for (const t of targets)
  console.log(`| ${t.case} | ${t.target} | ${t.measured} | ${t.verdict} | ${t.note ?? ''} |`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
// A run of some cases only goes to only.json (not kept in git), so latest.json stays a whole run.
writeFileSync(
  new URL(chosen === null ? './results/latest.json' : './results/only.json', import.meta.url),
  `${JSON.stringify({ machine, results, targets }, null, 2)}\n`,
);
process.exit(0);
