/**
 * `circuitry demo --bullmq`: the same comparison on a real BullMQ queue in Redis. The parent
 * enqueues every tenant's jobs at the scenario's rate; `scenario.workers` worker processes (see
 * bullmq-worker.ts) run them, without breakers (BullMQ retries a failed job: attempts, backoff) or
 * with `withBreaker` (a job meeting an open breaker is deferred). After the run the queue is
 * drained, so every job completes; the caller removes the keys (`removeKeys` in redis-keys.ts).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

import { MAX_ATTEMPTS } from './bullmq-protocol.js';
import type { BullmqFromWorker, BullmqJobData, BullmqToWorker } from './bullmq-protocol.js';
import { Measurements } from './measurements.js';
import { MetricsRequests } from './metrics-server.js';
import type { MetricsJson, MetricsSource } from './metrics-server.js';
import { DemoError } from './demo-error.js';
import { sleep } from './simulation.js';
import type { Progress, RunResult, Scenario } from './simulation.js';

export interface BullmqDeployment {
  readonly redisUrl: string;
  /** BullMQ's key prefix; every key of the demo starts with it. */
  readonly bullPrefix: string;
  /** The breakers' RedisStore prefix, under `bullPrefix`. */
  readonly storePrefix: string;
  /** The workers keep Prometheus metrics of their breakers, for `--metrics`. */
  readonly metrics: boolean;
}

/** The prefixes of one demo's keys: `circuitry-demo-bullmq:<pid>:<time>`, breakers under it. */
export function bullmqPrefixes(): Pick<BullmqDeployment, 'bullPrefix' | 'storePrefix'> {
  const bullPrefix = `circuitry-demo-bullmq:${process.pid}:${Date.now()}`;
  return { bullPrefix, storePrefix: `${bullPrefix}:breakers:` };
}

/** The run was stopped by Ctrl-C (SIGINT) or SIGTERM. */
export const interrupted = (): DemoError => new DemoError(130, 'interrupted');

interface Workers {
  readonly children: ChildProcess[];
  start(startWall: number): void;
  metrics: MetricsSource;
  /** Closes every worker (each finishes the job in hand), killing one that takes over 10 s. */
  stop(): Promise<void>;
}

async function startWorkers(
  run: Measurements,
  scenario: Scenario,
  withBreakers: boolean,
  deployment: BullmqDeployment,
  queue: string,
): Promise<Workers> {
  const here = fileURLToPath(import.meta.url);
  const workerPath = `${here.slice(0, -extname(here).length)}-worker${extname(here)}`;
  const children = Array.from({ length: scenario.workers }, () => {
    const child = fork(workerPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('error', () => undefined);
    return child;
  });
  const post = (child: ChildProcess, message: BullmqToWorker): void => {
    if (child.connected) child.send(message, () => undefined);
  };
  const metricsRequests = new MetricsRequests();
  const metricsOf = (child: ChildProcess): Promise<MetricsJson> =>
    metricsRequests.ask((id) => post(child, { t: 'metrics', id }));
  const exited = children.map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())));
  const ready = children.map(
    (child, index) =>
      new Promise<void>((resolve, reject) => {
        child.on('message', (message: BullmqFromWorker) => {
          switch (message.t) {
            case 'ready':
              return resolve();
            case 'wasted':
              return run.wasted(message.calls);
            case 'deferred':
              return run.deferred(message.id, message.reason);
            case 'done':
              return run.done(message.tenant, message.enqueuedAt);
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
          bullPrefix: deployment.bullPrefix,
          storePrefix: deployment.storePrefix,
          queue,
          index,
          metrics: deployment.metrics,
        });
      }),
  );
  const stop = async (): Promise<void> => {
    for (const child of children) post(child, { t: 'stop' });
    const timer = setTimeout(() => {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    }, 10_000);
    await Promise.all(exited);
    clearTimeout(timer);
  };
  try {
    await Promise.all(ready);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    children,
    start: (startWall) => {
      for (const child of children) post(child, { t: 'start', startWall });
    },
    metrics: () => Promise.all(children.filter((child) => child.connected).map(metricsOf)),
    stop,
  };
}

/**
 * One run on a BullMQ queue named `queue`: enqueues for `scenario.durationMs`, measures, then
 * drains the queue (every job completes, or the drain gives up after `drainLimitMs`).
 */
export async function runBullmq(
  scenario: Scenario,
  options: {
    readonly withBreakers: boolean;
    readonly deployment: BullmqDeployment;
    readonly queue: string;
    readonly onProgress?: (progress: Progress) => void;
    readonly onMetrics?: (source: MetricsSource) => void;
    /** Aborted by Ctrl-C: the run stops, its workers close, and it rejects with `interrupted()`. */
    readonly signal?: AbortSignal;
    readonly drainLimitMs?: number;
  },
): Promise<RunResult> {
  const { deployment, signal } = options;
  const run = new Measurements(scenario);
  const connection = new Redis(deployment.redisUrl, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  const queue = new Queue<BullmqJobData>(options.queue, {
    connection,
    prefix: deployment.bullPrefix,
    defaultJobOptions: {
      // Retries of a job whose own call failed (see retryDelayMs); a deferral uses none.
      attempts: MAX_ATTEMPTS,
      backoff: { type: 'custom' },
      removeOnComplete: true,
      removeOnFail: true,
    },
  });
  let workers: Workers | undefined;
  try {
    workers = await startWorkers(run, scenario, options.withBreakers, deployment, options.queue);
    // The clock starts once every process is connected.
    run.restartClock();
    workers.start(Date.now() - run.now());
    options.onMetrics?.(workers.metrics);

    let added = 0;
    let producing = true;
    const producer = (async () => {
      const interval = 1_000 / scenario.jobsPerSecond;
      let next = 0;
      while (producing && !signal?.aborted) {
        const t = run.now();
        const jobs: Array<{ name: string; data: BullmqJobData }> = [];
        while (next <= t && next < scenario.durationMs) {
          for (let tenant = 0; tenant < scenario.tenants; tenant++)
            jobs.push({ name: 'job', data: { tenant, enqueuedAt: next } });
          next += interval;
        }
        if (jobs.length > 0) {
          await queue.addBulk(jobs);
          added += jobs.length;
        }
        await sleep(Math.max(1, next - run.now()));
      }
    })();
    const timeline = await run.sample(options.onProgress, signal);
    producing = false;
    await producer;

    // Drain: every job enqueued completes (deferred and retried ones included).
    const completed = (): number => run.completed.reduce((a, b) => a + b, 0);
    const drainUntil = run.now() + (options.drainLimitMs ?? Math.max(30_000, 2 * scenario.durationMs));
    while (completed() < added && run.now() < drainUntil && !signal?.aborted) {
      await sleep(100);
      options.onProgress?.({ ...run.progress(), left: added - completed() });
    }
    if (signal?.aborted) throw interrupted();
    if (options.onMetrics !== undefined) {
      const last = await workers.metrics();
      options.onMetrics(() => Promise.resolve(last));
    }
    return { ...run.result(options.withBreakers, timeline), jobs: { added, completed: completed() } };
  } finally {
    await workers?.stop();
    await queue.close();
    connection.disconnect();
  }
}
