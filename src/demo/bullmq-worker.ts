/**
 * One worker process of `circuitry demo --bullmq`: a BullMQ Worker (concurrency 1) on the demo's
 * queue. Without breakers, a failed job goes back to BullMQ, which retries it (attempts, backoff);
 * with them, the processor is `withBreaker` from circuitry/bullmq with one breaker per tenant,
 * shared with the other processes through a RedisStore, and a job meeting an open breaker is
 * deferred. It reports to the parent over IPC: calls to the failing downstream, deferrals,
 * completions and the state changes it won.
 */
import { Worker } from 'bullmq';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';

import type { CircuitBreaker } from '../breaker.js';
import { withBreaker } from '../bullmq/index.js';
import { BreakerFactory } from '../factory.js';
import { RedisStore } from '../stores/redis/index.js';
import { retryDelayMs } from './bullmq-protocol.js';
import type { BullmqFromWorker, BullmqJobData, BullmqToWorker } from './bullmq-protocol.js';
import { factoryMetrics } from './metrics-server.js';
import type { MetricsJson } from './metrics-server.js';
import { Downstream, breakerOptions, tenantBreaker } from './simulation.js';
import type { TenantContext } from './simulation.js';

const send = (message: BullmqFromWorker): void => {
  if (process.connected) process.send!(message, undefined, {}, () => undefined);
};

// Ctrl-C in a terminal reaches every process of the group: the parent stops this one (closing
// the worker, so no job is left active), then removes the demo's keys.
process.on('SIGINT', () => undefined);

type Config = Extract<BullmqToWorker, { t: 'config' }>;

let worker: Worker<BullmqJobData> | undefined;
let factory: BreakerFactory<TenantContext> | undefined;
let connection: Redis | undefined;
let storeClient: Redis | undefined;
let readMetrics: (() => Promise<MetricsJson>) | null = null;
let startWall = 0;
let stopping: Promise<void> | undefined;

async function configure(config: Config): Promise<void> {
  const { scenario } = config;
  // BullMQ's connection must not give up on a blocking command; the store's is an ordinary client.
  const bullConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const client = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  bullConnection.on('error', () => undefined);
  client.on('error', () => undefined);
  connection = bullConnection;
  storeClient = client;
  const f = new BreakerFactory<TenantContext>(
    breakerOptions(scenario, new RedisStore({ client, prefix: config.storePrefix }), config.index + 1),
  );
  factory = f;
  if (config.metrics) readMetrics = await factoryMetrics(f);
  const breakers: Array<CircuitBreaker<TenantContext>> = [];
  for (let tenant = 0; tenant < scenario.tenants; tenant++) {
    const breaker = tenantBreaker(f, tenant);
    // Only the process that won a transition is told, so each change is reported once.
    breaker.onStateChange((event) => send({ t: 'state', tenant, to: event.to }));
    breakers.push(breaker);
  }
  const downstream = new Downstream(scenario, () => Date.now() - startWall, config.index + 1);
  // The calls one job made to the failing downstream while it was down (one job at a time here).
  const call = async (job: Job<BullmqJobData>): Promise<void> => {
    const before = downstream.wastedCalls;
    try {
      await downstream.call(job.data.tenant);
    } finally {
      if (downstream.wastedCalls > before) send({ t: 'wasted', calls: downstream.wastedCalls - before });
    }
  };
  const processor = config.withBreakers
    ? withBreaker<BullmqJobData>({
        breaker: (job) => breakers[job.data.tenant]!,
        process: (job) => call(job),
        onDeferred: (job, error) => send({ t: 'deferred', id: job.id!, reason: error.reason }),
      })
    : (job: Job<BullmqJobData>) => call(job);
  const w = new Worker<BullmqJobData>(config.queue, processor, {
    connection: bullConnection,
    prefix: config.bullPrefix,
    concurrency: 1,
    autorun: false,
    settings: { backoffStrategy: (attemptsMade) => retryDelayMs(scenario, attemptsMade) },
  });
  w.on('completed', (job) => send({ t: 'done', tenant: job.data.tenant, enqueuedAt: job.data.enqueuedAt }));
  w.on('error', (error) => send({ t: 'error', message: error.message }));
  worker = w;
  await w.waitUntilReady();
}

async function stop(): Promise<void> {
  // Waits for the job in hand; the deferred and delayed ones stay in Redis for the parent to remove.
  await worker?.close();
  await factory?.close({ timeoutMs: 2_000 });
  connection?.disconnect();
  storeClient?.disconnect();
}

const stopOnce = (): Promise<void> => (stopping ??= stop());

process.on('message', (message: BullmqToWorker) => {
  switch (message.t) {
    case 'config':
      configure(message).then(
        () => send({ t: 'ready' }),
        (error: unknown) => {
          send({ t: 'error', message: error instanceof Error ? error.message : String(error) });
          process.exitCode = 1;
          void stopOnce().finally(() => process.disconnect());
        },
      );
      return;
    case 'start':
      startWall = message.startWall;
      // Resolves when the worker closes; its errors are reported through 'error'.
      worker?.run().catch((error: unknown) => send({ t: 'error', message: String(error) }));
      return;
    case 'metrics': {
      const id = message.id;
      (readMetrics?.() ?? Promise.resolve([])).then(
        (metrics) => send({ t: 'metrics', id, metrics }),
        () => send({ t: 'metrics', id, metrics: [] }),
      );
      return;
    }
    case 'stop':
      void stopOnce().finally(() => process.disconnect());
      return;
  }
});
// The parent is gone: stop, so nothing is left running against its Redis.
process.on('disconnect', () => void stopOnce());
