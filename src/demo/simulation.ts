import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { CircuitBreaker } from '../breaker.js';
import { ProberRule, rampSlot } from '../bullmq/deferral.js';
import { consecutiveFailures } from '../core/policy.js';
import { isCircuitOpenError } from '../errors.js';
import type { CircuitOpenError } from '../errors.js';
import type { BreakerFactory, FactoryOptions } from '../factory.js';
import type { Store } from '../store.js';
import { IntermittentFailer } from '../testing/intermittent-failer.js';
import { seededRandom } from '../testing/seeded-random.js';
import { Measurements } from './measurements.js';
import { MetricsRequests } from './metrics-server.js';
import type { MetricsJson, MetricsSource } from './metrics-server.js';

/**
 * How a failing tenant's downstream behaves during the outage: `down` fails every call, `rate`
 * fails a share of them (drawn from the seeded generator), `pattern` follows a fixed cycle of
 * `s` and `f` (an {@link IntermittentFailer}).
 */
export type FailurePattern =
  | { readonly kind: 'down' }
  | { readonly kind: 'rate'; readonly rate: number }
  | { readonly kind: 'pattern'; readonly pattern: string };

/** What one run of the simulated job queue looks like. */
export interface Scenario {
  readonly tenants: number;
  /** Tenants whose downstream fails during the outage: the first `failing` of them. */
  readonly failing: number;
  readonly workers: number;
  readonly durationMs: number;
  /** Jobs each tenant enqueues per second. */
  readonly jobsPerSecond: number;
  /** The outage, as fractions of the run: [start, end). */
  readonly outage: readonly [number, number];
  /** How the failing downstream fails during the outage. */
  readonly pattern: FailurePattern;
  /** Seeds the failure draws and the breakers' jitter, so two runs fail the same way. */
  readonly seed: number;
  /** A healthy downstream call takes this long. */
  readonly callMs: number;
  /** A failing downstream call takes this long to fail (it times out). */
  readonly failMs: number;
  /** In-worker retries of a failed call, with doubling backoff from `retryBackoffMs`. */
  readonly retries: number;
  readonly retryBackoffMs: number;
  /** The breakers' recovery ramp after a close (`recovery.rampMs`; 0: none). */
  readonly rampMs: number;
  /**
   * `--provider-outage`: the downstream is down for every tenant during the outage (`failing` is
   * then every tenant), and the run with breakers is repeated with escalation to the provider.
   */
  readonly providerOutage: boolean;
  /**
   * `--downstream-limit N`: the downstream answers 429 (a failure, at once) to any call beyond
   * this many in flight at once across every worker; no tenant has an outage. 0: no limit.
   */
  readonly downstreamLimit: number;
}

export const DEFAULT_SCENARIO: Scenario = {
  tenants: 6,
  failing: 1,
  workers: 4,
  durationMs: 12_000,
  jobsPerSecond: 60,
  outage: [0.2, 0.6],
  pattern: { kind: 'down' },
  seed: 1,
  callMs: 4,
  failMs: 40,
  retries: 3,
  retryBackoffMs: 25,
  rampMs: 3_000,
  providerOutage: false,
  downstreamLimit: 0,
};

/**
 * What a demo run compares: one tenant's outage (the default), the provider's outage for every
 * tenant (`--provider-outage`), or a downstream that limits calls in flight (`--downstream-limit`).
 */
export type Experiment = 'tenant-outage' | 'provider-outage' | 'downstream-limit';

export function experimentOf(scenario: Scenario): Experiment {
  if (scenario.providerOutage) return 'provider-outage';
  return scenario.downstreamLimit > 0 ? 'downstream-limit' : 'tenant-outage';
}

/**
 * How one run protects the downstream: `none` (retries in the worker, or BullMQ's), `breakers`
 * (one per tenant), `escalation` (one per tenant, and the base name opens for all of them when
 * enough are open), `throttle` (one per tenant, `trip: adaptiveThrottle()`), `concurrency` (one
 * breaker for the downstream with `maxConcurrent` its limit).
 */
