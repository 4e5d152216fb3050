/**
 * Per-tenant breakers in a job worker: a tenant whose downstream fails has its jobs deferred
 * with a retry-after, instead of being retried in the worker and starving the other tenants.
 *
 * Run: npx tsx examples/quick-start.ts
 */
import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../src/index.js';

interface TenantContext {
  readonly tenantId: string;
}

const factory = new BreakerFactory<TenantContext>({
  // One breaker per tenant: the name is the key of the shared state.
  name: (baseName, context) => `${baseName}/${context?.tenantId ?? 'none'}`,
  trip: consecutiveFailures(3),
  openMs: 200,
  onStateChange: (name, _context, from, to) => console.log(`  [${name}] ${from} -> ${to}`),
});

// A downstream that is down for tenant "acme" (until it recovers) and fine for the others.
let acmeDown = true;
async function callDownstream(tenantId: string, job: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  if (tenantId === 'acme' && acmeDown) throw new Error(`downstream of ${tenantId} is down`);
  return `job ${job} done for ${tenantId}`;
}

const deferred: Array<{ tenantId: string; job: number; retryAfterMs: number }> = [];
let completed = 0;
let failed = 0;

async function runJobs(from: number, to: number): Promise<void> {
  for (let job = from; job < to; job++) {
    for (const tenantId of ['acme', 'globex', 'initech']) {
      const breaker = factory.breakerFor('sync-invoices', { tenantId });
      try {
        await breaker.execute(() => callDownstream(tenantId, job));
        completed += 1;
      } catch (error) {
        if (isCircuitOpenError(error)) {
          // Defer the job instead of retrying it here: the queue runs it again later.
          deferred.push({ tenantId, job, retryAfterMs: error.retryAfterMs });
        } else {
          failed += 1;
        }
      }
    }
  }
}

console.log('acme is down: its breaker opens after 3 failures, and its jobs are deferred');
await runJobs(0, 12);
console.log(`completed ${completed}, failed ${failed}, deferred ${deferred.length}`);
console.log('first deferral:', deferred[0]);

console.log('acme recovers; after the open period one probe goes through, and it closes again');
acmeDown = false;
await new Promise((resolve) => setTimeout(resolve, 250)); // openMs 200 plus up to 10% jitter
await runJobs(12, 16);
console.log(`completed ${completed}, failed ${failed}, deferred ${deferred.length}`);

const health = await factory.health();
for (const breaker of health.breakers) console.log(`  ${breaker.name}: ${breaker.state}`);
await factory.close();
