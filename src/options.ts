import type { Clock } from './core/clock.js';
import { systemClock } from './core/clock.js';
import { describeValue } from './core/describe.js';
import { consecutiveFailures, failuresInWindow, policyWindowMs } from './core/policy.js';
import type { BreakerPolicy, CircuitState, ThrottlePolicy, TripPolicy } from './core/types.js';
import { windowShape } from './core/window.js';
import { InvalidOptionError } from './errors.js';
import type { Store } from './store.js';
import { MemoryStore, ownClock } from './stores/memory.js';

/** A pino-compatible logger: `logger.warn({ ...fields }, 'message')`. Only `warn` and `error` are required. */
export interface Logger {
  /** Detail; circuitry logs nothing at this level. */
  debug?(fields: object, message?: string): void;
  /** State changes this process made. */
  info?(fields: object, message?: string): void;
  /**
   * Store failures (rate-limited) and recoveries, state changes made locally while the store is
   * unreachable, a subscription to pushes that failed, corrupt records reset, outcomes `close()`
   * could not write.
   */
  warn(fields: object, message?: string): void;
  /** A function of yours (`isFailure`, `jitter`, a custom trip predicate) threw. */
  error(fields: object, message?: string): void;
}

/**
 * Says what an error means for the dependency's health: `true` a failure, `false` a success
 * (the dependency answered; the answer was bad news), `'ignore'` neither.
 */
export type FailureClassifier = (error: unknown) => boolean | 'ignore';

/** What the breaker does while the store is unreachable. */
export type StoreFailurePolicy = 'local' | 'allow' | 'reject';

/** Growth of the open period on consecutive re-opens (`BreakerOptions.backoff`). */
export interface BackoffOptions {
  /** Each consecutive re-open multiplies the open period by this. @defaultValue 2 */
  readonly multiplier?: number;
  /** The open period never grows past this. @defaultValue `max(openMs, 300_000)` */
  readonly maxOpenMs?: number;
}

