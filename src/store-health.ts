import { StoreError } from './errors.js';
import type { StoreOperationStats } from './metrics.js';
import { observeStoreCall, storeOperationStats } from './metrics.js';
import type { Logger } from './options.js';
import type { Store, StoreTiming } from './store.js';

/** The bounds a store gets when it does not declare its own `timing`. */
export const DEFAULT_TIMING: StoreTiming = Object.freeze({
  connectTimeoutMs: 5_000,
  minCallTimeoutMs: 200,
  maxCallTimeoutMs: 2_000,
});

/** Something that holds outcomes the store has not confirmed, to be written when it answers again. */
export interface KeptOutcomesOwner {
  resendKept(): Promise<void>;
}

/** Errors of store calls that timed out: the call may still complete. */
const timeouts = new WeakSet<object>();

export function isStoreTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && timeouts.has(error);
}

/**
 * What this process knows of one store's health, shared by every breaker that uses the store.
 *
 * - **First contact.** Until the store has answered once, a call includes connecting (TCP, TLS,
 *   credentials), so it is bounded by `connectTimeoutMs`, not by the per-call timeout. A store that
 *   was never reached is not a failed one.
 * - **A slow store is not a dead one.** The per-call timeout follows the latency this process
 *   observes (a smoothed round trip plus four deviations, doubled), between the store's floor and
 *   ceiling, unless the user fixed `storeTimeoutMs`. A reply that lands after its timeout still
 *   counts as a latency sample and still reaches the breaker that asked (see `call`).
 * - **An outage costs one timeout.** After a failure the store is left alone for a while (growing
 *   to about a second), then one call at a time tries it again.
 * - **Kept outcomes leave as soon as the store answers.** Breakers holding outcomes the store has
 *   not confirmed register here; the first successful call, whichever breaker makes it, has every
 *   one of them write what it kept.
 */
export class StoreHealth {
  readonly timing: StoreTiming;
  /** The store has answered at least once (in time or late). */
  reached = false;
  failures = 0;
  downUntil = 0;
  #trialInFlight = false;
  // Smoothed latency and its mean deviation (RFC 6298 style), in ms; 0 samples: none yet.
  #srtt = 0;
  #rttvar = 0;
  #samples = 0;
  readonly #owners = new Set<KeptOutcomesOwner>();
  #resendScheduled = false;
  lastLogAt = -Infinity;
  suppressed = 0;

  constructor(timing: StoreTiming = DEFAULT_TIMING) {
    this.timing = timing;
  }

  static of(store: Store): StoreHealth {
    let health = registry.get(store);
    if (health === undefined) {
      health = new StoreHealth(readTiming(store));
      registry.set(store, health);
    }
    return health;
  }

