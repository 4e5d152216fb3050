/**
 * A BullMQ worker with one breaker per tenant, shared in Redis: a tenant whose downstream is down
 * has its jobs deferred (back to the delayed set for the breaker's retry-after, no attempt used)
 * instead of failed or retried in the worker, and the other tenants' jobs go on.
 *
 * Run against a Redis you have: REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/bullmq.ts
 * (OUTAGE_MS=1000 makes acme's outage shorter than its default 3 s; the example ends when every
 * job has completed, and removes its queue.)
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { isTooManyDeferralsError, withBreaker } from '../src/bullmq/index.js';
import { BreakerFactory, consecutiveFailures } from '../src/index.js';
import { RedisStore } from '../src/stores/redis/index.js';

interface SyncJob {
  readonly tenantId: string;
  readonly invoice: number;
}

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// BullMQ's worker connection must not give up on its blocking commands.
const connection = new Redis(url, { maxRetriesPerRequest: null });
const storeClient = new Redis(url);

const factory = new BreakerFactory<{ tenantId: string }>({
  store: new RedisStore({ client: storeClient, prefix: 'example:breakers:' }),
  name: (baseName, context) => `${baseName}/${context?.tenantId}`,
  trip: consecutiveFailures(3),
  openMs: 2_000,
  timeoutMs: 5_000, // aborts the work's signal
  onStateChange: (name, _context, from, to) => console.log(`  [${name}] ${from} -> ${to}`),
});

// The downstream: down for tenant "acme" during the first 3 seconds (or OUTAGE_MS).
const downUntil = Date.now() + Number(process.env.OUTAGE_MS ?? 3_000);
async function syncInvoices(job: SyncJob, signal: AbortSignal): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, 20));
  signal.throwIfAborted();
  if (job.tenantId === 'acme' && Date.now() < downUntil) throw new Error('acme CRM is down');
  return `invoice ${job.invoice} synced for ${job.tenantId}`;
}

const queue = new Queue<SyncJob>('example-sync', { connection });
const worker = new Worker<SyncJob, string>(
  'example-sync',
  withBreaker<SyncJob, string>({
    breaker: (job) => factory.breakerFor('sync-invoices', { tenantId: job.data.tenantId }),
    process: async (job, signal) => syncInvoices(job.data, signal),
    maxDeferrals: 50, // then the job fails with TooManyDeferralsError
    onDeferred: (job, error, delayMs) =>
      console.log(`  deferred job ${job.id} (${job.data.tenantId}) for ${delayMs} ms: ${error.reason}`),
  }),
  { connection, concurrency: 4 },
);
worker.on('failed', (job, error) => {
  if (isTooManyDeferralsError(error))
    console.log(`  job ${job?.id} gave up after ${error.deferrals} deferrals`);
  else console.log(`  job ${job?.id} attempt failed: ${error.message}`);
});

let completed = 0;
const total = 30;
const allDone = new Promise<void>((resolve) => {
  worker.on('completed', () => {
    completed += 1;
    if (completed === total) resolve();
  });
});

for (let invoice = 0; invoice < total; invoice += 1) {
  const tenantId = ['acme', 'globex', 'initech'][invoice % 3]!;
  // The work's own failures are retried by BullMQ as usual; deferrals use up no attempt.
  await queue.add(
    'sync',
    { tenantId, invoice },
    { attempts: 5, backoff: { type: 'exponential', delay: 200 } },
  );
}
await allDone;
console.log(`${completed} jobs completed`);

// Graceful shutdown: the worker first (a running job's signal aborts and the job goes back to
// the queue), then the breakers (writes what they buffered), then the connections you made.
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
await factory.close();
connection.disconnect();
storeClient.disconnect();
