/**
 * One worker process of `circuitry demo --redis URL`: it takes jobs from the parent over IPC,
 * runs them through its own per-tenant breakers, whose state it shares with the other worker
 * processes through a RedisStore, and reports outcomes and the state changes it won.
 */
import { BreakerFactory } from '../factory.js';
import type { CircuitBreaker } from '../breaker.js';
import { factoryMetrics } from './metrics-server.js';
import type { MetricsJson } from './metrics-server.js';
import { Deferrals, Downstream, breakerOptions, processJob, sleep, tenantBreaker } from './simulation.js';
import type { FromWorker, Job, TenantContext, ToWorker } from './simulation.js';

const send = (message: FromWorker): void => {
  // The parent may be gone already (it stops waiting at the end of a run): nothing to report to.
  if (process.connected) process.send!(message, undefined, {}, () => undefined);
};

let pendingJob: ((job: Job | null) => void) | null = null;
let readMetrics: (() => Promise<MetricsJson>) | null = null;
let stopping = false;
let onStart: ((startWall: number) => void) | null = null;
const started = new Promise<number>((resolve) => (onStart = resolve));

const configured = new Promise<Extract<ToWorker, { t: 'config' }>>((resolve) => {
  process.on('message', (message: ToWorker) => {
    if (message.t === 'config') resolve(message);
    else if (message.t === 'start') onStart?.(message.startWall);
    else if (message.t === 'job') {
      const waiting = pendingJob;
      pendingJob = null;
      waiting?.(message.job);
    } else if (message.t === 'metrics') {
      const id = message.id;
      (readMetrics?.() ?? Promise.resolve([])).then(
        (metrics) => send({ t: 'metrics', id, metrics }),
        () => send({ t: 'metrics', id, metrics: [] }),
      );
    } else if (message.t === 'stop') {
      stopping = true;
      pendingJob?.(null);
    }
  });
});
process.on('disconnect', () => {
  stopping = true;
  pendingJob?.(null);
});

const take = (): Promise<Job | null> =>
  new Promise((resolve) => {
    pendingJob = resolve;
    send({ t: 'take' });
  });

async function main(): Promise<void> {
  const config = await configured;
  const { scenario } = config;
  const { Redis } = await import('ioredis');
  const { RedisStore } = await import('../stores/redis/index.js');
  const client = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  const store = new RedisStore({ client, prefix: config.prefix });
  const factory = new BreakerFactory(breakerOptions(scenario, store, config.index + 1));
  if (config.metrics) readMetrics = await factoryMetrics(factory);
  const breakers: Array<CircuitBreaker<TenantContext>> = [];
  if (config.withBreakers) {
    for (let tenant = 0; tenant < scenario.tenants; tenant++) {
      const breaker = tenantBreaker(factory, tenant);
      // Only the process that won a transition is told, so each change is reported once.
      breaker.onStateChange((event) => send({ t: 'state', tenant, to: event.to }));
      breaker.onAdmitting((event) => send({ t: 'admitting', tenant, rampLeftMs: event.rampLeftMs }));
      breakers.push(breaker);
    }
  }
  send({ t: 'ready' });
  const startWall = await started;
  const now = (): number => Date.now() - startWall;
  const downstream = new Downstream(scenario, now, config.index + 1);
  const deferrals = new Deferrals();
  while (!stopping) {
    const job = await take();
    if (job === null) {
      if (!stopping) await sleep(1);
      continue;
    }
    const before = downstream.wastedCalls;
    const outcome = await processJob(job, breakers[job.tenant], downstream, scenario, now, deferrals);
    send({ t: 'result', job, outcome, wastedCalls: downstream.wastedCalls - before });
  }
  await factory.close();
  await client.quit();
  process.disconnect();
}

main().catch((error: unknown) => {
  send({ t: 'error', message: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
  process.disconnect();
});