  /**
   * How long the next call may take: the first-contact bound until the store has answered once,
   * then `fixedMs` when the user set `storeTimeoutMs`, else the adaptive timeout.
   */
  timeoutMs(fixedMs: number | null, connectTimeoutMs: number | null): number {
    if (!this.reached) return connectTimeoutMs ?? this.timing.connectTimeoutMs;
    if (fixedMs !== null) return fixedMs;
    const { minCallTimeoutMs, maxCallTimeoutMs } = this.timing;
    if (this.#samples === 0) return maxCallTimeoutMs;
    const estimate = 2 * (this.#srtt + 4 * this.#rttvar);
    return Math.ceil(Math.min(maxCallTimeoutMs, Math.max(minCallTimeoutMs, estimate)));
  }

  /** The adaptive timeout's current inputs, for health reports and tests. */
  get latency(): { readonly smoothedMs: number; readonly deviationMs: number; readonly samples: number } {
    return { smoothedMs: this.#srtt, deviationMs: this.#rttvar, samples: this.#samples };
  }

  /** Whether a call may go to the store now; while it fails, one trial call at a time may. */
  usable(now: number): boolean {
    if (this.failures === 0) return true;
    if (now < this.downUntil || this.#trialInFlight) return false;
    this.#trialInFlight = true;
    return true;
  }

  /** A latency sample from a reply, in time or late. */
  sample(latencyMs: number): void {
    this.reached = true;
    if (this.#samples === 0) {
      this.#srtt = latencyMs;
      this.#rttvar = latencyMs / 2;
    } else {
      this.#rttvar += (Math.abs(this.#srtt - latencyMs) - this.#rttvar) / 4;
      this.#srtt += (latencyMs - this.#srtt) / 8;
    }
    this.#samples += 1;
  }

  /** The store answered a call in time. Returns true when that ends an outage. */
  succeeded(): boolean {
    this.reached = true;
    const recovered = this.failures > 0;
    this.failures = 0;
    this.downUntil = 0;
    this.#trialInFlight = false;
    if (this.#owners.size > 0) this.#scheduleResend();
    return recovered;
  }

  failed(now: number): void {
    this.failures += 1;
    this.#trialInFlight = false;
    this.downUntil = now + Math.min(1_000, 50 * 2 ** Math.min(this.failures - 1, 5));
  }

  /** `owner` holds outcomes for the store: it is told to write them when the store answers again. */
  keep(owner: KeptOutcomesOwner): void {
    this.#owners.add(owner);
    if (this.failures === 0 && this.reached) this.#scheduleResend();
  }

  release(owner: KeptOutcomesOwner): void {
    this.#owners.delete(owner);
  }

  // Not inside the call that noticed the recovery: its caller should not wait for other breakers.
  #scheduleResend(): void {
    if (this.#resendScheduled) return;
    this.#resendScheduled = true;
    setImmediate(() => {
      this.#resendScheduled = false;
      if (this.failures > 0) return;
      const owners = [...this.#owners];
      this.#owners.clear();
      for (const owner of owners) void owner.resendKept();
    }).unref();
  }

  /** Rate-limits outage logging: an outage is one story, not one line per call. */
  shouldLog(now: number): boolean {
    if (now - this.lastLogAt >= 5_000) {
      this.lastLogAt = now;
      return true;
    }
    this.suppressed += 1;
    return false;
  }

  /**
   * Races `promise` against `timeoutMs`. A reply in time resolves (and is a latency sample); a
   * failure rejects with a `StoreError`; past the timeout it rejects with a `StoreError` that
   * `isStoreTimeout` recognises, and what the store answers later goes to `onLate` (a value) or
   * `onLateError` (an error), so a slow store still informs the breaker that asked it.
   */
  call<T>(
    promise: PromiseLike<T>,
    timeoutMs: number,
    operation: string,
    onLate?: (value: T) => void,
    onLateError?: (error: unknown) => void,
  ): Promise<T> {
    const started = performance.now();
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      const stats = this.#operationStats(operation);
      const timer = setTimeout(() => {
        timedOut = true;
        stats.errors += 1;
        const error = new StoreError(`Store ${operation} did not answer within ${timeoutMs} ms`);
        timeouts.add(error);
        reject(error);
      }, timeoutMs);
      promise.then(
        (value) => {
          const ms = performance.now() - started;
          this.sample(ms);
          observeStoreCall(stats, ms);
          if (this.onCall.length > 0) for (const hook of this.onCall) hook(operation, ms / 1_000);
          if (!timedOut) {
            clearTimeout(timer);
            resolve(value);
          } else {
            onLate?.(value);
          }
        },
        (error: unknown) => {
          if (!timedOut) {
            clearTimeout(timer);
            stats.errors += 1;
            reject(
              error instanceof StoreError
                ? error
                : new StoreError(`Store ${operation} failed`, { cause: error }),
            );
          } else {
            onLateError?.(error);
          }
        },
      );
    });
  }

  /** Calls to the store by operation (in time, late or failed), for metrics. */
  readonly operations = new Map<string, StoreOperationStats>();
  /** Exporters that record each answered call (`circuitry/opentelemetry`): operation, seconds. */
  readonly onCall: Array<(operation: string, seconds: number) => void> = [];

  #operationStats(operation: string): StoreOperationStats {
    let stats = this.operations.get(operation);
    if (stats === undefined) this.operations.set(operation, (stats = storeOperationStats()));
    return stats;
  }

  /** Logs a store failure, rate-limited. */
  logFailure(logger: Logger | null, now: number, fields: Record<string, unknown>): void {
    if (logger === null || !this.shouldLog(now)) return;
    logger.warn(
      { ...fields, suppressed: this.suppressed },
      'circuit breaker store failed; using the store-failure policy',
    );
    this.suppressed = 0;
  }
}

const registry = new WeakMap<Store, StoreHealth>();

function readTiming(store: Store): StoreTiming {
  const t = store.timing;
  if (t === undefined) return DEFAULT_TIMING;
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 1;
  if (!ok(t.connectTimeoutMs) || !ok(t.minCallTimeoutMs) || !ok(t.maxCallTimeoutMs)) return DEFAULT_TIMING;
  return t;
}