export type Variant = 'none' | 'breakers' | 'escalation' | 'throttle' | 'concurrency';

/** The runs of each experiment, in order. */
export const VARIANTS: Readonly<Record<Experiment, readonly Variant[]>> = {
  'tenant-outage': ['none', 'breakers'],
  'provider-outage': ['none', 'breakers', 'escalation'],
  'downstream-limit': ['none', 'breakers', 'throttle', 'concurrency'],
};

export interface Job {
  readonly id: number;
  readonly tenant: number;
  readonly enqueuedAt: number;
  notBefore: number;
}

/** What a worker did with a job. */
export type JobOutcome =
  | { readonly kind: 'done' }
  /** The breaker rejected it (for `reason`): run it again after `notBefore`. */
  | { readonly kind: 'deferred'; readonly notBefore: number; readonly reason: string }
  /** Failed after every in-worker retry: back to the end of the queue. */
  | { readonly kind: 'gave-up' };

/** One sample of the timeline, every 250 ms. */
export interface Sample {
  readonly t: number;
  /** Per tenant: closed, open or half-open (always closed without breakers). */
  readonly states: readonly string[];
  /** Jobs completed per tenant since the last sample. */
  readonly completed: readonly number[];
}

export interface RunResult {
  readonly withBreakers: boolean;
  /** How this run protected the downstream (`none` is the run without breakers). */
  readonly variant: Variant;
  /** Calls that reached a failing downstream while it was down. */
  readonly wastedCalls: number;
  /** Jobs of healthy tenants completed per second, over the whole run. */
  readonly healthyThroughput: number;
  /** Jobs of healthy tenants completed per second while the failing downstream was down. */
  readonly healthyThroughputDuringOutage: number;
  readonly healthyP50Ms: number;
  readonly healthyP99Ms: number;
  /**
   * The healthy tenants' lowest jobs per second in any 250 ms window from the outage's start to
   * the run's end (from the run's start with `--downstream-limit`, which has no outage); null
   * when every tenant failed (`--provider-outage`).
   */
  readonly healthyMinThroughput: number | null;
  /** `healthyMinThroughput` as a share (0-1) of the rate the healthy tenants enqueue jobs at. */
  readonly healthyMinThroughputShare: number | null;
  /** Jobs of every tenant completed per second, over the whole run. */
  readonly throughput: number;
  /** Jobs of every tenant completed per second while the downstream was down. */
  readonly throughputDuringOutage: number;
  /** Every tenant's jobs: p50 and p99 latency, enqueue to completion. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Distinct jobs a breaker deferred by its retryAfterMs at least once. */
  readonly jobsDeferred: number;
  /** Deferrals: a job deferred three times counts three. */
  readonly deferrals: number;
  /** The deferrals by the breaker's reject reason (`open`, `base-open`, `concurrency-limit`...). */
  readonly rejections: Readonly<Record<string, number>>;
  /** From the outage's start to the first failing tenant's breaker opening (ms), or null. */
  readonly detectMs: number | null;
  /** From the outage's end to the last failing tenant's breaker closing (ms), or null. */
  readonly recoverMs: number | null;
  /** From the outage's start to the base name's breaker (`downstream/*`) opening (ms), or null. */
  readonly escalatedMs: number | null;
  /**
   * From the outage's end until every failing tenant (every tenant, with `--provider-outage`)
   * had a job completed again (ms), or null if one had none before the run ended.
   */
  readonly servedAgainMs: number | null;
  /** `--downstream-limit`: what the downstream saw. */
  readonly downstream?: DownstreamStats;
  /** Transitions announced (one per transition, whichever process won it): `transitions.length`. */
  readonly transitionCount: number;
  /** Each of them: when (ms into the run), which tenant, to which state. */
  readonly transitions: readonly Transition[];
  readonly timeline: readonly Sample[];
  /** BullMQ runs: jobs enqueued, and completed by the end of the drain after the run. */
  readonly jobs?: { readonly added: number; readonly completed: number };
}

