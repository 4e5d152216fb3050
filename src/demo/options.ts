/**
 * The demo's command line: every flag read and checked here, before anything runs, so a usage
 * error costs nothing and says which flag is wrong.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { DemoError } from './demo-error.js';
import { DEFAULT_SCENARIO } from './simulation.js';
import type { FailurePattern, Scenario } from './simulation.js';
import { ESCALATION, THROTTLE } from './variants.js';

/** `--provider-outage` without `--tenants`, `--workers` or `--rate`: see docs/demo.md. */
export const PROVIDER_OUTAGE_DEFAULTS = Object.freeze({ tenants: 40, workers: 16, jobsPerSecond: 6 });
/** `--downstream-limit N` without `--tenants`, `--workers` or `--rate`: see docs/demo.md. */
export const DOWNSTREAM_LIMIT_DEFAULTS = Object.freeze({ tenants: 6, workers: 16, jobsPerSecond: 120 });

export const HELP = `circuitry demo: a multi-tenant job queue with one failing downstream, run twice:
workers retrying failed jobs in place, then per-tenant circuit breakers deferring them.
Or the downstream down for every tenant (--provider-outage), or limiting the calls in flight
(--downstream-limit N), each run with the breakers' answers to it.

Usage: npm start -- [options]              (in a clone of the repository)
       npx circuitry demo [options]        (where the package is installed)
       npm start --silent -- --json | jq   (--silent keeps npm's banner off stdout)
Also:  npm run flaky-server -- --help      (a flaky HTTP service for your own tests;
                                            npx circuitry flaky-server where installed)
       npx circuitry --help                (operate a fleet: list, status, overrides, watch, dashboard)

  --tenants N        tenants (default ${DEFAULT_SCENARIO.tenants})
  --failing N        tenants whose downstream fails (default ${DEFAULT_SCENARIO.failing})
  --workers N        workers shared by every tenant (default ${DEFAULT_SCENARIO.workers})
  --duration S       seconds per run (default ${DEFAULT_SCENARIO.durationMs / 1000})
  --rate N           jobs per second per tenant (default ${DEFAULT_SCENARIO.jobsPerSecond})
  --outage A-B       the outage, as fractions of the run (default ${DEFAULT_SCENARIO.outage.join('-')})
  --pattern P        how the failing downstream fails during the outage (default down):
                       down        every call fails (after ${DEFAULT_SCENARIO.failMs} ms, like a timeout)
                       rate:R      a share R (0-1] of calls fail, drawn from the seed
                       sssff...    a fixed cycle of successes (s) and failures (f),
                                   followed by each worker
                     The breakers trip on 5 consecutive failures.
  --seed N           seeds the failure draws and the breakers' jitter (default ${DEFAULT_SCENARIO.seed})
  --ramp MS          the breakers' recovery ramp: after a close, a share of jobs growing to all
                     over MS is admitted, the rest deferred (default ${DEFAULT_SCENARIO.rampMs}; 0: none)
  --redis URL        run the workers as separate processes whose breakers share state
                     through a RedisStore at URL (e.g. redis://127.0.0.1:6379); the demo
                     checks it can reach URL first (exit 1 within seconds when it cannot)
  --json [FILE]      the results as JSON: on stdout instead of the table, or written to FILE
                     (the table is printed then)
  --html FILE        also write a self-contained HTML report with timelines
  --metrics PORT     while the demo runs, serve its breakers' Prometheus metrics (circuitry/
                     prometheus registerMetrics) at http://127.0.0.1:PORT/metrics; 0 picks a
                     free port, the URL is printed at start. The run without breakers has no
                     breakers, so none until the second run starts; then those of the run
                     with breakers (with --dashboard, until Ctrl-C). With --redis or --bullmq,
                     the sum over the worker processes (each has its own breakers and
                     counts). Needs prom-client.
  --bullmq           the same comparison on a real BullMQ queue in the Redis at --redis
                     (default redis://127.0.0.1:6379), its workers as --workers processes
                     (concurrency 1): without breakers BullMQ retries a failed job (attempts,
                     backoff doubling from 25 ms to 1 s); with them, withBreaker from
                     circuitry/bullmq defers a job whose tenant's breaker is open. After each
                     run the queue is drained so every job completes. The keys live under a
                     prefix of their own (circuitry-demo-bullmq:<pid>:<time>:) and are removed
                     at the end, also on Ctrl-C (exit code 130). Needs bullmq and ioredis.
  --dashboard        with --redis or --bullmq: start the operator dashboard (as npx circuitry
                     dashboard does) on the demo's Redis and key prefix, print its URL before
                     the run and keep it open after the run until Ctrl-C, to watch tenants
                     open and close
  --dashboard-port N the dashboard's port (default 7070; 0 picks a free one)
  --provider-outage  another comparison: the downstream is down for every tenant during the
                     outage. Three runs: retry in worker, per-tenant breakers, and per-tenant
                     breakers with escalate { maxOpenFraction: ${ESCALATION.maxOpenFraction}, minBreakers: ${ESCALATION.minBreakers} }
                     (downstream/* opens for every tenant once enough of them are open).
                     Defaults then: --tenants ${PROVIDER_OUTAGE_DEFAULTS.tenants}, --workers ${PROVIDER_OUTAGE_DEFAULTS.workers}, --rate ${PROVIDER_OUTAGE_DEFAULTS.jobsPerSecond}; --failing does
                     not apply. In this process only: not with --redis, --bullmq, --dashboard
  --downstream-limit N
                     another comparison: no outage, but the downstream answers 429 at once to
                     any call beyond N in flight (across every worker). Four runs: retry in
                     worker, per-tenant breakers, per-tenant breakers with trip:
                     adaptiveThrottle({ windowMs: ${THROTTLE.windowMs} }), and one breaker for the downstream
                     with maxConcurrent: N. N must be below --workers (default then ${DOWNSTREAM_LIMIT_DEFAULTS.workers});
                     --failing, --outage and --pattern do not apply. In this process only:
                     not with --redis, --bullmq, --dashboard
  --help             this text

Exit codes: 0 done, 1 the store cannot be reached or the run failed, 2 bad usage,
130 stopped by Ctrl-C (--bullmq).
`;

