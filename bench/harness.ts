/**
 * What every bench case shares: the run's size, the results and targets tables, interleaved
 * rounds and the statistics over them.
 */
export const quick = process.argv.includes('--quick');
export const ROUNDS = quick ? 3 : 9;
export const scale = quick ? 0.1 : 1;

/**
 * `--only a,b` (or `--only=a,b`): the cases (or groups of cases) to run; null runs them all.
 * bench/index.ts knows the names.
 */
export const only: ReadonlySet<string> | null = (() => {
  const at = process.argv.findIndex((a) => a === '--only' || a.startsWith('--only='));
  if (at === -1) return null;
  const arg = process.argv[at]!;
  const value = arg === '--only' ? (process.argv[at + 1] ?? '') : arg.slice('--only='.length);
  return new Set(
    value
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== ''),
  );
})();

export type Run = () => Promise<void>;

export interface Result {
  readonly case: string;
  readonly library: string;
  readonly value: number;
  readonly unit: string;
  readonly note?: string;
}

/** One line of the targets table (issue 13): what was asked, what was measured, and the verdict. */
export interface Target {
  readonly case: string;
  readonly target: string;
  readonly measured: string;
  /** 'report': no target, the figure is shown; 'skipped': its service was missing. */
  readonly verdict: 'met' | 'missed' | 'report' | 'skipped';
  readonly note?: string;
}

export const results: Result[] = [];
export const targets: Target[] = [];

export function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

/** The nearest-rank percentile (`p` in [0, 1]): the smallest value with at least p of them at or below. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[rank - 1]!;
}

/** Runs each loop once per round, in turn, and returns the median ns per op of each. */
export async function interleaved(ops: number, runs: Record<string, Run>): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
  for (const run of Object.values(runs)) await run(); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of Object.entries(runs)) {
      const start = process.hrtime.bigint();
      await run();
      samples[name]!.push(Number(process.hrtime.bigint() - start) / ops);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

export const noop = (): Promise<number> => Promise.resolve(1);
// One error object for every failure: creating an Error (its stack trace) would cost more than
// any breaker and drown the difference.
export const down = new Error('down');
export const failing = (): Promise<never> => Promise.reject(down);
export const swallow = (): undefined => undefined;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** Lets timers and I/O run between bursts of calls that would otherwise never leave the microtask queue. */
export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Wall-clock milliseconds with sub-ms resolution, comparable between processes on one machine. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

export function ratio(value: number, of: number): string {
  return `${(value / of).toFixed(2)}x`;
}
