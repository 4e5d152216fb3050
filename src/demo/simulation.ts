import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { CircuitBreaker } from '../breaker.js';
import { consecutiveFailures } from '../core/policy.js';
import { isCircuitOpenError } from '../errors.js';
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
  rampMs: 0,
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
  /** The breaker rejected it: run it again after `notBefore`. */
  | { readonly kind: 'deferred'; readonly notBefore: number }
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
  /** Calls that reached a failing downstream while it was down. */
  readonly wastedCalls: number;
  /** Jobs of healthy tenants completed per second, over the whole run. */
  readonly healthyThroughput: number;
  /** Jobs of healthy tenants completed per second while the failing downstream was down. */
  readonly healthyThroughputDuringOutage: number;
  readonly healthyP50Ms: number;
  readonly healthyP99Ms: number;
  /** Distinct jobs a breaker deferred by its retryAfterMs at least once. */
  readonly jobsDeferred: number;
  /** Deferrals: a job deferred three times counts three. */
  readonly deferrals: number;
  /** From the outage's start to the first failing tenant's breaker opening (ms), or null. */
  readonly detectMs: number | null;
  /** From the outage's end to the last failing tenant's breaker closing (ms), or null. */
  readonly recoverMs: number | null;
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
  readonly tenant: number;
  readonly to: string;
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

  constructor(scenario: Scenario, now: () => number, salt = 0) {
    this.#scenario = scenario;
    this.#now = now;
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
): Promise<JobOutcome> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (breaker === undefined) await downstream.call(job.tenant);
      else await breaker.execute(() => downstream.call(job.tenant));
      return { kind: 'done' };
    } catch (error) {
      // The breaker's answer: come back later, and let this worker serve someone else.
      if (isCircuitOpenError(error)) return { kind: 'deferred', notBefore: now() + error.retryAfterMs };
      if (attempt >= scenario.retries) return { kind: 'gave-up' };
      await sleep(scenario.retryBackoffMs * 2 ** attempt);
    }
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

  settle(job: Job, outcome: JobOutcome, wastedCalls: number): void {
    this.wasted(wastedCalls);
    if (outcome.kind === 'deferred') {
      this.deferred(job.id);
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
): Workers {
  const worker = async (index: number): Promise<void> => {
    // One per worker, so the calls counted while a job runs are this worker's own.
    const downstream = new Downstream(scenario, run.now, index + 1);
    while (isRunning()) {
      const job = run.take();
      if (job === undefined) {
        await sleep(1);
        continue;
      }
      const before = downstream.wastedCalls;
      const outcome = await processJob(job, breakers[job.tenant], downstream, scenario, run.now);
      run.settle(job, outcome, downstream.wastedCalls - before);
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

/**
 * Runs the job queue once, for real time, and measures it: every tenant enqueues
 * `jobsPerSecond` jobs, `workers` workers take them, and the failing tenants' downstream fails
 * during the outage. `makeBreakers` builds one breaker per tenant (in-process runs); `null` runs
 * without breakers.
 */
export async function runQueue(
  scenario: Scenario,
  options: {
    readonly withBreakers: boolean;
    readonly deployment: Deployment;
    readonly makeBreakers?: () => Array<CircuitBreaker<TenantContext>>;
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
    const breakers = options.withBreakers && options.makeBreakers !== undefined ? options.makeBreakers() : [];
    breakers.forEach((breaker, i) => breaker.onStateChange((event) => run.stateChanged(i, event.to)));
    workers = inProcessWorkers(run, scenario, breakers, () => running);
  }

  // Every tenant enqueues jobs at the same rate, for the whole run.
  const producer = (async () => {
    const interval = 1_000 / scenario.jobsPerSecond;
    let next = 0;
    while (running) {
      const t = run.now();
      while (next <= t) {
        for (let tenant = 0; tenant < scenario.tenants; tenant++) run.enqueue(tenant, next);
        next += interval;
      }
      await sleep(Math.max(1, next - t));
    }
  })();

  const timeline = await run.sample(options.onProgress);
  running = false;
  await Promise.all([producer, workers.stop()]);
  return run.result(options.withBreakers, timeline);
}