/** Options of one breaker. Every one is optional; the defaults are safe for production. */
export interface BreakerOptions<Context = unknown> {
  /** Where the state lives. @defaultValue a `MemoryStore` (shared by a factory's breakers) */
  readonly store?: Store;
  /** When a closed breaker opens. @defaultValue `consecutiveFailures(5)` */
  readonly trip?: TripPolicy;
  /** How long the breaker stays open before it lets a probe through. @defaultValue 30_000 */
  readonly openMs?: number;
  /** Growth of the open period on consecutive re-opens, or `false` for none. @defaultValue `{ multiplier: 2, maxOpenMs: max(openMs, 300_000) }` */
  readonly backoff?: BackoffOptions | false;
  /**
   * Spreads the end of open periods so breakers opened by one outage do not probe in step:
   * a ratio (the period grows by a random fraction of itself up to this), or a function that
   * returns extra milliseconds. @defaultValue 0.1
   */
  readonly jitter?: number | (() => number);
  /** How many probe calls may run at once in half-open, across every process. @defaultValue 1 */
  readonly halfOpenMaxCalls?: number;
  /** Probe successes needed to close a half-open breaker. @defaultValue 1 */
  readonly successThreshold?: number;
  /**
   * How long a probe may run before its slot is given to another caller (a process that died
   * while probing holds the slot this long); with `timeoutMs` given, at least `timeoutMs + 1_000`.
   * @defaultValue `timeoutMs + 1_000` with `timeoutMs`, else `30_000`
   */
  readonly probeLeaseMs?: number;
  /** A successful call slower than this counts as a failure. @defaultValue off */
  readonly slowCallMs?: number;
  /** Abort the call's signal and count a failure after this long. @defaultValue off */
  readonly timeoutMs?: number;
  /** Which errors count as failures. @defaultValue every error but `ExpectedError` and the caller's own abort */
  readonly isFailure?: FailureClassifier;
  /** Called once per state change, by the process that made it. */
  readonly onStateChange?: (
    name: string,
    context: Context | undefined,
    from: CircuitState,
    to: CircuitState,
    /** Whether the change is this process's alone (`local: true`: below a `quorum`). */
    info: { readonly local: boolean },
  ) => void;
  /** @defaultValue no logging */
  readonly logger?: Logger;
  /** Where the breaker (and the default store) reads time. @defaultValue the system clock */
  readonly clock?: Clock;
  /**
   * A closed breaker may admit calls from its local view of the state for this long without
   * asking the store. 0 asks the store on every call. @defaultValue 0
   */
  readonly maxStalenessMs?: number;
  /**
   * Outcomes in closed state are buffered and written as one batch this often (sooner when
   * they could trip the policy). 0 writes every outcome as it happens. @defaultValue 0
   */
  readonly flushIntervalMs?: number;
  /**
   * A store call that takes longer than this counts as a store failure (its reply, if it comes
   * later, still updates the breaker). @defaultValue adaptive: twice the smoothed latency plus four
   * deviations this process observes, within the store's floor and ceiling (`RedisStore`
   * 200–2,000 ms, `DynamoDBStore` 1,000–5,000 ms, other stores 200–2,000 ms)
   */
  readonly storeTimeoutMs?: number;
  /**
   * Bound of store calls made before the store ever answered this process: they include
   * connecting (TCP, TLS, credentials), so a cold start is not mistaken for an outage.
   * @defaultValue the store's (`RedisStore` 5,000 ms, `DynamoDBStore` 10,000 ms, other stores 5,000 ms)
   */
  readonly connectTimeoutMs?: number;
  /**
   * While the store is unreachable: `'local'` keeps breaking with an in-process breaker that
   * starts from the last state seen, `'allow'` admits every call, `'reject'` rejects every call
   * with reason `'store-unavailable'`. @defaultValue 'local'
   */
  readonly onStoreFailure?: StoreFailurePolicy;
  /**
   * Recovery without a herd: after the breaker closes (probes succeeded, a reset, a forced-open
   * cleared) it admits a rising share of calls over `rampMs` (0 % at the close, all of them at
   * the end), anchored to the close in the store's time so every process admits the same share;
   * the rest are rejected with reason `'recovering'` and a `retryAfterMs` spread over what is left
   * of the ramp. Calls rejected while it is open get a `retryAfterMs` spread over the ramp after
   * the open period, so deferred jobs come back at the pace the ramp admits them. `false` (or
   * `rampMs: 0`): no ramp. @defaultValue no ramp
   */
  readonly recovery?: RecoveryOptions | false;
  /**
   * At most this many calls of the breaker in flight at once, across every process sharing its
   * store (a bulkhead): each admitted call holds a slot, taken in the same store round trip as its
   * admission and given back when its outcome is written; a call that finds every slot taken is
   * rejected at once with reason `'concurrency-limit'` (or waits up to `queueMs`). A slot whose
   * call never reports (its process crashed) is freed after `concurrencyLeaseMs`. Every call then
   * asks the store: `maxStalenessMs` does not apply. The store must enforce it
   * (`Store.limitsConcurrency`). An integer from 1 to 1,000. @defaultValue no limit
   */
  readonly maxConcurrent?: number;
  /**
   * How long a call holds its concurrency slot if its outcome never arrives (a crashed process),
   * before the slot goes to another caller; with `timeoutMs` given, at least `timeoutMs + 1_000`.
   * @defaultValue `max(30_000, timeoutMs + 1_000)`
   */
  readonly concurrencyLeaseMs?: number;
  /**
   * A call that finds every concurrency slot taken waits up to this long for one before it is
   * rejected. A breaker's queued calls in one process take their turns in order: the first asks the
   * store again with a short, growing pause (10 to 100 ms; at once when this process gives a slot
   * back), the others wait behind it. 0: rejected at once. @defaultValue 0
   */
  readonly queueMs?: number;
  /**
   * Escalation to the provider, for breakers a `BreakerFactory` makes (per base name through
   * `byBaseName`): when at least `minBreakers` breakers of one base name are held by a process
   * and more than `maxOpenFraction` of them are open, the base name opens, fleet-wide: every
   * breaker of it, a tenant never seen before included, rejects with reason `'base-open'` until
   * one probe for the whole base name succeeds; then each tenant resumes from its own state.
   * `false`: off. A breaker made with `new` cannot escalate (it has no base name to share).
   * @defaultValue off
   */
  readonly escalate?: EscalateOptions | false;
  /**
   * One bad process must not open the breaker for everyone: the shared open needs failures from
   * at least `max(1, min(minReporters, ceil(minFraction × active reporters)))` distinct reporters
   * (a reporter is a factory, or a breaker made with `new`; active: it called in the last window)
   * within the window. Below that, the process whose failures trip the policy opens on its own:
   * its calls are rejected with reason `'local-open'`, it emits a state change marked `local`,
   * and nothing is shared. Needs a store with `heartbeat` (every store here). @defaultValue off
   */
  readonly quorum?: QuorumOptions | false;
}

