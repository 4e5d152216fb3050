import type { CircuitState, RejectReason } from './core/types.js';
import type { Clock } from './core/clock.js';
import { createTurnClock } from './turn-clock.js';

/**
 * The numbers behind `circuitry/prometheus` and `circuitry/opentelemetry`, kept by the breakers of
 * one factory once `factory.metrics()` was asked for: plain counters and fixed histogram buckets,
 * by base name (never by tenant), so their number is bounded by the base names, and the cost per
 * call is a few increments. Nothing is kept, and nothing is paid on the hot path, until then.
 */

/** Upper bounds (seconds) of the duration histograms' buckets; the last bucket is +Inf. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

export type CallOutcome = 'success' | 'failure' | 'ignored';

/** A histogram of durations: cumulative counts per bucket are derived when read. */
export interface DurationHistogram {
  /** Count per bucket of `DURATION_BUCKETS`, plus one for +Inf (not cumulative). */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

function histogram(): DurationHistogram {
  return { counts: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, count: 0 };
}

function observe(h: DurationHistogram, seconds: number): void {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
  h.counts[i]! += 1;
  h.sum += seconds;
  h.count += 1;
}

/** Calls and their durations for one base name. */
export class BaseStats {
  readonly calls: Record<CallOutcome, number> = { success: 0, failure: 0, ignored: 0 };
  readonly rejected: Record<RejectReason, number> = {
    open: 0,
    'half-open-full': 0,
    'forced-open': 0,
    'store-unavailable': 0,
    recovering: 0,
    throttled: 0,
    'base-open': 0,
    'concurrency-limit': 0,
    'local-open': 0,
  };
  readonly durations: Record<CallOutcome, DurationHistogram> = {
    success: histogram(),
    failure: histogram(),
    ignored: histogram(),
  };

  constructor(
    readonly base: string,
    private readonly stats: FactoryStats,
  ) {}

  /** The metrics clock, in ms. */
  now(): number {
    return this.stats.clock.now();
  }

  /** A call that ran; `ms` is its duration, measured by the stats' cheap clock. */
  ran(outcome: CallOutcome, ms: number): void {
    this.calls[outcome] += 1;
    observe(this.durations[outcome], ms / 1_000);
    const hooks = this.stats.onCall;
    if (hooks.length > 0) for (const hook of hooks) hook(this.base, outcome, ms / 1_000);
  }

  reject(reason: RejectReason): void {
    this.rejected[reason] += 1;
    const hooks = this.stats.onReject;
    if (hooks.length > 0) for (const hook of hooks) hook(this.base, reason);
  }

  /**
   * A state change: `made` by this process (it won the store's compare-and-set: summing `made`
   * over a fleet counts each transition once) or `learnt` from another (a push or a read).
   */
  transition(from: CircuitState, to: CircuitState, origin: TransitionOrigin = 'made'): void {
    const key = `${from}\u0000${to}\u0000${origin}`;
    let byPair = this.stats.transitions.get(this.base);
    if (byPair === undefined) this.stats.transitions.set(this.base, (byPair = new Map<string, number>()));
    byPair.set(key, (byPair.get(key) ?? 0) + 1);
    const hooks = this.stats.onTransition;
    if (hooks.length > 0) for (const hook of hooks) hook(this.base, from, to);
  }
}

/** Whether a process made a transition (won it in the store) or learnt of it from another. */
export type TransitionOrigin = 'made' | 'learnt';

/** Every base name's stats for one factory, and hooks for exporters that record per event. */
export class FactoryStats {
  readonly bases = new Map<string, BaseStats>();
  /** base → "from\0to\0origin" → count */
  readonly transitions = new Map<string, Map<string, number>>();
  /** A clock for durations that costs almost nothing when many calls start in one turn. */
  readonly clock: Clock = createTurnClock();
  readonly onCall: Array<(base: string, outcome: CallOutcome, seconds: number) => void> = [];
  readonly onReject: Array<(base: string, reason: RejectReason) => void> = [];
  readonly onTransition: Array<(base: string, from: CircuitState, to: CircuitState) => void> = [];

  forBase(base: string): BaseStats {
    let stats = this.bases.get(base);
    if (stats === undefined) {
      stats = new BaseStats(base, this);
      this.bases.set(base, stats);
    }
    return stats;
  }
}

/** A store operation's counts and durations, kept by the store's health (one per store). */
export interface StoreOperationStats {
  errors: number;
  readonly durations: DurationHistogram;
}

export function storeOperationStats(): StoreOperationStats {
  return { errors: 0, durations: histogram() };
}

export function observeStoreCall(stats: StoreOperationStats, ms: number): void {
  observe(stats.durations, ms / 1_000);
}
