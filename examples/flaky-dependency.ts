/**
 * Testing your own code against a flaky dependency with circuitry/testing: a flaky HTTP service
 * that is down for its first requests and then recovers, called through a breaker, with a
 * ManualClock so the open period passes without waiting.
 *
 * Run: npx tsx examples/flaky-dependency.ts
 */
import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../src/index.js';
import { IntermittentFailer, ManualClock, startFlakyServer } from '../src/testing/index.js';

// Down for six requests, then healthy for good.
const server = await startFlakyServer({ pattern: { pattern: 'ffffff', then: 'succeed' } });
const clock = new ManualClock();
const factory = new BreakerFactory({ clock, trip: consecutiveFailures(3), openMs: 1_000, jitter: 0 });
const breaker = factory.breakerFor('invoices-api');
breaker.onStateChange((event) => console.log(`  breaker: ${event.from} -> ${event.to}`));

async function fetchInvoice(id: number): Promise<string> {
  return breaker.execute(async (signal) => {
    const response = await fetch(`${server.url}/invoices/${id}`, { signal });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.text();
  });
}

for (let id = 1; id <= 12; id++) {
  try {
    await fetchInvoice(id);
    console.log(`invoice ${id}: fetched`);
  } catch (error) {
    if (isCircuitOpenError(error)) {
      console.log(`invoice ${id}: deferred for ${error.retryAfterMs} ms (not sent)`);
      clock.advance(error.retryAfterMs); // a test moves time instead of sleeping
    } else {
      console.log(`invoice ${id}: failed (${(error as Error).message})`);
    }
  }
}
console.log(`the service saw ${server.stats().requests} requests for 12 invoices`);

// The same idea without HTTP: a deterministic failer in front of any function.
const failer = new IntermittentFailer({ successes: 2, failures: 1 });
const flakyAdd = failer.wrap(async (a: number, b: number) => Promise.resolve(a + b));
const results = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((n) => flakyAdd(n, n)));
console.log(results.map((r) => (r.status === 'fulfilled' ? r.value : 'failed')).join(' '));

await factory.close();
await server.close();