/** See `BreakerOptions.quorum`. */
export interface QuorumOptions {
  /** At most this many distinct reporters are needed. @defaultValue 2 */
  readonly minReporters?: number;
  /** ...or this share of the active reporters, if fewer. @defaultValue 0.5 */
  readonly minFraction?: number;
}

/** See `BreakerOptions.escalate`. */
export interface EscalateOptions {
  /** The base name opens when more than this share of its breakers are open. @defaultValue 0.5 */
  readonly maxOpenFraction?: number;
  /** ...and at least this many breakers of it are held. @defaultValue 10 */
  readonly minBreakers?: number;
}

/** See `BreakerOptions.recovery`. */
export interface RecoveryOptions {
  /** How long after a close the share of admitted calls grows from 0 to all (0: no ramp). */
  readonly rampMs?: number;
}

/** The options after validation and defaults: frozen, computed once per breaker or base name. */
export interface ResolvedOptions<Context = unknown> {
  readonly store: Store;
  readonly policy: BreakerPolicy;
  readonly jitterFn: (() => number) | null;
  readonly slowCallMs: number;
  readonly timeoutMs: number;
  readonly isFailure: FailureClassifier | null;
  readonly onStateChange: NonNullable<BreakerOptions<Context>['onStateChange']> | null;
  readonly logger: Logger | null;
  readonly clock: Clock;
  readonly maxStalenessMs: number;
  readonly flushIntervalMs: number;
  /** null: adaptive (see `StoreHealth`). */
  readonly storeTimeoutMs: number | null;
  /** null: the store's own bound. */
  readonly connectTimeoutMs: number | null;
  readonly onStoreFailure: StoreFailurePolicy;
  /** The recovery ramp after a close, in ms (0: none). */
  readonly rampMs: number;
  /** The adaptive throttle (`trip: adaptiveThrottle()`), or null; `policy.trip` then never trips. */
  readonly throttle: ThrottlePolicy | null;
  /** Escalation to the provider (see `BreakerOptions.escalate`), or null. */
  readonly escalate: Readonly<Required<EscalateOptions>> | null;
  /** The quorum for a shared open (see `BreakerOptions.quorum`), or null. */
  readonly quorum: Readonly<Required<QuorumOptions>> | null;
  /** How long a call waits for a concurrency slot before it is rejected, in ms (0: not at all). */
  readonly queueMs: number;
}

/** The recovery ramp's default length (see `BreakerOptions.recovery`). */
export const DEFAULT_RAMP_MS = 0;

