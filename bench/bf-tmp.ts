import { BreakerFactory } from '../src/index.js';
import { CircuitBreakerPolicy, ConsecutiveBreaker, handleAll, circuitBreaker } from 'cockatiel';
const factory = new BreakerFactory<{ tenantId: string }>();
const tenants = Array.from({ length: 1000 }, (_, i) => `t${i}`);
const noop = async () => 1;
const cb = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
async function run(label: string, fn: (i: number) => Promise<unknown>) {
  for (let i = 0; i < 200_000; i++) await fn(i);
  const n = 1_000_000; const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  console.log(label, (Number(process.hrtime.bigint() - t) / n).toFixed(0), 'ns');
}
for (let r = 0; r < 2; r++) {
  await run('cockatiel execute', () => cb.execute(noop));
  await run('breakerFor+execute 1000 tenants', (i) => factory.breakerFor('api', { tenantId: tenants[i % 1000]! }).execute(noop));
  await run('execute one breaker', () => factory.breakerFor('api').execute(noop));
}