const DEFAULT_DASHBOARD_PORT = 7070;
const DEFAULT_BULLMQ_REDIS = 'redis://127.0.0.1:6379';

export interface DemoOptions {
  readonly scenario: Scenario;
  /** Workers as processes sharing a RedisStore at this URL; in this process when undefined. */
  readonly redisUrl: string | undefined;
  /** Where the JSON results go: `'-'` for stdout; none when undefined. */
  readonly json: string | undefined;
  readonly html: string | undefined;
  /** Serve Prometheus metrics on this port (0: any free one). */
  readonly metricsPort: number | undefined;
  /** A real BullMQ queue in the Redis at `redisUrl`, instead of the simulated one. */
  readonly bullmq: boolean;
  /** Start the dashboard on this port (0: any free one); none when undefined. */
  readonly dashboardPort: number | undefined;
}

const usage = (message: string): never => {
  throw new DemoError(2, message);
};

function positive(name: string, value: string | undefined, fallback: number, integer = true): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    usage(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function port(name: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65_535)
    usage(`--${name} must be a port from 0 to 65535, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * `--json` takes an optional FILE, which `parseArgs` cannot express: a `--json` followed by
 * nothing or by another flag means stdout (`-`).
 */
function optionalJsonValue(args: readonly string[]): string[] {
  return args.map((arg, i) => {
    const next = args[i + 1];
    return arg === '--json' && (next === undefined || (next.startsWith('-') && next !== '-'))
      ? '--json=-'
      : arg;
  });
}

/** Fails now, not after the run, when `file` cannot be written: its directory must exist and be writable. */
export function checkWritable(flag: string, file: string): void {
  const path = resolve(file);
  const dir = dirname(path);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch {
    return usage(`${flag} ${file}: the directory ${dir} does not exist`);
  }
  if (!isDirectory) usage(`${flag} ${file}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    usage(`${flag} ${file}: the directory ${dir} is not writable`);
  }
  try {
    if (statSync(path).isDirectory()) usage(`${flag} ${file}: that is a directory`);
  } catch (error) {
    if (error instanceof DemoError) throw error;
    // Not there yet: it will be created.
  }
}