const BREAKER_OPTION_KEYS: ReadonlySet<string> = new Set([
  'store',
  'trip',
  'openMs',
  'backoff',
  'jitter',
  'halfOpenMaxCalls',
  'successThreshold',
  'probeLeaseMs',
  'slowCallMs',
  'timeoutMs',
  'isFailure',
  'onStateChange',
  'logger',
  'clock',
  'maxStalenessMs',
  'flushIntervalMs',
  'storeTimeoutMs',
  'connectTimeoutMs',
  'onStoreFailure',
  'recovery',
  'escalate',
  'quorum',
  'maxConcurrent',
  'concurrencyLeaseMs',
  'queueMs',
]);

export { describeValue };

export function invalid(option: string, expected: string, value: unknown): InvalidOptionError {
  return new InvalidOptionError(
    option,
    `Expected \`${option}\` to be ${expected}, got ${describeValue(value)}`,
  );
}

interface NumberRule {
  readonly integer?: boolean;
  /** Smallest allowed value (inclusive). */
  readonly min: number;
  /** `min` itself is not allowed (a ratio: > 0). */
  readonly exclusiveMin?: boolean;
  readonly max?: number;
}

/** `value`, checked against `rule`; `fallback` when undefined, or an error when it is null (required). */
function readNumber(option: string, value: unknown, fallback: number | null, rule: NumberRule): number {
  if (value === undefined && fallback !== null) return fallback;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (!rule.integer || Number.isInteger(value)) &&
    (rule.exclusiveMin ? value > rule.min : value >= rule.min) &&
    (rule.max === undefined || value <= rule.max);
  if (ok) return value;
  let expected: string;
  if (rule.exclusiveMin) {
    expected = `a number > ${rule.min}${rule.max === undefined ? '' : ` and <= ${rule.max}`}`;
  } else {
    const range = rule.max === undefined ? ` >= ${rule.min}` : ` from ${rule.min} to ${rule.max}`;
    expected = `${rule.integer ? 'an integer' : 'a finite number'}${range}`;
  }
  throw invalid(option, expected, value);
}

const MAX_MS = 2_147_483_647; // setTimeout's limit, and far beyond any sane period
/** A failure threshold no window reaches: what a store is given for a throttle's window. */
const NEVER = 2_147_483_647;
/** How much longer than `timeoutMs` a probe lease (or a concurrency slot) lasts: time to write the outcome. */
const PROBE_MARGIN_MS = 1_000;
/**
 * The most concurrency slots a breaker may have: every store keeps them in the breaker's record
 * and reads them on each acquire (and a DynamoDB item is at most 400 KB).
 */
const MAX_CONCURRENT = 1_000;

