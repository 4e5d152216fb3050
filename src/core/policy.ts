import { InvalidOptionError } from '../errors.js';
import { describeValue } from './describe.js';
import type { ThrottlePolicy, TripPolicy, WindowCounts } from './types.js';

/** The default counting window for policies that have none (consecutive failures), for metrics. */
export const DEFAULT_WINDOW_MS = 60_000;

/*
 * The helpers check the types of their arguments, so a call missing one fails where it is made,
 * naming the helper, rather than with a TypeError or later; the values (ranges) are checked when
 * the options are resolved, where a policy written as plain data is checked too.
 */

function wrong(helper: string, what: string, expected: string, value: unknown): InvalidOptionError {
  return new InvalidOptionError(
    helper,
    `Expected \`${helper}\` ${what} to be ${expected}, got ${describeValue(value)}`,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** Trip after `threshold` failures in a row (a success resets the run). */
export function consecutiveFailures(threshold: number): TripPolicy {
  if (typeof threshold !== 'number') throw wrong('consecutiveFailures', 'threshold', 'a number', threshold);
  return { kind: 'consecutive-failures', threshold };
}

/**
 * Trip after `threshold` failures within the last `windowMs` (a sliding window of epoch-aligned
 * buckets). With a long window this is also the Go seed's periodic clearing.
 */
export function failuresInWindow(threshold: number, windowMs: number): TripPolicy {
  if (typeof threshold !== 'number') throw wrong('failuresInWindow', 'threshold', 'a number', threshold);
  if (typeof windowMs !== 'number') throw wrong('failuresInWindow', 'windowMs', 'a number', windowMs);
  return { kind: 'failures-in-window', threshold, windowMs };
}

/** Trip when failures / calls reaches `ratio` over `windowMs`, once at least `minimumCalls` were counted. */
export function failureRate(ratio: number, options: { minimumCalls: number; windowMs: number }): TripPolicy {
  if (typeof ratio !== 'number') throw wrong('failureRate', 'ratio', 'a number', ratio);
  if (
    !isObject(options) ||
    typeof options.minimumCalls !== 'number' ||
    typeof options.windowMs !== 'number'
  ) {
    throw wrong('failureRate', 'options', '`{ minimumCalls, windowMs }` (numbers)', options);
  }
  return { kind: 'failure-rate', ratio, minimumCalls: options.minimumCalls, windowMs: options.windowMs };
}

/** `adaptiveThrottle`'s defaults: those of the SRE book (k 2, 2 min, padding 8), capped at 0.9. */
export const THROTTLE_DEFAULTS = Object.freeze({
  k: 2,
  windowMs: 120_000,
  padding: 8,
  maxRejectionRate: 0.9,
  minimumCalls: 10,
});

/**
 * Adaptive throttling instead of open/closed (client-side throttling, as in Google's SRE book):
 * the breaker never opens on counts; each call is turned away (`CircuitOpenError`, reason
 * `'throttled'`) with probability
 * `min(maxRejectionRate, max(0, (requests - k * accepts) / (requests + padding)))`, where requests
 * are the calls this process attempted over the last `windowMs` (those it turned away included)
 * and accepts the calls the dependency accepted (a success, or an outcome `isFailure` ignores).
 * Nothing is turned away below `minimumCalls` requests. Counted in each process, so it costs no
 * store call; overrides, `openFor` and a `Retry-After` still open the breaker fleet-wide.
 */
export function adaptiveThrottle(
  options: {
    k?: number;
    windowMs?: number;
    padding?: number;
    maxRejectionRate?: number;
    minimumCalls?: number;
  } = {},
): TripPolicy {
  if (!isObject(options)) {
    throw wrong(
      'adaptiveThrottle',
      'options',
      '`{ k?, windowMs?, padding?, maxRejectionRate?, minimumCalls? }`',
      options,
    );
  }
  for (const key of ['k', 'windowMs', 'padding', 'maxRejectionRate', 'minimumCalls'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'number') {
      throw wrong('adaptiveThrottle', `option \`${key}\``, 'a number', options[key]);
    }
  }
  return {
    kind: 'adaptive-throttle',
    k: options.k ?? THROTTLE_DEFAULTS.k,
    windowMs: options.windowMs ?? THROTTLE_DEFAULTS.windowMs,
    padding: options.padding ?? THROTTLE_DEFAULTS.padding,
    maxRejectionRate: options.maxRejectionRate ?? THROTTLE_DEFAULTS.maxRejectionRate,
    minimumCalls: options.minimumCalls ?? THROTTLE_DEFAULTS.minimumCalls,
  };
}

/**
 * The share of calls an adaptive throttle turns away, given the requests and accepts of its
 * window: 0 below `minimumCalls` requests and whenever `k * accepts` covers the requests, never
 * above `maxRejectionRate`, and rising as the accepted share falls.
 */
export function throttleRejectionRate(policy: ThrottlePolicy, requests: number, accepts: number): number {
  if (requests < policy.minimumCalls) return 0;
  const rate = (requests - policy.k * accepts) / (requests + policy.padding);
  return rate <= 0 ? 0 : Math.min(policy.maxRejectionRate, rate);
}

/**
 * Trip when `predicate` returns true for the window counts. The breaker evaluates it over the
 * counts the store returns and asks the store to open, fenced by generation.
 */
export function custom(
  predicate: (counts: WindowCounts) => boolean,
  options: { windowMs?: number } = {},
): TripPolicy {
  if (typeof predicate !== 'function') throw wrong('custom', 'predicate', 'a function', predicate);
  if (!isObject(options) || (options.windowMs !== undefined && typeof options.windowMs !== 'number')) {
    throw wrong('custom', 'options', '`{ windowMs? }`', options);
  }
  return { kind: 'custom', windowMs: options.windowMs ?? DEFAULT_WINDOW_MS, predicate };
}

export function policyWindowMs(trip: TripPolicy): number {
  return trip.kind === 'consecutive-failures' ? DEFAULT_WINDOW_MS : trip.windowMs;
}

/**
 * Whether a batch with these outcomes can trip a closed breaker, so the policy is worth
 * evaluating after counting it: any failure can, and under a failure rate so can a success (it
 * may be the call that reaches `minimumCalls`). The other policies skip the window sum on a success.
 */
export function outcomesCanTrip(trip: TripPolicy, successes: number, failures: number): boolean {
  return failures > 0 || (successes > 0 && trip.kind === 'failure-rate');
}

/** Whether the data policy trips on these counts. A custom policy or a throttle never trips here. */
export function shouldTrip(trip: TripPolicy, counts: WindowCounts): boolean {
  switch (trip.kind) {
    case 'consecutive-failures':
      return counts.consecutiveFailures >= trip.threshold;
    case 'failures-in-window':
      return counts.failures >= trip.threshold;
    case 'failure-rate':
      // A quotient, not `failures >= ratio * total`: 0.55 * 100 is 55.00000000000001 in floating
      // point, so 55 failures in 100 calls would not reach 0.55. The quotient of two integers is
      // the double nearest the exact rate, which equals the ratio's double when the rates are equal.
      return counts.total >= trip.minimumCalls && counts.failures / counts.total >= trip.ratio;
    case 'custom':
    case 'adaptive-throttle':
      return false;
  }
}