/** The options of `npm start -- ...`, or `'help'`; throws `DemoError` (exit 2) on bad usage. */
export function parseDemoArgs(args: readonly string[]): DemoOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: optionalJsonValue(args),
      options: {
        tenants: { type: 'string' },
        failing: { type: 'string' },
        workers: { type: 'string' },
        duration: { type: 'string' },
        rate: { type: 'string' },
        outage: { type: 'string' },
        pattern: { type: 'string' },
        seed: { type: 'string' },
        ramp: { type: 'string' },
        redis: { type: 'string' },
        json: { type: 'string' },
        html: { type: 'string' },
        metrics: { type: 'string' },
        bullmq: { type: 'boolean' },
        dashboard: { type: 'boolean' },
        'dashboard-port': { type: 'string' },
        'provider-outage': { type: 'boolean' },
        'downstream-limit': { type: 'string' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (error) {
    return usage((error as Error).message);
  }
  if (parsed.help) return 'help';
  const providerOutage = parsed['provider-outage'] === true;
  const downstreamLimit =
    parsed['downstream-limit'] === undefined
      ? 0
      : positive('downstream-limit', parsed['downstream-limit'], 0);
  if (providerOutage && downstreamLimit > 0)
    usage('--provider-outage and --downstream-limit are two different comparisons: give one of them');
  const inProcessOnly = providerOutage
    ? '--provider-outage'
    : downstreamLimit > 0
      ? '--downstream-limit'
      : null;
  if (inProcessOnly !== null) {
    const other = ['redis', 'bullmq', 'dashboard'].find((flag) => parsed[flag as 'redis'] !== undefined);
    if (other !== undefined)
      usage(`${inProcessOnly} runs its workers in this process only: --${other} is not supported with it`);
  }
  if (providerOutage && parsed.failing !== undefined)
    usage('--provider-outage takes the downstream down for every tenant: --failing does not apply');
  if (downstreamLimit > 0) {
    const other = ['failing', 'outage', 'pattern'].find((flag) => parsed[flag as 'failing'] !== undefined);
    if (other !== undefined)
      usage(`--downstream-limit has no outage, only the limit: --${other} does not apply`);
  }
  const defaults = providerOutage
    ? PROVIDER_OUTAGE_DEFAULTS
    : downstreamLimit > 0
      ? DOWNSTREAM_LIMIT_DEFAULTS
      : DEFAULT_SCENARIO;
  const tenants = positive('tenants', parsed.tenants, defaults.tenants);
  const failing = providerOutage
    ? tenants
    : downstreamLimit > 0
      ? 0
      : parsed.failing === '0'
        ? 0
        : positive('failing', parsed.failing, DEFAULT_SCENARIO.failing);
  if (!providerOutage && downstreamLimit === 0 && failing >= tenants)
    usage('--failing must leave at least one healthy tenant');
  const workers = positive('workers', parsed.workers, defaults.workers);
  if (downstreamLimit >= workers) {
    usage(
      `--downstream-limit ${downstreamLimit} must be below --workers (${workers}): with no more workers than the limit, no call is ever over it`,
    );
  }
  if (downstreamLimit > 1_000)
    usage('--downstream-limit must be at most 1000 (maxConcurrent allows 1 to 1,000)');
  let outage = DEFAULT_SCENARIO.outage;
  if (parsed.outage !== undefined) {
    const m = /^(0?\.\d+|0)-(0?\.\d+|1)$/.exec(parsed.outage);
    if (m === null || Number(m[1]) >= Number(m[2]))
      usage(`--outage must be A-B with 0 <= A < B <= 1, got ${parsed.outage}`);
    outage = [Number(m![1]), Number(m![2])];
  }
  let pattern: FailurePattern = DEFAULT_SCENARIO.pattern;
  if (parsed.pattern !== undefined && parsed.pattern !== 'down') {
    const rate = /^rate:(.+)$/.exec(parsed.pattern);
    if (rate !== null) {
      const r = Number(rate[1]);
      if (!(r > 0 && r <= 1)) usage(`--pattern rate:R needs 0 < R <= 1, got ${parsed.pattern}`);
      pattern = { kind: 'rate', rate: r };
    } else if (/^[sf]*f[sf]*$/.test(parsed.pattern)) {
      pattern = { kind: 'pattern', pattern: parsed.pattern };
    } else {
      usage(
        `--pattern must be down, rate:R or a string of s and f with at least one f, got ${parsed.pattern}`,
      );
    }
  }
  let rampMs = DEFAULT_SCENARIO.rampMs;
  if (parsed.ramp !== undefined) {
    rampMs = Number(parsed.ramp);
    if (!Number.isSafeInteger(rampMs) || rampMs < 0) {
      usage(`--ramp must be a whole number of ms >= 0, got ${JSON.stringify(parsed.ramp)}`);
    }
  }
  let seed = DEFAULT_SCENARIO.seed;
  if (parsed.seed !== undefined) {
    seed = Number(parsed.seed);
    if (!Number.isSafeInteger(seed)) usage(`--seed must be an integer, got ${JSON.stringify(parsed.seed)}`);
  }
  if (parsed.redis !== undefined && !/^rediss?:\/\/./.test(parsed.redis)) {
    usage(`--redis must be a redis:// or rediss:// URL, got ${JSON.stringify(parsed.redis)}`);
  }
  const metricsPort = parsed.metrics === undefined ? undefined : port('metrics', parsed.metrics);
  if (parsed['dashboard-port'] !== undefined && parsed.dashboard !== true)
    usage('--dashboard-port needs --dashboard');
  const redisUrl = parsed.redis ?? (parsed.bullmq === true ? DEFAULT_BULLMQ_REDIS : undefined);
  if (parsed.dashboard === true && redisUrl === undefined) {
    usage(
      '--dashboard needs --redis URL (or --bullmq): the dashboard reads the breakers the worker processes share in Redis',
    );
  }
  const dashboardPort =
    parsed.dashboard === true
      ? port('dashboard-port', parsed['dashboard-port'] ?? String(DEFAULT_DASHBOARD_PORT))
      : undefined;
  if (parsed.json !== undefined && parsed.json !== '-') checkWritable('--json', parsed.json);
  if (parsed.html !== undefined) checkWritable('--html', parsed.html);
  return {
    scenario: {
      ...DEFAULT_SCENARIO,
      tenants,
      failing,
      workers,
      durationMs: positive('duration', parsed.duration, DEFAULT_SCENARIO.durationMs / 1000, false) * 1000,
      jobsPerSecond: positive('rate', parsed.rate, defaults.jobsPerSecond),
      outage,
      pattern,
      seed,
      rampMs,
      providerOutage,
      downstreamLimit,
    },
    redisUrl,
    bullmq: parsed.bullmq === true,
    json: parsed.json,
    html: parsed.html,
    metricsPort,
    dashboardPort,
  };
}