function validateTrip(trip: unknown, option = 'trip'): TripPolicy {
  if (typeof trip !== 'object' || trip === null || typeof (trip as { kind?: unknown }).kind !== 'string') {
    throw invalid(
      option,
      'a trip policy such as `consecutiveFailures(5)`, `failuresInWindow(n, ms)`, `failureRate(r, { minimumCalls, windowMs })`, `custom(fn)` or `adaptiveThrottle()`',
      trip,
    );
  }
  const t = trip as Record<string, unknown>;
  switch (t.kind) {
    case 'consecutive-failures':
      readNumber(`${option}.threshold`, t.threshold, null, { integer: true, min: 1 });
      return { kind: 'consecutive-failures', threshold: t.threshold as number };
    case 'failures-in-window':
      readNumber(`${option}.threshold`, t.threshold, null, { integer: true, min: 1 });
      readNumber(`${option}.windowMs`, t.windowMs, null, { integer: true, min: 1, max: MAX_MS });
      return { kind: 'failures-in-window', threshold: t.threshold as number, windowMs: t.windowMs as number };
    case 'failure-rate':
      readNumber(`${option}.ratio`, t.ratio, null, { min: 0, exclusiveMin: true, max: 1 });
      readNumber(`${option}.minimumCalls`, t.minimumCalls, null, { integer: true, min: 1 });
      readNumber(`${option}.windowMs`, t.windowMs, null, { integer: true, min: 1, max: MAX_MS });
      return {
        kind: 'failure-rate',
        ratio: t.ratio as number,
        minimumCalls: t.minimumCalls as number,
        windowMs: t.windowMs as number,
      };
    case 'custom':
      if (typeof t.predicate !== 'function') throw invalid(`${option}.predicate`, 'a function', t.predicate);
      readNumber(`${option}.windowMs`, t.windowMs, null, { integer: true, min: 1, max: MAX_MS });
      return {
        kind: 'custom',
        windowMs: t.windowMs as number,
        predicate: t.predicate as (counts: never) => boolean,
      } as TripPolicy;
    case 'adaptive-throttle':
      readNumber(`${option}.k`, t.k, null, { min: 1 });
      readNumber(`${option}.windowMs`, t.windowMs, null, { integer: true, min: 10, max: MAX_MS });
      readNumber(`${option}.padding`, t.padding, null, { min: 0 });
      readNumber(`${option}.maxRejectionRate`, t.maxRejectionRate, null, { min: 0, max: 1 });
      readNumber(`${option}.minimumCalls`, t.minimumCalls, null, { integer: true, min: 0 });
      return {
        kind: 'adaptive-throttle',
        k: t.k as number,
        windowMs: t.windowMs as number,
        padding: t.padding as number,
        maxRejectionRate: t.maxRejectionRate as number,
        minimumCalls: t.minimumCalls as number,
      };
    default:
      throw invalid(
        `${option}.kind`,
        "one of 'consecutive-failures', 'failures-in-window', 'failure-rate', 'custom', 'adaptive-throttle'",
        t.kind,
      );
  }
}

function readFunction<T>(option: string, value: unknown): T | null {
  if (value === undefined) return null;
  if (typeof value !== 'function') throw invalid(option, 'a function', value);
  return value as T;
}

/** Checks that `options` is a plain object with only known keys (`extra` lists the caller's own). */
export function checkKeys(options: unknown, where: string, extra: ReadonlySet<string> = new Set()): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(where, `Expected ${where} to be an object, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!BREAKER_OPTION_KEYS.has(key) && !extra.has(key)) {
      throw new InvalidOptionError(key, `Unknown option \`${key}\` in ${where}`);
    }
  }
}

/**
 * How errors name an option of the options at `where`: plainly at the top level, with the path
 * otherwise (`byBaseName["a"].openMs`), so the message says which of several objects is wrong.
 */
function optionPrefix(where: string): string {
  return where === 'breaker options' || where === 'factory options' ? '' : `${where}.`;
}

/**
 * Validates `options` once and fills in the defaults. Throws `InvalidOptionError` naming the
 * option, what was expected and what was given.
 */
