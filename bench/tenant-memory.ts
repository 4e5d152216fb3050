/**
 * Process memory with a million tenants' breakers touched once: in a child process with
 * `--expose-gc` (bench/tenant-memory-worker.ts), so its heap neither disturbs nor is disturbed by
 * the other cases.
 */
import { fileURLToPath } from 'node:url';

import { compiledIndex, run } from './compiled.js';
import { quick, results, targets } from './harness.js';

interface Point {
  readonly tenants: number;
  readonly heapBytes: number;
  readonly breakers: number;
  readonly records: number;
  readonly ms: number;
}

const TARGET = 'process memory, 1,000,000 tenants touched once';

export async function tenantMemoryCase(): Promise<void> {
  const tenants = quick ? 100_000 : 1_000_000;
  const worker = fileURLToPath(new URL('./tenant-memory-worker.ts', import.meta.url));
  let points: Point[];
  let later: Point;
  try {
    const stdout = await run([
      '--expose-gc',
      '--max-old-space-size=4096',
      '--import',
      'tsx',
      worker,
      String(tenants),
      await compiledIndex(),
    ]);
    ({ points, later } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { points: Point[]; later: Point });
  } catch (error) {
    targets.push({ case: TARGET, target: 'report', measured: '', verdict: 'skipped', note: String(error) });
    return;
  }
  const c =
    'heap after gc, tenants touched once (compiled library; default options: MemoryStore, maxBreakers 10,000)';
  let previous: Point | null = null;
  for (const p of points) {
    const marginal =
      previous === null
        ? ''
        : `; ${((p.heapBytes - previous.heapBytes) / (p.tenants - previous.tenants)).toFixed(0)} B per tenant since ${previous.tenants.toLocaleString('en-US')}`;
    previous = p;
    results.push({
      case: c,
      library: `${p.tenants.toLocaleString('en-US')} tenants`,
      value: p.heapBytes / 2 ** 20,
      unit: 'MiB',
      note: `${(p.heapBytes / p.tenants).toFixed(0)} B/tenant; factory holds ${p.breakers.toLocaleString('en-US')} breakers, store ${p.records.toLocaleString('en-US')} records; ${(p.ms / 1_000).toFixed(1)} s${marginal}`,
    });
  }
  results.push({
    case: c,
    library: 'the same, 2 h later, after one more call',
    value: later.heapBytes / 2 ** 20,
    unit: 'MiB',
    note: `factory holds ${later.breakers.toLocaleString('en-US')} breakers, store ${later.records.toLocaleString('en-US')} records: the store's records age out`,
  });
  const last = points.at(-1)!;
  targets.push({
    case: TARGET,
    target: 'report',
    measured: `${(last.heapBytes / 2 ** 20).toFixed(0)} MiB for ${last.tenants.toLocaleString('en-US')} tenants (${(last.heapBytes / last.tenants).toFixed(0)} B/tenant); factory ${last.breakers.toLocaleString('en-US')} breakers, MemoryStore ${last.records.toLocaleString('en-US')} records; 2 h later ${(later.heapBytes / 2 ** 20).toFixed(0)} MiB (${later.breakers.toLocaleString('en-US')} breakers, ${later.records.toLocaleString('en-US')} records)`,
    verdict: 'report',
    note: '`maxBreakers` bounds the breaker objects; the MemoryStore keeps a record per tenant until it ages out, one to two retention periods after its last use (window + longest open + probe lease: about 6 min by default)',
  });
}
