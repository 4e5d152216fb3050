import { register as globalRegistry } from 'prom-client';
import type { Registry } from 'prom-client';

import type { BreakerFactory } from '../factory.js';
import { instrument } from '../factory.js';
import { invalid } from '../options.js';
import {
  METRIC_STATES,
  breakerStates,
  throttleSeries,
  callSeries,
  histogramSeries,
  stateOf,
  storeSeries,
} from '../metrics-export.js';
import type { MetricState, Series } from '../metrics-export.js';

/** Options of `registerMetrics`. */
export interface PrometheusOptions {
  /** Where to register. @defaultValue prom-client's global registry (pass your own: it is global) */
  readonly registry?: Registry;
  /** Prefix of every metric name. @defaultValue 'circuitry_' */
  readonly prefix?: string;
  /**
   * Opt in to `<prefix>breaker_open{name}`: one series per breaker in one of `states`, at most
   * `max` of them (by name), so an operator sees which tenants are open without a series per
   * tenant forever. @defaultValue off; `states` ['open', 'half-open', 'forced-open'], `max` 100
   */
  readonly perBreaker?: {
    /** The states that give a breaker a series. @defaultValue ['open', 'half-open', 'forced-open'] */
    readonly states?: readonly MetricState[];
    /** At most this many series (1 to 10,000), the first names in sort order. @defaultValue 100 */
    readonly max?: number;
  };
}

/** What `registerMetrics` registered; `unregister()` removes it from the registry. */
export interface RegisteredMetrics {
  /** The names of the metrics registered, prefix included. */
  readonly names: readonly string[];
  /** Removes the metrics from the registry. */
  unregister(): void;
}

interface CustomMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator: 'sum';
  get(): { name: string; help: string; type: string; aggregator: 'sum'; values: Series[] };
}

/**
 * Exposes a factory's breakers to Prometheus (`prom-client`): calls by base name and outcome,
 * call durations, transitions, breakers by state, store errors and durations. Every label set is
 * bounded by base names, never by tenants; values are read from the factory when scraped.
 */
export function registerMetrics<Context>(
  factory: BreakerFactory<Context>,
  options: PrometheusOptions = {},
): RegisteredMetrics {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
  const registry = options.registry ?? globalRegistry;
  if (typeof registry?.registerMetric !== 'function')
    throw invalid('registry', 'a prom-client Registry', registry);
  const prefix = options.prefix ?? 'circuitry_';
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
    throw invalid('prefix', 'a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', prefix);
  }
  const perBreaker = readPerBreaker(options.perBreaker);
  const source = factory[instrument]();

  const metric = (
    name: string,
    help: string,
    type: CustomMetric['type'],
    values: () => Series[],
  ): CustomMetric => ({
    name: `${prefix}${name}`,
    help,
    type,
    aggregator: 'sum',
    get() {
      return { name: `${prefix}${name}`, help, type, aggregator: 'sum', values: values() };
    },
  });

  const metrics: CustomMetric[] = [
    metric(
      'calls_total',
      'Calls by base name and outcome (success, failure, ignored, rejected with reason).',
      'counter',
      () => callSeries(source.stats),
    ),
    metric(
      'call_duration_seconds',
      'Duration of the calls that ran, by base name and outcome.',
      'histogram',
      () =>
        histogramSeries(
          `${prefix}call_duration_seconds`,
          [...source.stats.bases.values()].flatMap((base) =>
            (['success', 'failure', 'ignored'] as const).map((outcome) => ({
              labels: { base: base.base, outcome },
              histogram: base.durations[outcome],
            })),
          ),
        ),
    ),
    metric(
      'transitions_total',
      'State changes by base name; origin="made" this process made (sum over a fleet: each once), origin="learnt" it heard of from another.',
      'counter',
      () =>
        [...source.stats.transitions].flatMap(([base, pairs]) =>
          [...pairs].map(([pair, value]) => {
            const [from, to, origin] = pair.split('\u0000') as [string, string, string];
            return { labels: { base, from, to, origin }, value };
          }),
        ),
    ),
    metric('breakers', 'Breakers this process holds, by base name and state (its local view).', 'gauge', () =>
      breakerStates(source.breakers()),
    ),
    metric(
      'throttle_rejection_rate',
      'Highest share of calls an adaptive throttle of this base name turns away now (this process).',
      'gauge',
      () => throttleSeries(source.breakers()),
    ),
    metric(
      'store_errors_total',
      'Store calls that failed or timed out, by operation.',
      'counter',
      () => storeSeries(source.storeOperations()).errors,
    ),
    metric(
      'store_duration_seconds',
      'Duration of store calls that were answered, by operation.',
      'histogram',
      () =>
        histogramSeries(`${prefix}store_duration_seconds`, storeSeries(source.storeOperations()).durations),
    ),
  ];
  if (perBreaker !== null) {
    metrics.push(
      metric(
        'breaker_open',
        `Breakers in state ${perBreaker.states.join(', ')} (at most ${perBreaker.max}), by name.`,
        'gauge',
        () => {
          const names: string[] = [];
          for (const breaker of source.breakers()) {
            if (perBreaker.states.includes(stateOf(breaker))) names.push(breaker.name);
          }
          return names
            .sort()
            .slice(0, perBreaker.max)
            .map((name) => ({ labels: { name }, value: 1 }));
        },
      ),
    );
  }
  for (const m of metrics) registry.registerMetric(m as never);
  return {
    names: metrics.map((m) => m.name),
    unregister: () => {
      for (const m of metrics) registry.removeSingleMetric(m.name);
    },
  };
}

function readPerBreaker(value: PrometheusOptions['perBreaker']) {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null) throw invalid('perBreaker', '{ states?, max? }', value);
  const states: unknown = value.states ?? ['open', 'half-open', 'forced-open'];
  const known: readonly string[] = METRIC_STATES;
  if (!Array.isArray(states) || !states.every((s) => typeof s === 'string' && known.includes(s))) {
    throw invalid('perBreaker.states', `an array of ${known.join(', ')}`, states);
  }
  const max = value.max ?? 100;
  if (!Number.isInteger(max) || max < 1 || max > 10_000)
    throw invalid('perBreaker.max', 'an integer from 1 to 10,000', max);
  return { states: states as readonly MetricState[], max };
}