export function resolveOptions<Context>(
  options: BreakerOptions<Context>,
  where = 'breaker options',
  extraKeys: ReadonlySet<string> = new Set(),
): ResolvedOptions<Context> {
  checkKeys(options, where, extraKeys);
  const at = optionPrefix(where);
  const o = options as Record<string, unknown>;
  const clock = o.clock ?? systemClock;
  if (typeof (clock as { now?: unknown }).now !== 'function') {
    throw invalid(`${at}clock`, 'an object with a `now()` method', clock);
  }
  const store = o.store ?? new MemoryStore(o.clock === undefined ? {} : { clock: clock as Clock });
  // A MemoryStore keeps its own time: given a clock here but none there, it would silently run
  // on the system clock while the breaker runs on this one (a test's ManualClock would half-open
  // nothing).
  if (o.clock !== undefined && store instanceof MemoryStore && !store[ownClock]) {
    throw new InvalidOptionError(
      `${at}clock`,
      `\`${at}clock\` is set but \`store\` is a MemoryStore made without one, which reads the system clock: give it the same clock (\`new MemoryStore({ clock })\`), or leave \`store\` out`,
    );
  }
  for (const method of ['acquire', 'record', 'inspect', 'force', 'list'] as const) {
    if (typeof (store as Record<string, unknown>)[method] !== 'function') {
      throw invalid(`${at}store`, `a Store (an object with an \`${method}()\` method)`, store);
    }
  }

  const trip = o.trip === undefined ? consecutiveFailures(5) : validateTrip(o.trip, `${at}trip`);
  const openMs = readNumber(`${at}openMs`, o.openMs, 30_000, { integer: true, min: 1, max: MAX_MS });
  let backoffMultiplier = 2;
  let maxOpenMs = Math.max(openMs, 300_000);
  if (o.backoff === false) {
    backoffMultiplier = 1;
    maxOpenMs = openMs;
  } else if (o.backoff !== undefined) {
    if (typeof o.backoff !== 'object' || o.backoff === null) {
      throw invalid(`${at}backoff`, '`false` or `{ multiplier?, maxOpenMs? }`', o.backoff);
    }
    const b = o.backoff as Record<string, unknown>;
    for (const key of Object.keys(b)) {
      if (key !== 'multiplier' && key !== 'maxOpenMs') {
        throw new InvalidOptionError(`${at}backoff.${key}`, `Unknown option \`${at}backoff.${key}\``);
      }
    }
    backoffMultiplier = readNumber(`${at}backoff.multiplier`, b.multiplier, 2, { min: 1, max: 1_000 });
    maxOpenMs = readNumber(`${at}backoff.maxOpenMs`, b.maxOpenMs, maxOpenMs, {
      integer: true,
      min: openMs,
      max: MAX_MS,
    });
  }

  // A ratio is applied by the store when it opens; a function's extra ms is rolled by the breaker.
  const jitterFn = typeof o.jitter === 'function' ? (o.jitter as () => number) : null;
  const jitterRatio = jitterFn !== null ? 0 : readNumber(`${at}jitter`, o.jitter, 0.1, { min: 0, max: 1 });

  const halfOpenMaxCalls = readNumber(`${at}halfOpenMaxCalls`, o.halfOpenMaxCalls, 1, {
    integer: true,
    min: 1,
    max: 10_000,
  });
  const successThreshold = readNumber(`${at}successThreshold`, o.successThreshold, 1, {
    integer: true,
    min: 1,
    max: 10_000,
  });
  const timeoutMs = readNumber(`${at}timeoutMs`, o.timeoutMs, 0, { integer: true, min: 1, max: MAX_MS });
  // With a timeout, a probe's call ends by then: its lease ends a second later, so a process that
  // died holding it keeps the breaker half-open-full for little more than one call's time.
  const probeLeaseMs = readNumber(
    `${at}probeLeaseMs`,
    o.probeLeaseMs,
    timeoutMs > 0 ? timeoutMs + PROBE_MARGIN_MS : 30_000,
    { integer: true, min: 1, max: MAX_MS },
  );
  // A lease that ends before its probe can finish gives the slot to a second probe mid-call.
  if (
    o.probeLeaseMs !== undefined &&
    o.timeoutMs !== undefined &&
    probeLeaseMs < timeoutMs + PROBE_MARGIN_MS
  ) {
    throw invalid(
      `${at}probeLeaseMs`,
      `at least \`${at}timeoutMs\` + ${PROBE_MARGIN_MS} (${timeoutMs + PROBE_MARGIN_MS}), so a probe's lease outlives its call`,
      probeLeaseMs,
    );
  }
  const maxConcurrent =
    o.maxConcurrent === undefined
      ? 0
      : readNumber(`${at}maxConcurrent`, o.maxConcurrent, null, {
          integer: true,
          min: 1,
          max: MAX_CONCURRENT,
        });
  const concurrencyLeaseMs = readNumber(
    `${at}concurrencyLeaseMs`,
    o.concurrencyLeaseMs,
    Math.max(30_000, timeoutMs + PROBE_MARGIN_MS),
    { integer: true, min: 1, max: MAX_MS },
  );
  // A slot that expires before its call can finish lets one more call in than the limit.
  if (
    o.concurrencyLeaseMs !== undefined &&
    o.timeoutMs !== undefined &&
    concurrencyLeaseMs < timeoutMs + PROBE_MARGIN_MS
  ) {
    throw invalid(
      `${at}concurrencyLeaseMs`,
      `at least \`${at}timeoutMs\` + ${PROBE_MARGIN_MS} (${timeoutMs + PROBE_MARGIN_MS}), so a call's slot outlives the call`,
      concurrencyLeaseMs,
    );
  }
  const queueMs = readNumber(`${at}queueMs`, o.queueMs, 0, { integer: true, min: 0, max: MAX_MS });
  if (maxConcurrent > 0 && (store as Partial<Store>).limitsConcurrency !== true) {
    throw new InvalidOptionError(
      `${at}maxConcurrent`,
      `\`${at}maxConcurrent\` needs a store that limits concurrency across processes (\`limitsConcurrency: true\`); ${storeName(store)} does not say it does`,
    );
  }
  let quorum: Readonly<Required<QuorumOptions>> | null = null;
  if (o.quorum !== undefined && o.quorum !== false) {
    if (typeof o.quorum !== 'object' || o.quorum === null) {
      throw invalid(`${at}quorum`, '`false` or `{ minReporters?, minFraction? }`', o.quorum);
    }
    for (const key of Object.keys(o.quorum)) {
      if (key !== 'minReporters' && key !== 'minFraction') {
        throw invalid(`${at}quorum`, 'only `minReporters` and `minFraction`', o.quorum);
      }
    }
    const q = o.quorum as { minReporters?: unknown; minFraction?: unknown };
    quorum = Object.freeze({
      minReporters: readNumber(`${at}quorum.minReporters`, q.minReporters, 2, {
        integer: true,
        min: 1,
        max: 32,
      }),
      minFraction: readNumber(`${at}quorum.minFraction`, q.minFraction, 0.5, { min: 0, max: 1 }),
    });
    if (typeof (store as Partial<Store>).heartbeat !== 'function') {
      throw new InvalidOptionError(
        `${at}quorum`,
        `\`${at}quorum\` needs a store that counts reporters (\`heartbeat\`); ${storeName(store)} has none`,
      );
    }
  }
  const slowCallMs = readNumber(`${at}slowCallMs`, o.slowCallMs, 0, { integer: true, min: 1, max: MAX_MS });
  const maxStalenessMs = readNumber(`${at}maxStalenessMs`, o.maxStalenessMs, 0, {
    integer: true,
    min: 0,
    max: MAX_MS,
  });
  const flushIntervalMs = readNumber(`${at}flushIntervalMs`, o.flushIntervalMs, 0, {
    integer: true,
    min: 0,
    max: MAX_MS,
  });
  const storeTimeoutMs =
    o.storeTimeoutMs === undefined
      ? null
      : readNumber(`${at}storeTimeoutMs`, o.storeTimeoutMs, 0, { integer: true, min: 1, max: MAX_MS });
  const connectTimeoutMs =
    o.connectTimeoutMs === undefined
      ? null
      : readNumber(`${at}connectTimeoutMs`, o.connectTimeoutMs, 0, { integer: true, min: 1, max: MAX_MS });
  const onStoreFailure = o.onStoreFailure ?? 'local';
  if (onStoreFailure !== 'local' && onStoreFailure !== 'allow' && onStoreFailure !== 'reject') {
    throw invalid(`${at}onStoreFailure`, "one of 'local', 'allow', 'reject'", onStoreFailure);
  }
  let rampMs = DEFAULT_RAMP_MS;
  if (o.recovery === false) {
    rampMs = 0;
  } else if (o.recovery !== undefined) {
    if (typeof o.recovery !== 'object' || o.recovery === null) {
      throw invalid(`${at}recovery`, '`false` or `{ rampMs }`', o.recovery);
    }
    for (const key of Object.keys(o.recovery)) {
      if (key !== 'rampMs') throw invalid(`${at}recovery`, 'only `rampMs`', o.recovery);
    }
    rampMs = readNumber(`${at}recovery.rampMs`, (o.recovery as { rampMs?: unknown }).rampMs, null, {
      integer: true,
      min: 0,
      max: MAX_MS,
    });
  }
  let escalate: Readonly<Required<EscalateOptions>> | null = null;
  if (o.escalate !== undefined && o.escalate !== false) {
    if (typeof o.escalate !== 'object' || o.escalate === null) {
      throw invalid(`${at}escalate`, '`false` or `{ maxOpenFraction?, minBreakers? }`', o.escalate);
    }
    for (const key of Object.keys(o.escalate)) {
      if (key !== 'maxOpenFraction' && key !== 'minBreakers') {
        throw invalid(`${at}escalate`, 'only `maxOpenFraction` and `minBreakers`', o.escalate);
      }
    }
    const e = o.escalate as { maxOpenFraction?: unknown; minBreakers?: unknown };
    escalate = Object.freeze({
      maxOpenFraction: readNumber(`${at}escalate.maxOpenFraction`, e.maxOpenFraction, 0.5, {
        min: 0,
        max: 1,
      }),
      minBreakers: readNumber(`${at}escalate.minBreakers`, e.minBreakers, 10, { integer: true, min: 1 }),
    });
  }
  let logger: Logger | null = null;
  if (o.logger !== undefined) {
    const l = o.logger as Record<string, unknown> | null;
    if (
      typeof l !== 'object' ||
      l === null ||
      typeof l.warn !== 'function' ||
      typeof l.error !== 'function'
    ) {
      throw invalid(`${at}logger`, 'a pino-compatible logger (with `warn` and `error` methods)', o.logger);
    }
    logger = l as unknown as Logger;
  }

  const windowMs = policyWindowMs(trip);
  const { bucketMs, bucketCount } = windowShape(windowMs);
  const throttle = trip.kind === 'adaptive-throttle' ? Object.freeze(trip) : null;
  const policy: BreakerPolicy = Object.freeze({
    // A throttle is evaluated in each process (see `adaptiveThrottle`); its store counts the
    // window's failures and never opens on them, so a healthy tenant still writes nothing.
    trip: Object.freeze(throttle === null ? trip : failuresInWindow(NEVER, windowMs)),
    windowMs,
    bucketMs,
    bucketCount,
    openMs,
    backoffMultiplier,
    maxOpenMs,
    jitterRatio,
    halfOpenMaxCalls,
    successThreshold,
    probeLeaseMs,
    maxConcurrent,
    concurrencyLeaseMs,
  });
  return Object.freeze({
    store: store as Store,
    policy,
    jitterFn,
    slowCallMs,
    timeoutMs,
    isFailure: readFunction<FailureClassifier>(`${at}isFailure`, o.isFailure),
    onStateChange: readFunction<NonNullable<BreakerOptions<Context>['onStateChange']>>(
      `${at}onStateChange`,
      o.onStateChange,
    ),
    logger,
    clock: clock as Clock,
    maxStalenessMs,
    flushIntervalMs,
    storeTimeoutMs,
    connectTimeoutMs,
    onStoreFailure,
    rampMs,
    throttle,
    escalate,
    quorum,
    queueMs,
  });
}

function storeName(store: unknown): string {
  const name = (store as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' && name !== 'Object' ? `the ${name}` : 'the store';
}

/** Factory options that are not breaker options; `resolveOptions` lets them through. */
export const FACTORY_ONLY_KEYS: ReadonlySet<string> = new Set(['name', 'byBaseName', 'maxBreakers']);
