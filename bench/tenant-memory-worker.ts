/**
 * Run by bench/tenant-memory.ts in a child process (`--expose-gc`), so a million breakers do not
 * disturb the other cases: touches `tenants` per-tenant breakers once each through one factory
 * with default options (a MemoryStore, `maxBreakers` 10,000) and prints, as one JSON line, the
 * heap after `gc()` at checkpoints, with how many breaker objects the factory holds and how many
 * records its store holds; then moves the clock an hour on, touches one more tenant and measures
 * again, to show what bounds the store.
 */
import type * as Circuitry from '../src/index.js';

import { noop } from './harness.js';

const tenants = Number(process.argv[2]);
// The library compiled by tsc (what users run), not src through tsx: esbuild's keepNames, which tsx
// turns on, gives every named closure a property store of its own (~250 B each).
const { BreakerFactory, MemoryStore } = (await import(process.argv[3]!)) as typeof Circuitry;
const gc = (globalThis as { gc?: () => void }).gc!;
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

// The system clock, but one the bench can move on (the only option that is not a default).
let offset = 0;
const clock = { now: () => Date.now() + offset };

// Warm-up with a factory thrown away after, so the baseline holds the code the calls compile.
async function warmUp(): Promise<void> {
  const warm = new BreakerFactory();
  for (let i = 0; i < 20_000; i++) await warm.breakerFor(`warm-${i}`).execute(noop);
  await warm.close();
}
await warmUp();

const store = new MemoryStore({ clock });
const factory = new BreakerFactory({ store, clock });
const checkpoints = [10_000, 100_000, 250_000, 500_000, 1_000_000].filter((n) => n <= tenants);
const base = heap();
interface Point {
  tenants: number;
  heapBytes: number;
  breakers: number;
  records: number;
  ms: number;
}
const points: Point[] = [];
const start = performance.now();
for (let i = 0; i < tenants;) {
  await factory.breakerFor(`tenant-${i}`).execute(noop);
  i += 1;
  if (i === checkpoints[points.length]) {
    points.push({
      tenants: i,
      heapBytes: heap() - base,
      breakers: factory.size,
      records: store.size,
      ms: performance.now() - start,
    });
  }
}
// An hour later one more tenant calls: the store's records of the others have aged out.
offset = 3_600_000;
await factory.breakerFor('one-more').execute(noop);
offset = 7_200_000;
await factory.breakerFor('and-another').execute(noop);
const later: Point = {
  tenants,
  heapBytes: heap() - base,
  breakers: factory.size,
  records: store.size,
  ms: performance.now() - start,
};
process.stdout.write(`${JSON.stringify({ base, points, later })}\n`);
await factory.close();