export interface Transition {
  readonly t: number;
  /** The tenant whose breaker it was; -1 for a breaker of no one tenant (see `breaker`). */
  readonly tenant: number;
  readonly to: string;
  /** The name of a breaker of no one tenant: `downstream/*` (escalation), `downstream`. */
  readonly breaker?: string;
}

/** `--downstream-limit`: the calls the downstream saw, and those it refused with a 429. */
export interface DownstreamStats {
  readonly limit: number;
  /** Calls that reached it, refused ones included. */
  readonly calls: number;
  /** Calls it answered 429 because `limit` calls were in flight already. */
  readonly tooManyRequests: number;
  /** The most calls it had in flight at once (never above `limit`: those over it are refused). */
  readonly maxInFlight: number;
}

export interface Progress {
  readonly elapsedMs: number;
  readonly wastedCalls: number;
  /** Distinct jobs deferred so far (the table's "jobs deferred"). */
  readonly jobsDeferred: number;
  /** Deferrals so far: a job deferred three times counts three (the table's "deferrals"). */
  readonly deferrals: number;
  /** Jobs still to complete after the run (BullMQ drains its queue). */
  readonly left?: number;
  /** `--downstream-limit`: the downstream's 429s so far. */
  readonly tooManyRequests?: number;
  readonly open: number;
}

/** Where the workers run: in this process, or as child processes sharing a Redis store. */
export type Deployment =
  | { readonly kind: 'in-process'; readonly store?: Store }
  | {
      readonly kind: 'processes';
      readonly redisUrl: string;
      readonly prefix: string;
      /** The workers keep Prometheus metrics of their breakers, for `--metrics`. */
      readonly metrics?: boolean;
    };

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function tenantName(i: number): string {
  return `tenant-${String.fromCharCode(97 + (i % 26))}${i >= 26 ? i : ''}`;
}

/** The breakers' context: which tenant a call is for. */
export interface TenantContext {
  readonly tenant: string;
}

/**
 * The base name of the demo's breakers: one base for the downstream, one breaker per tenant
 * (`downstream/tenant-a`), as the README recommends, so metrics are labelled by one base and
 * the dashboard shows the tenants in one group.
 */
export const BASE_NAME = 'downstream';

/** Tenant `i`'s breaker. */
export function tenantBreaker(
  factory: BreakerFactory<TenantContext>,
  i: number,
): CircuitBreaker<TenantContext> {
  return factory.breakerFor(BASE_NAME, { tenant: tenantName(i) });
}

/** The breakers' options: the same in every process, so a shared store sees one policy. */
export function breakerOptions(
  scenario: Scenario,
  store: Store | undefined,
  salt = 0,
): FactoryOptions<TenantContext> {
  const openMs = 1_000;
  const random = seededRandom(scenario.seed * 7919 + salt);
  return {
    ...(store === undefined ? {} : { store }),
    name: (base, context) => (context === undefined ? base : `${base}/${context.tenant}`),
    trip: consecutiveFailures(5),
    openMs,
    backoff: { multiplier: 2, maxOpenMs: 2_000 },
    jitter: () => Math.round(random() * 0.1 * openMs),
    probeLeaseMs: 5_000,
    recovery: scenario.rampMs > 0 ? { rampMs: scenario.rampMs } : false,
  };
}

/**
 * A tenant's downstream as one worker sees it: it fails during the outage for the failing
 * tenants (as `scenario.pattern` says), and counts the calls that reached it while it was down.
 */
export class Downstream {
  wastedCalls = 0;
  readonly #scenario: Scenario;
  readonly #now: () => number;
  readonly #decide: (tenant: number) => boolean;
  readonly #limit: DownstreamLimit | undefined;

