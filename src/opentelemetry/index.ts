import { metrics as globalMetrics } from '@opentelemetry/api';
import type { Attributes, BatchObservableCallback, MeterProvider, Observable } from '@opentelemetry/api';

import type { BreakerFactory } from '../factory.js';
import { instrument } from '../factory.js';
import { DURATION_BUCKETS } from '../metrics.js';
import type { CallOutcome } from '../metrics.js';
import { breakerStates, callSeries, storeSeries, throttleSeries } from '../metrics-export.js';
import type { Series } from '../metrics-export.js';
import { invalid } from '../options.js';

/** Options of `registerMetrics`. */
export interface OpenTelemetryOptions {
  /** @defaultValue the global provider (`metrics.getMeterProvider()`); without an SDK registered, a no-op */
  readonly meterProvider?: MeterProvider;
}

/** What `registerMetrics` set up; `unregister()` stops recording and observing. */
export interface RegisteredInstruments {
  /** Stops recording call and store durations and observing the counters and gauges. */
  unregister(): void;
}

/**
 * Exposes a factory's breakers through `@opentelemetry/api`, with the same numbers and attribute
 * sets as `circuitry/prometheus`: `circuitry.calls`, `circuitry.call.duration` (s),
 * `circuitry.transitions`, `circuitry.breakers`, `circuitry.store.errors`,
 * `circuitry.store.duration` (s). Attributes are bounded by base names, never tenants.
 */
export function registerMetrics<Context>(
  factory: BreakerFactory<Context>,
  options: OpenTelemetryOptions = {},
): RegisteredInstruments {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
  const provider = options.meterProvider ?? globalMetrics.getMeterProvider();
  if (typeof provider?.getMeter !== 'function')
    throw invalid('meterProvider', 'an OpenTelemetry MeterProvider', provider);
  const meter = provider.getMeter('circuitry');
  const source = factory[instrument]();
  const advice = { explicitBucketBoundaries: [...DURATION_BUCKETS] };

  const calls = meter.createObservableCounter('circuitry.calls', {
    description: 'Calls by base name and outcome (success, failure, ignored, rejected with reason).',
  });
  const transitions = meter.createObservableCounter('circuitry.transitions', {
    description:
      'State changes by base name; origin="made" this process made (sum over a fleet: each once), origin="learnt" it heard of from another.',
  });
  const breakers = meter.createObservableGauge('circuitry.breakers', {
    description: 'Breakers this process holds, by base name and state (its local view).',
  });
  const throttle = meter.createObservableGauge('circuitry.throttle.rejection_rate', {
    description:
      'Highest share of calls an adaptive throttle of this base name turns away now (this process).',
  });
  const storeErrors = meter.createObservableCounter('circuitry.store.errors', {
    description: 'Store calls that failed or timed out, by operation.',
  });
  const callDuration = meter.createHistogram('circuitry.call.duration', {
    description: 'Duration of the calls that ran, by base name and outcome.',
    unit: 's',
    advice,
  });
  const storeDuration = meter.createHistogram('circuitry.store.duration', {
    description: 'Duration of store calls that were answered, by operation.',
    unit: 's',
    advice,
  });

  const observeAll = (
    observable: Observable,
    series: Series[],
    observe: (o: Observable, v: number, a: Attributes) => void,
  ) => {
    for (const s of series) observe(observable, s.value, s.labels);
  };
  const batch: BatchObservableCallback = (result) => {
    const observe = (o: Observable, v: number, a: Attributes): void => result.observe(o, v, a);
    observeAll(calls, callSeries(source.stats), observe);
    observeAll(
      transitions,
      [...source.stats.transitions].flatMap(([base, pairs]) =>
        [...pairs].map(([pair, value]) => {
          const [from, to, origin] = pair.split('\u0000') as [string, string, string];
          return { labels: { base, from, to, origin }, value };
        }),
      ),
      observe,
    );
    observeAll(breakers, breakerStates(source.breakers()), observe);
    observeAll(throttle, throttleSeries(source.breakers()), observe);
    observeAll(storeErrors, storeSeries(source.storeOperations()).errors, observe);
  };
  meter.addBatchObservableCallback(batch, [calls, transitions, breakers, throttle, storeErrors]);

  const onCall = (base: string, outcome: CallOutcome, seconds: number): void =>
    callDuration.record(seconds, { base, outcome });
  const onStoreCall = (operation: string, seconds: number): void =>
    storeDuration.record(seconds, { operation });
  source.stats.onCall.push(onCall);
  source.storeHealth.onCall.push(onStoreCall);
  return {
    unregister: () => {
      meter.removeBatchObservableCallback(batch, [calls, transitions, breakers, throttle, storeErrors]);
      remove(source.stats.onCall, onCall);
      remove(source.storeHealth.onCall, onStoreCall);
    },
  };
}

function remove<T>(list: T[], item: T): void {
  const at = list.indexOf(item);
  if (at !== -1) list.splice(at, 1);
}
