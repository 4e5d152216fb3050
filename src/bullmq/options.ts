import type { Job } from 'bullmq';

import type { CircuitBreaker } from '../breaker.js';
import type { RejectReason } from '../core/types.js';
import { InvalidOptionError, type CircuitOpenError } from '../errors.js';
import { describeValue, invalid } from '../options.js';

/** What `withBreaker` needs of a breaker: a `CircuitBreaker` of any context. */
export type GuardingBreaker = Pick<CircuitBreaker, 'execute'>;

/** Which rejections defer the job: a predicate, or the rejection reasons that do. */
export type DeferRule = ((error: CircuitOpenError) => boolean) | readonly RejectReason[];

/** The extra delay added to a deferral: a fraction of the delay, or `(delayMs) => extraMs`. */
export type DeferralJitter = number | ((delayMs: number) => number);

/** Options of `withBreaker`. Validated once, when `withBreaker` is called. */
export interface WithBreakerOptions<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  /**
   * The breaker that guards the job: one breaker (for the queue's whole dependency), or a
   * function of the job, e.g. `(job) => factory.breakerFor('sync', { tenantId: job.data.tenantId })`.
   */
  readonly breaker: GuardingBreaker | ((job: Job<DataType, ResultType, NameType>) => GuardingBreaker);
  /**
   * The work, run through `breaker.execute`. `signal` aborts on the breaker's `timeoutMs`, when
   * BullMQ cancels the job (`worker.cancelJob`), and when the worker closes (`abortOnClose`).
   * Its errors go to BullMQ untouched: `attempts` and `backoff` apply.
   */
  readonly process: (
    job: Job<DataType, ResultType, NameType>,
    signal: AbortSignal,
    token: string | undefined,
  ) => Promise<ResultType>;
  /**
   * Which rejections defer the job; the others are thrown to BullMQ as failures of the job.
   * @defaultValue every rejection
   */
  readonly defer?: DeferRule;
  /**
   * How often one job may be deferred per attempt; met by an open breaker once more, it is not
   * deferred but fails that attempt with `TooManyDeferralsError`, and its next attempt (if
   * `attempts` allows one) may be deferred as often again: a job may be deferred up to
   * `maxDeferrals x (attemptsMade + 1)` times in all. Counted by `deferralsOf(job)` from BullMQ's
   * own counters (starts that consumed no attempt), so nothing is written to the job.
   * @defaultValue Infinity
   */
  readonly maxDeferrals?: number;
  /**
   * The longest deferral, in ms, of a job rejected because the half-open probes are taken
   * (`'half-open-full'`). That rejection's `retryAfterMs` is when the probe's lease expires
   * (`probeLeaseMs`, 30 s by default), but the probe usually answers long before: then the job
   * either runs (closed) or is deferred again for the new open period.
   * @defaultValue 1000
   */
  readonly halfOpenDelayMs?: number;
  /**
   * The shortest deferral, in ms, so a rejection whose `retryAfterMs` is about 0 does not spin.
   * @defaultValue 100
   */
  readonly minDelayMs?: number;
  /**
   * Deferred jobs come back after `max(retryAfterMs, minDelayMs)` plus a random extra of up to
   * this fraction of it, so jobs deferred together do not return in one burst; or a function
   * `(delayMs) => extraMs`. `0` for none.
   * @defaultValue 0.1
   */
  readonly jitter?: DeferralJitter;
  /**
   * Called after a job was deferred, with the rejection and the delay. Its errors are emitted as
   * the worker's `'error'` event, never thrown: the job is already deferred.
   */
  readonly onDeferred?: (
    job: Job<DataType, ResultType, NameType>,
    error: CircuitOpenError,
    delayMs: number,
  ) => void;
  /**
   * For a breaker that guards the whole queue's dependency: instead of deferring one job, pause
   * fetching for the delay with `worker.rateLimit(delayMs)` and put the job back in the wait list
   * (`Worker.RateLimitError`); no attempt is consumed. Every worker of the queue pauses only if
   * the workers have a `limiter` option (BullMQ checks the rate limit only then); without one,
   * each worker pauses when it meets the open breaker itself. Called outside a Worker, the
   * processor defers the job instead.
   * @defaultValue false
   */
  readonly rateLimitQueue?: boolean;
  /**
   * Abort `process`'s signal when the worker closes, and put a job whose work then fails back in
   * the queue (`moveToDelayed(now)`, no attempt consumed), so `worker.close()` is quick and loses
   * nothing. `false` lets BullMQ wait for the work to finish, as it does without circuitry.
   * @defaultValue true
   */
  readonly abortOnClose?: boolean;
}

/** The options after validation, with defaults filled in. */
export interface ResolvedWithBreakerOptions<DataType, ResultType, NameType extends string> {
  readonly breakerOf: (job: Job<DataType, ResultType, NameType>) => GuardingBreaker;
  readonly process: WithBreakerOptions<DataType, ResultType, NameType>['process'];
  readonly defer: (error: CircuitOpenError) => boolean;
  readonly maxDeferrals: number;
  readonly minDelayMs: number;
  readonly halfOpenDelayMs: number;
  readonly jitter: (delayMs: number) => number;
  readonly onDeferred: WithBreakerOptions<DataType, ResultType, NameType>['onDeferred'];
  readonly rateLimitQueue: boolean;
  readonly abortOnClose: boolean;
}