  /** `limit`: the calls in flight, shared by every worker's view of the downstream. */
  constructor(scenario: Scenario, now: () => number, salt = 0, limit?: DownstreamLimit) {
    this.#scenario = scenario;
    this.#now = now;
    this.#limit = limit;
    const pattern = scenario.pattern;
    if (pattern.kind === 'rate') {
      const random = seededRandom(scenario.seed + salt * 104_729);
      this.#decide = () => random() >= pattern.rate;
    } else if (pattern.kind === 'pattern') {
      const failers = new Map<number, IntermittentFailer>();
      this.#decide = (tenant) => {
        let failer = failers.get(tenant);
        if (failer === undefined)
          failers.set(tenant, (failer = new IntermittentFailer({ pattern: pattern.pattern })));
        return failer.next();
      };
    } else {
      this.#decide = () => false;
    }
  }

  /** Whether `tenant`'s downstream is in its outage now. */
  isDown(tenant: number): boolean {
    const s = this.#scenario;
    const t = this.#now();
    return tenant < s.failing && t >= s.outage[0] * s.durationMs && t < s.outage[1] * s.durationMs;
  }

  async call(tenant: number): Promise<void> {
    const limit = this.#limit;
    if (limit === undefined) return this.#serve(tenant);
    limit.calls += 1;
    if (limit.inFlight >= limit.limit) {
      limit.tooManyRequests += 1;
      // Refused at once: the answer costs a round trip, not the work.
      await sleep(1);
      throw new TooManyRequestsError(limit.limit);
    }
    limit.inFlight += 1;
    limit.maxInFlight = Math.max(limit.maxInFlight, limit.inFlight);
    try {
      await this.#serve(tenant);
    } finally {
      limit.inFlight -= 1;
    }
  }

  async #serve(tenant: number): Promise<void> {
    if (this.isDown(tenant)) {
      this.wastedCalls += 1;
      if (!this.#decide(tenant)) {
        await sleep(this.#scenario.failMs);
        throw new Error(`${tenantName(tenant)}'s downstream is down`);
      }
    }
    await sleep(this.#scenario.callMs);
  }
}

/** The downstream's answer to a call beyond its limit: HTTP 429, Too Many Requests. */
export class TooManyRequestsError extends Error {
  readonly status = 429;
  constructor(limit: number) {
    super(`429 Too Many Requests: ${limit} calls in flight already`);
    this.name = 'TooManyRequestsError';
  }
}

/**
 * `--downstream-limit N`: the downstream's calls in flight, across every worker of this process,
 * and what it answered.
 */
export class DownstreamLimit {
  inFlight = 0;
  calls = 0;
  tooManyRequests = 0;
  maxInFlight = 0;
  constructor(readonly limit: number) {}

  stats(): DownstreamStats {
    const { limit, calls, tooManyRequests, maxInFlight } = this;
    return { limit, calls, tooManyRequests, maxInFlight };
  }
}

/** The shortest deferral of a job a breaker rejected (ms). */
export const MIN_DEFER_MS = 10;

/**
 * One worker's handling of one job. Without a breaker, a failed call is retried in place with
 * doubling backoff (the worker is stuck on this tenant meanwhile). With one, a call the breaker
 * rejects is deferred by `retryAfterMs` and the worker moves on to the next job.
 */
export async function processJob(
  job: Job,
  breaker: CircuitBreaker<TenantContext> | undefined,
  downstream: Downstream,
  scenario: Scenario,
  now: () => number,
  deferrals: Deferrals,
): Promise<JobOutcome> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (breaker === undefined) await downstream.call(job.tenant);
      else await breaker.execute(() => downstream.call(job.tenant));
      return { kind: 'done' };
    } catch (error) {
      // The breaker's answer: come back later, and let this worker serve someone else. Not
      // sooner than MIN_DEFER_MS, as a queue defers (circuitry/bullmq: `minDelayMs`): a hint of
      // 1 ms would have the workers take the same jobs again and again.
      if (isCircuitOpenError(error)) {
        const t = now();
        return {
          kind: 'deferred',
          notBefore: t + deferrals.delay(job.tenant, error, t),
          reason: error.reason,
        };
      }
      if (attempt >= scenario.retries) return { kind: 'gave-up' };
      await sleep(scenario.retryBackoffMs * 2 ** attempt);
    }
  }
}

