import { internal } from './breaker.js';
import type { CircuitBreaker } from './breaker.js';
import type { DurationHistogram, FactoryStats, StoreOperationStats } from './metrics.js';
import { DURATION_BUCKETS } from './metrics.js';

/**
 * The factory's metrics as labelled series, shared by the Prometheus and OpenTelemetry exporters
 * so both say the same numbers.
 */

export interface Series {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly metricName?: string;
}

/** The state a breaker shows in metrics: its override when it has one, else its state. */
export type MetricState = 'closed' | 'open' | 'half-open' | 'forced-open' | 'forced-closed' | 'metrics-only';

export const METRIC_STATES: readonly MetricState[] = [
  'closed',
  'open',
  'half-open',
  'forced-open',
  'forced-closed',
  'metrics-only',
];

export function stateOf<Context>(breaker: CircuitBreaker<Context>): MetricState {
  const view = breaker[internal].view();
  return view.override ?? view.state;
}

/** `calls_total{base, outcome, reason}`: runs by outcome (reason empty), rejections by reason. */
export function callSeries(stats: FactoryStats): Series[] {
  const series: Series[] = [];
  for (const base of stats.bases.values()) {
    for (const outcome of ['success', 'failure', 'ignored'] as const) {
      const value = base.calls[outcome];
      if (value > 0) series.push({ labels: { base: base.base, outcome, reason: '' }, value });
    }
    for (const [reason, value] of Object.entries(base.rejected)) {
      if (value > 0) series.push({ labels: { base: base.base, outcome: 'rejected', reason }, value });
    }
  }
  return series;
}

/** `breakers{base, state}`: every state of every base name that has breakers (zeros included). */
export function breakerStates<Context>(breakers: Iterable<CircuitBreaker<Context>>): Series[] {
  const counts = new Map<string, Record<MetricState, number>>();
  for (const breaker of breakers) {
    let byState = counts.get(breaker.baseName);
    if (byState === undefined) {
      byState = Object.fromEntries(METRIC_STATES.map((s) => [s, 0])) as Record<MetricState, number>;
      counts.set(breaker.baseName, byState);
    }
    byState[stateOf(breaker)] += 1;
  }
  return [...counts].flatMap(([base, byState]) =>
    METRIC_STATES.map((state) => ({ labels: { base, state }, value: byState[state] })),
  );
}

/**
 * `throttle_rejection_rate{base}`: for base names whose breakers throttle (`adaptiveThrottle`),
 * the highest share of calls any of them turns away now (this process's count).
 */
export function throttleSeries<Context>(breakers: Iterable<CircuitBreaker<Context>>): Series[] {
  const highest = new Map<string, number>();
  for (const breaker of breakers) {
    const rate = breaker[internal].throttleRate();
    if (rate === null) continue;
    highest.set(breaker.baseName, Math.max(rate, highest.get(breaker.baseName) ?? 0));
  }
  return [...highest].map(([base, value]) => ({ labels: { base }, value }));
}

/** Prometheus histogram lines (`_bucket` cumulative with `le`, `_sum`, `_count`) for each labelled histogram. */
export function histogramSeries(
  name: string,
  histograms: ReadonlyArray<{ labels: Record<string, string>; histogram: DurationHistogram }>,
): Series[] {
  const series: Series[] = [];
  for (const { labels, histogram } of histograms) {
    if (histogram.count === 0) continue;
    let cumulative = 0;
    DURATION_BUCKETS.forEach((bound, i) => {
      cumulative += histogram.counts[i]!;
      series.push({
        metricName: `${name}_bucket`,
        labels: { ...labels, le: String(bound) },
        value: cumulative,
      });
    });
    series.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: histogram.count });
    series.push({ metricName: `${name}_sum`, labels, value: histogram.sum });
    series.push({ metricName: `${name}_count`, labels, value: histogram.count });
  }
  return series;
}

export function storeSeries(operations: ReadonlyMap<string, StoreOperationStats>): {
  errors: Series[];
  durations: Array<{ labels: Record<string, string>; histogram: DurationHistogram }>;
} {
  const errors: Series[] = [];
  const durations: Array<{ labels: Record<string, string>; histogram: DurationHistogram }> = [];
  for (const [operation, stats] of operations) {
    errors.push({ labels: { operation }, value: stats.errors });
    durations.push({ labels: { operation }, histogram: stats.durations });
  }
  return { errors, durations };
}