const KEYS: ReadonlySet<string> = new Set([
  'breaker',
  'process',
  'defer',
  'maxDeferrals',
  'minDelayMs',
  'halfOpenDelayMs',
  'jitter',
  'onDeferred',
  'rateLimitQueue',
  'abortOnClose',
]);
const REASONS: ReadonlySet<string> = new Set<RejectReason>([
  'open',
  'half-open-full',
  'forced-open',
  'store-unavailable',
  'recovering',
  'throttled',
  'base-open',
  'concurrency-limit',
  'local-open',
]);
const MAX_MS = 2_147_483_647;

function isBreaker(value: unknown): value is GuardingBreaker {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { execute?: unknown }).execute === 'function'
  );
}

function readBoolean(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(option, 'a boolean', value);
  return value;
}

function readMs(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_MS) {
    throw invalid(option, `a finite number from 0 to ${MAX_MS}`, value);
  }
  return value;
}

function resolveDefer(value: unknown): (error: CircuitOpenError) => boolean {
  if (value === undefined) return () => true;
  if (typeof value === 'function') return value as (error: CircuitOpenError) => boolean;
  const expected =
    "a function `(error) => boolean` or an array of 'open', 'half-open-full', 'forced-open', 'store-unavailable', 'recovering', 'throttled', 'base-open', 'concurrency-limit', 'local-open'";
  if (!Array.isArray(value)) throw invalid('defer', expected, value);
  for (const reason of value as unknown[]) {
    if (typeof reason !== 'string' || !REASONS.has(reason)) throw invalid('defer', expected, value);
  }
  const reasons = new Set(value as RejectReason[]);
  return (error) => reasons.has(error.reason);
}

function resolveJitter(value: unknown): (delayMs: number) => number {
  if (value === undefined) return (delayMs) => Math.random() * 0.1 * delayMs;
  if (typeof value === 'function') {
    const extra = value as (delayMs: number) => number;
    // A bad answer from the user's function must not wedge the job: no extra delay then.
    return (delayMs) => {
      const ms = extra(delayMs);
      return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0;
    };
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 10) {
    throw invalid('jitter', 'a finite number from 0 to 10 (a fraction of the delay) or a function', value);
  }
  const ratio = value;
  return (delayMs) => Math.random() * ratio * delayMs;
}

/** Validates `withBreaker`'s options once; throws `InvalidOptionError` naming the option. */
export function resolveWithBreakerOptions<DataType, ResultType, NameType extends string>(
  options: WithBreakerOptions<DataType, ResultType, NameType>,
): ResolvedWithBreakerOptions<DataType, ResultType, NameType> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(
      'withBreaker options',
      `Expected withBreaker options to be an object, got ${describeValue(options)}`,
    );
  }
  const o = options as unknown as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KEYS.has(key)) throw new InvalidOptionError(key, `Unknown option \`${key}\` in withBreaker options`);
  }
  const breaker = o.breaker;
  let breakerOf: (job: Job<DataType, ResultType, NameType>) => GuardingBreaker;
  if (typeof breaker === 'function') {
    breakerOf = breaker as typeof breakerOf;
  } else if (isBreaker(breaker)) {
    breakerOf = () => breaker;
  } else {
    throw invalid('breaker', 'a CircuitBreaker or a function `(job) => CircuitBreaker`', breaker);
  }
  if (typeof o.process !== 'function')
    throw invalid('process', 'a function `(job, signal) => Promise`', o.process);
  const maxDeferrals = o.maxDeferrals ?? Infinity;
  if (
    typeof maxDeferrals !== 'number' ||
    maxDeferrals < 0 ||
    !(Number.isInteger(maxDeferrals) || maxDeferrals === Infinity)
  ) {
    throw invalid('maxDeferrals', 'an integer >= 0 or Infinity', maxDeferrals);
  }
  const minDelayMs = readMs('minDelayMs', o.minDelayMs, 100);
  const halfOpenDelayMs = readMs('halfOpenDelayMs', o.halfOpenDelayMs, 1_000);
  if (o.onDeferred !== undefined && typeof o.onDeferred !== 'function') {
    throw invalid('onDeferred', 'a function `(job, error, delayMs) => void`', o.onDeferred);
  }
  return Object.freeze({
    breakerOf,
    process: options.process,
    defer: resolveDefer(o.defer),
    maxDeferrals,
    minDelayMs,
    halfOpenDelayMs,
    jitter: resolveJitter(o.jitter),
    onDeferred: options.onDeferred,
    rateLimitQueue: readBoolean('rateLimitQueue', o.rateLimitQueue, false),
    abortOnClose: readBoolean('abortOnClose', o.abortOnClose, true),
  });
}