/**
 * How one worker (process) defers the jobs its tenants' breakers turn away, as
 * `circuitry/bullmq`'s `withBreaker` does: by the rejection's `retryAfterMs` (at least
 * `MIN_DEFER_MS`), except that while a breaker is open only the first job (while none is due
 * back) keeps it, to come back when the breaker probes; the others wait for the breaker to admit
 * calls again, when the queue brings them back (`Run.bringBack`, from `onAdmitting`), and their
 * delay, `PARKED_DELAY_FACTOR` times as long, only bounds the wait (`ProberRule`, shared with
 * `withBreaker`).
 */
export class Deferrals {
  readonly #probers = new ProberRule<number>(new Map());

  delay(tenant: number, error: CircuitOpenError, now: number): number {
    const delay = Math.max(MIN_DEFER_MS, error.retryAfterMs);
    if (error.reason !== 'open' && error.reason !== 'forced-open') return delay;
    return this.#probers.delayWhileOpen(tenant, delay, now);
  }
}

/** The parent's side of a simulated run: the queue, and the measurements. */
class Run extends Measurements {
  readonly queue: Job[] = [];
  #nextId = 0;

  enqueue(tenant: number, at: number): void {
    this.queue.push({ id: this.#nextId++, tenant, enqueuedAt: at, notBefore: 0 });
  }

  take(): Job | undefined {
    const t = this.now();
    const at = this.queue.findIndex((job) => job.notBefore <= t);
    return at === -1 ? undefined : this.queue.splice(at, 1)[0];
  }

  /**
   * A tenant's breaker admits calls again: its deferred jobs come back now, spread over what is
   * left of the recovery ramp, as `withBreaker` promotes delayed BullMQ jobs.
   */
  bringBack(tenant: number, rampLeftMs: number): void {
    const t = this.now();
    const waiting = this.queue.filter((job) => job.tenant === tenant && job.notBefore > t);
    waiting.forEach((job, i) => {
      job.notBefore = t + rampSlot(rampLeftMs, i, waiting.length);
    });
  }

  settle(job: Job, outcome: JobOutcome, wastedCalls: number): void {
    this.wasted(wastedCalls);
    if (outcome.kind === 'deferred') {
      this.deferred(job.id, outcome.reason);
      job.notBefore = outcome.notBefore;
      this.queue.push(job);
    } else if (outcome.kind === 'gave-up') {
      // As a queue would after its retries: back to the end.
      this.queue.push(job);
    } else {
      this.done(job.tenant, job.enqueuedAt);
    }
  }
}

interface Workers {
  /** Resolves when every worker has stopped. */
  stop(): Promise<void>;
}

function inProcessWorkers(
  run: Run,
  scenario: Scenario,
  breakers: ReadonlyArray<CircuitBreaker<TenantContext>>,
  isRunning: () => boolean,
  limit: DownstreamLimit | undefined,
): Workers {
  const worker = async (index: number): Promise<void> => {
    // One per worker, so the calls counted while a job runs are this worker's own (the calls in
    // flight, for --downstream-limit, are every worker's).
    const downstream = new Downstream(scenario, run.now, index + 1, limit);
    const deferrals = new Deferrals();
    while (isRunning()) {
      const job = run.take();
      if (job === undefined) {
        await sleep(1);
        continue;
      }
      const before = downstream.wastedCalls;
      const outcome = await processJob(job, breakers[job.tenant], downstream, scenario, run.now, deferrals);
      run.settle(job, outcome, downstream.wastedCalls - before);
      // A rejection settles in microtasks alone: yield, as a queue's round trip would, so the
      // timers (the calls, the sampling) are not starved by workers deferring job after job.
      if (outcome.kind === 'deferred') await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const all = Array.from({ length: scenario.workers }, (_, i) => worker(i));
  return { stop: async () => void (await Promise.all(all)) };
}

/** Messages between the parent and a worker process (see worker.ts). */
export type ToWorker =
  | {
      readonly t: 'config';
      readonly scenario: Scenario;
      readonly withBreakers: boolean;
      readonly redisUrl: string;
      readonly prefix: string;
      readonly index: number;
      readonly metrics: boolean;
    }
  | { readonly t: 'start'; readonly startWall: number }
  | { readonly t: 'job'; readonly job: Job | null }
  | { readonly t: 'metrics'; readonly id: number }
  | { readonly t: 'stop' };

export type FromWorker =
  | { readonly t: 'ready' }
  | { readonly t: 'take' }
  | { readonly t: 'result'; readonly job: Job; readonly outcome: JobOutcome; readonly wastedCalls: number }
  | { readonly t: 'state'; readonly tenant: number; readonly to: string }
  | { readonly t: 'admitting'; readonly tenant: number; readonly rampLeftMs: number }
  | { readonly t: 'metrics'; readonly id: number; readonly metrics: MetricsJson }
  | { readonly t: 'error'; readonly message: string };

async function processWorkers(
  run: Run,
  scenario: Scenario,
  withBreakers: boolean,
  deployment: Extract<Deployment, { kind: 'processes' }>,
): Promise<{ start(): void; workers: Workers; metrics: MetricsSource }> {
  // The worker module beside this one: worker.ts under tsx (the loader is inherited through
  // execArgv), worker.js in the built package.
  const here = fileURLToPath(import.meta.url);
  const workerPath = here.slice(0, -extname(here).length).replace(/simulation$/, 'worker') + extname(here);
  const children = Array.from({ length: scenario.workers }, () => {
    const child = fork(workerPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    // A message to a worker that is exiting (a job answered after it was told to stop) cannot
    // be delivered, and need not be: its 'exit' is what the parent waits for.
    child.on('error', () => undefined);
    return child;
  });
  const post = (child: ChildProcess, message: ToWorker): void => {
    if (child.connected) child.send(message, () => undefined);
  };
  let running = true;
  const metricsRequests = new MetricsRequests();
  const metricsOf = (child: ChildProcess): Promise<MetricsJson> =>
    metricsRequests.ask((id) => post(child, { t: 'metrics', id }));
  const ready = children.map(
    (child, index) =>
      new Promise<void>((resolve, reject) => {
        child.on('message', (message: FromWorker) => {
          switch (message.t) {
            case 'ready':
              return resolve();
            case 'take':
              return post(child, { t: 'job', job: running ? (run.take() ?? null) : null });
            case 'result':
              return run.settle(message.job, message.outcome, message.wastedCalls);
            case 'state':
              return run.stateChanged(message.tenant, message.to);
            case 'admitting':
              return run.bringBack(message.tenant, message.rampLeftMs);
            case 'metrics':
              return metricsRequests.answer(message.id, message.metrics);
            case 'error':
              return reject(new Error(`worker ${index}: ${message.message}`));
          }
        });
        child.once('exit', (code) => reject(new Error(`worker ${index} exited with ${code}`)));
        post(child, {
          t: 'config',
          scenario,
          withBreakers,
          redisUrl: deployment.redisUrl,
          prefix: deployment.prefix,
          index,
          metrics: deployment.metrics === true,
        });
      }),
  );
  try {
    await Promise.all(ready);
  } catch (error) {
    for (const child of children) child.kill();
    throw error;
  }
  const exited = children.map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())));
  return {
    metrics: () => Promise.all(children.filter((child) => child.connected).map(metricsOf)),
    start() {
      const startWall = Date.now() - run.now();
      for (const child of children) post(child, { t: 'start', startWall });
    },
    workers: {
      async stop() {
        running = false;
        for (const child of children) post(child, { t: 'stop' });
        await Promise.all(exited);
      },
    },
  };
}

/** The breakers of an in-process run. */
export interface BreakerSet {
  /** The breaker each tenant's calls go through: its own, or one every tenant shares. */
  readonly byTenant: ReadonlyArray<CircuitBreaker<TenantContext>>;
  /** Whether `byTenant[i]` is tenant i's own: its state changes are then reported as tenant i's. */
  readonly perTenant: boolean;
  /** Breakers of no one tenant, reported by name: the base name's (`downstream/*`), the downstream's. */
  readonly shared: ReadonlyArray<CircuitBreaker<TenantContext>>;
}

/**
 * Runs the job queue once, for real time, and measures it: every tenant enqueues
 * `jobsPerSecond` jobs, `workers` workers take them, and the failing tenants' downstream fails
 * during the outage. `makeBreakers` builds the breakers (in-process runs: one per tenant, see
 * `variantBreakers`); without it, or with `withBreakers` false, the run has none.
 */
export async function runQueue(
  scenario: Scenario,
  options: {
    readonly withBreakers: boolean;
    /** What the result says the run was: by default `breakers` or `none`, as `withBreakers`. */
    readonly variant?: Variant;
    readonly deployment: Deployment;
    readonly makeBreakers?: () => BreakerSet;
    readonly onProgress?: (progress: Progress) => void;
    /**
     * Worker processes with `deployment.metrics`: where to read their metrics during the run,
     * then (the processes gone) a snapshot of them at its end.
     */
    readonly onMetrics?: (source: MetricsSource) => void;
  },
): Promise<RunResult> {
  const run = new Run(scenario);
  let running = true;
  let workers: Workers;
  let limit: DownstreamLimit | undefined;
  if (options.deployment.kind === 'processes') {
    const started = await processWorkers(run, scenario, options.withBreakers, options.deployment);
    // The clock starts once every process is connected.
    run.restartClock();
    const onMetrics = options.onMetrics;
    workers =
      onMetrics === undefined
        ? started.workers
        : {
            async stop() {
              const last = await started.metrics();
              onMetrics(() => Promise.resolve(last));
              await started.workers.stop();
            },
          };
    onMetrics?.(started.metrics);
    started.start();
  } else {
    const breakers =
      options.withBreakers && options.makeBreakers !== undefined
        ? options.makeBreakers()
        : { byTenant: [], perTenant: true, shared: [] };
    if (breakers.perTenant) {
      breakers.byTenant.forEach((breaker, i) => {
        breaker.onStateChange((event) => run.stateChanged(i, event.to));
        breaker.onAdmitting((event) => run.bringBack(i, event.rampLeftMs));
      });
    }
    for (const breaker of breakers.shared)
      breaker.onStateChange((event) => run.sharedStateChanged(breaker.name, event.to));
    limit = scenario.downstreamLimit > 0 ? new DownstreamLimit(scenario.downstreamLimit) : undefined;
    workers = inProcessWorkers(run, scenario, breakers.byTenant, () => running, limit);
  }

  // Every tenant enqueues jobs at the same rate, for the whole run: a job each at every tick.
  // Against a limit of calls in flight (--downstream-limit), the jobs of a tick come in a seeded
  // random order: in a fixed one, the same tenants would always be the last of each burst, the
  // ones the downstream refuses.
  const order = Array.from({ length: scenario.tenants }, (_, i) => i);
  const shuffle = scenario.downstreamLimit > 0 ? seededRandom(scenario.seed * 7_727 + 1) : null;
  const producer = (async () => {
    const interval = 1_000 / scenario.jobsPerSecond;
    let next = 0;
    while (running) {
      const t = run.now();
      while (next <= t) {
        if (shuffle !== null) {
          for (let i = order.length - 1; i > 0; i--) {
            const j = Math.floor(shuffle() * (i + 1));
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
        }
        for (const tenant of order) run.enqueue(tenant, next);
        next += interval;
      }
      await sleep(Math.max(1, next - t));
    }
  })();

  const onProgress = options.onProgress;
  const timeline = await run.sample(
    onProgress === undefined
      ? undefined
      : (progress) =>
          onProgress(
            limit === undefined ? progress : { ...progress, tooManyRequests: limit.tooManyRequests },
          ),
  );
  running = false;
  await Promise.all([producer, workers.stop()]);
  const result = run.result(options.withBreakers, timeline, options.variant);
  return limit === undefined ? result : { ...result, downstream: limit.stats() };
}
