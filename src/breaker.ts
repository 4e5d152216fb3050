import * as reducer from './core/reducer.js';
import { shouldTrip } from './core/policy.js';
import type {
  AcquireResult,
  BreakerRecord,
  BreakerState,
  CircuitState,
  Outcome,
  OutcomeBatch,
  Override,
  RejectReason,
  Snapshot,
  Transition,
  UpdateResult,
  WindowCounts,
} from './core/types.js';
import type { CircuitOpenError } from './errors.js';
import { CallTimeoutError, StoreError, isExpectedError, rejection } from './errors.js';
import { noListeners, own } from './listeners.js';
import type { Disposer } from './listeners.js';
import type { BreakerOptions, ResolvedOptions } from './options.js';
import { resolveOptions } from './options.js';
import type { Awaitable, StateChangeMessage, Store } from './store.js';
import { MemoryStore, inProcess } from './stores/memory.js';
import type { InProcessPath } from './stores/memory.js';

export interface ExecuteOptions<T> {
  /** Cancels the call: `fn`'s signal aborts too, and an error after it counts as neither success nor failure. */
  readonly signal?: AbortSignal;
  /** Supplies the value when the call is rejected (and, with `fallbackOnFailure`, when `fn` fails). */
  readonly fallback?: (error: unknown) => T | PromiseLike<T>;
  /** Also use `fallback` when `fn` throws. @defaultValue false */
  readonly fallbackOnFailure?: boolean;
  /** Overrides the breaker's `timeoutMs` for this call. */
  readonly timeoutMs?: number;
}

export interface StateChangeEvent<Context> {
  readonly name: string;
  readonly context: Context | undefined;
  readonly from: CircuitState;
  readonly to: CircuitState;
  readonly generation: number;
}

export interface SuccessEvent<Context> {
  readonly name: string;
  readonly context: Context | undefined;
  readonly durationMs: number;
}

export interface FailureEvent<Context> {
  readonly name: string;
  readonly context: Context | undefined;
  /** The error `fn` threw; undefined for a slow success. */
  readonly error: unknown;
  readonly durationMs: number;
  /** True when the call took `slowCallMs` or longer. */
  readonly slow: boolean;
}

export interface RejectEvent<Context> {
  readonly name: string;
  readonly context: Context | undefined;
  readonly reason: RejectReason;
  readonly retryAfterMs: number;
}

export interface StoreErrorEvent {
  readonly name: string;
  readonly operation: 'acquire' | 'record' | 'inspect' | 'force';
  readonly error: unknown;
}

/**
 * What `acquire` hands out: settle it exactly once with `success`, `failure` or `ignore`. Later
 * calls do nothing. The returned promise never rejects.
 */
export interface Permit {
  /** The generation the call was admitted under. */
  readonly generation: number;
  /** True when the call was admitted as a half-open probe. */
  readonly probe: boolean;
  success(): Promise<void>;
  /** Records a failure; `error`, if given, is classified with `isFailure` first. */
  failure(error?: unknown): Promise<void>;
  ignore(): Promise<void>;
}

/** One admitted call, as the breaker tracks it until its outcome is recorded. */
interface Admission {
  readonly generation: number;
  readonly lease: string | null;
  /** Admitted without the store (during a store outage): the outcome goes to the local breaker. */
  readonly local: boolean;
  readonly start: number;
}

interface PendingBatch {
  generation: number;
  successes: number;
  failures: number;
  trailingFailures: number;
  slow: number;
  ignored: number;
}

const NO_PROBES: OutcomeBatch['probes'] = Object.freeze([]);
const NEVER_ABORTED: AbortSignal = new AbortController().signal;
const ZERO_COUNTS: WindowCounts = Object.freeze({
  successes: 0,
  failures: 0,
  slow: 0,
  ignored: 0,
  total: 0,
  failureRate: 0,
  consecutiveFailures: 0,
});

function isPromiseLike<T>(value: Awaitable<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * The health of one store, shared by every breaker that uses it: after a failure the store is
 * left alone for a while (growing to about a second), then one call at a time tries it again.
 * So an outage costs one timeout, not one per call.
 */
class StoreHealth {
  downUntil = 0;
  failures = 0;
  trialInFlight = false;
  lastLogAt = -Infinity;
  suppressed = 0;

  /** Whether a call may go to the store now. */
  usable(now: number): boolean {
    if (this.failures === 0) return true;
    if (now < this.downUntil || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  succeeded(): boolean {
    const recovered = this.failures > 0;
    this.failures = 0;
    this.downUntil = 0;
    this.trialInFlight = false;
    return recovered;
  }

  failed(now: number): void {
    this.failures += 1;
    this.trialInFlight = false;
    this.downUntil = now + Math.min(1_000, 50 * 2 ** Math.min(this.failures - 1, 5));
  }
}

const storeHealth = new WeakMap<Store, StoreHealth>();

function healthOf(store: Store): StoreHealth {
  let health = storeHealth.get(store);
  if (health === undefined) {
    health = new StoreHealth();
    storeHealth.set(store, health);
  }
  return health;
}

/** Errors of store calls that timed out: the call may still complete. */
const timeouts = new WeakSet<object>();

function withTimeout<T>(promise: PromiseLike<T>, ms: number, operation: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new StoreError(`Store ${operation} did not answer within ${ms} ms`);
      timeouts.add(error);
      reject(error);
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(
          error instanceof StoreError ? error : new StoreError(`Store ${operation} failed`, { cause: error }),
        );
      },
    );
  });
}

/** Internal hooks the factory uses; not part of the public API. */
export const internal = Symbol('circuitry.internal');

export interface BreakerInternals {
  /** A state change made by another process (or another breaker object) reached us. */
  notify(message: StateChangeMessage): void;
  /** True while the breaker holds a permit or unflushed outcomes: the registry must keep it. */
  busy(): boolean;
}

/**
 * A circuit breaker whose state lives in a store. Create one per protected dependency (or per
 * tenant of it), usually through `BreakerFactory.breakerFor`.
 */
export class CircuitBreaker<Context = unknown> {
  readonly name: string;
  readonly baseName: string;
  readonly context: Context | undefined;

  readonly #o: ResolvedOptions<Context>;
  readonly #health: StoreHealth;
  // Shared empty lists until a listener is added (`own`): most breakers never have one.
  #stateChange = noListeners<StateChangeEvent<Context>>();
  #success = noListeners<SuccessEvent<Context>>();
  #failure = noListeners<FailureEvent<Context>>();
  #reject = noListeners<RejectEvent<Context>>();
  #storeError = noListeners<StoreErrorEvent>();

  // This process's view of the shared state.
  #state: BreakerState = 'closed';
  #override: Override | null = null;
  #generation = 0;
  #counts: WindowCounts = ZERO_COUNTS;
  /** Local time until which the breaker is known to be open (0: not known open). */
  #openUntil = 0;
  /** Local time the view was last confirmed by the store. */
  #viewAt = -Infinity;

  #inFlight = 0;
  #buffer: PendingBatch | null = null;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  #flushing: Promise<void> | null = null;

  /** The allocation-free closed path of a `MemoryStore`, when nothing needs the general path. */
  readonly #fast: InProcessPath | null;

  /** The in-process breaker used while the store is unreachable (`onStoreFailure: 'local'`). */
  #local: BreakerRecord | null = null;
  #localLeases = 0;
  /** Closed-state outcomes counted while the store was unreachable, written when it is back. */
  #unsent: PendingBatch | null = null;

  constructor(name: string, options: BreakerOptions<Context> = {}) {
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(`Expected the breaker name to be a non-empty string, got ${String(name)}`);
    }
    const resolved = (options as { [internal]?: ResolvedOptions<Context> })[internal];
    const init = (options as { [initKey]?: { baseName: string; context: Context | undefined } })[initKey];
    this.#o = resolved ?? resolveOptions(options);
    this.name = name;
    this.baseName = init?.baseName ?? name;
    this.context = init?.context;
    this.#health = healthOf(this.#o.store);
    const o = this.#o;
    this.#fast =
      o.store instanceof MemoryStore &&
      o.flushIntervalMs === 0 &&
      o.slowCallMs === 0 &&
      o.policy.trip.kind !== 'custom'
        ? o.store[inProcess]
        : null;
    if (this.#o.onStateChange !== null) {
      const callback = this.#o.onStateChange;
      this.#stateChange = own(this.#stateChange);
      this.#stateChange.add((event) => callback(event.name, event.context, event.from, event.to));
    }
  }

  /** Fires once per state change, in the process whose store operation made it. */
  onStateChange(listener: (event: StateChangeEvent<Context>) => void): Disposer {
    return (this.#stateChange = own(this.#stateChange)).add(listener);
  }

  onSuccess(listener: (event: SuccessEvent<Context>) => void): Disposer {
    return (this.#success = own(this.#success)).add(listener);
  }

  /** Fires for every outcome that counts as a failure, including slow successes. */
  onFailure(listener: (event: FailureEvent<Context>) => void): Disposer {
    return (this.#failure = own(this.#failure)).add(listener);
  }

  onReject(listener: (event: RejectEvent<Context>) => void): Disposer {
    return (this.#reject = own(this.#reject)).add(listener);
  }

  /** Fires when the store fails or times out (the breaker keeps working; see `onStoreFailure`). */
  onStoreError(listener: (event: StoreErrorEvent) => void): Disposer {
    return (this.#storeError = own(this.#storeError)).add(listener);
  }

  /**
   * Runs `fn` if the breaker admits it. Resolves with `fn`'s value, rethrows `fn`'s error
   * untouched, or rejects with `CircuitOpenError` without calling `fn`.
   */
  async execute<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T> {
    const signal = options?.signal;
    if (signal?.aborted === true) throw signal.reason;
    const timeoutMs = options?.timeoutMs ?? this.#o.timeoutMs;
    const fast = this.#fast;
    if (
      fast !== null &&
      timeoutMs <= 0 &&
      signal === undefined &&
      this.#openUntil === 0 &&
      this.#success.size === 0 &&
      this.#failure.size === 0
    ) {
      const generation = fast.admitClosed(this.name);
      if (generation !== 0) {
        // Inlined rather than a helper: one async frame less per call.
        this.#admittedClosed(generation);
        let value: T;
        try {
          value = await fn(NEVER_ABORTED);
        } catch (error) {
          this.#settleClosed(generation, this.#classify(error), error);
          if (options?.fallback !== undefined && options.fallbackOnFailure === true) {
            return options.fallback(error);
          }
          throw error;
        }
        this.#settleClosed(generation, 'success', undefined);
        return value;
      }
    }
    let admitted = this.#admit();
    if (isPromiseLike(admitted)) admitted = await admitted;
    if (!('lease' in admitted)) {
      if (options?.fallback !== undefined) return options.fallback(admitted);
      throw admitted;
    }
    this.#inFlight += 1;
    let value: T;
    try {
      value =
        timeoutMs > 0 || signal !== undefined
          ? await this.#runGuarded(fn, signal, timeoutMs)
          : await fn(NEVER_ABORTED);
    } catch (error) {
      const settled = this.#settle(admitted, this.#classify(error, signal), error);
      if (settled !== undefined) await settled;
      const fallback = options?.fallback;
      if (fallback !== undefined && options?.fallbackOnFailure === true) return fallback(error);
      throw error;
    }
    const settled = this.#settle(admitted, 'success', undefined);
    if (settled !== undefined) await settled;
    return value;
  }

  /** A call was admitted by the in-process path (a closed `MemoryStore` breaker, nothing to time). */
  #admittedClosed(generation: number): void {
    if (generation > this.#generation) {
      this.#generation = generation;
      this.#state = 'closed';
      this.#override = null;
    }
    this.#inFlight += 1;
  }

  /** Records the outcome of a call admitted by the in-process path. */
  #settleClosed(generation: number, outcome: Outcome, error: unknown): void {
    const o = this.#o;
    const failed = outcome === 'failure';
    const moved = this.#fast!.recordClosed(
      this.name,
      o.policy,
      generation,
      outcome,
      false,
      failed ? Math.random() : 0,
      failed && o.jitterFn !== null ? this.#jitterMs() : 0,
    );
    if (moved === undefined) {
      // The state moved on while the call ran: the general path fences or counts it.
      void this.#settle({ generation, lease: null, local: false, start: 0 }, outcome, error);
      return;
    }
    this.#inFlight -= 1;
    if (moved === null) return;
    this.#emitTransition(moved);
    const snapshot = o.store.inspect(this.name, o.policy) as Snapshot | null;
    if (snapshot !== null) this.#absorb(snapshot);
  }

  /**
   * The two-step form, for work that is not one async function (a queue worker's job): ask for
   * a permit, do the work, then settle the permit. Throws `CircuitOpenError` when rejected.
   */
  async acquire(): Promise<Permit> {
    let admitted = this.#admit();
    if (isPromiseLike(admitted)) admitted = await admitted;
    if (!('lease' in admitted)) throw admitted;
    this.#inFlight += 1;
    const admission = admitted;
    let settled = false;
    const settle = (outcome: Outcome, error: unknown): Promise<void> => {
      if (settled) return Promise.resolve();
      settled = true;
      return Promise.resolve(this.#settle(admission, outcome, error));
    };
    return {
      generation: admission.generation,
      probe: admission.lease !== null,
      success: () => settle('success', undefined),
      failure: (error?: unknown) => settle(error === undefined ? 'failure' : this.#classify(error), error),
      ignore: () => settle('ignored', undefined),
    };
  }

  /** The breaker's state as the store has it (or, while the store is unreachable, as this process sees it). */
  async state(): Promise<Snapshot> {
    const o = this.#o;
    try {
      const snapshot = await this.#callStore('inspect', () => o.store.inspect(this.name, o.policy));
      if (snapshot !== null) this.#absorb(snapshot);
      return snapshot ?? reducer.snapshot(reducer.emptyRecord(), o.policy, o.clock.now());
    } catch (error) {
      this.#storeFailed('inspect', error);
      return reducer.snapshot(this.#local ?? this.#seedLocal(), o.policy, o.clock.now());
    }
  }

  /**
   * Sets an operator override (`'forced-open'`, `'forced-closed'`, `'metrics-only'`) or clears
   * it (`null`). Other processes learn of it through the store's push channel, or when their
   * local view expires. Rejects if the store cannot be reached: an operator must know.
   */
  async force(override: Override | null): Promise<Snapshot> {
    if (
      override !== null &&
      override !== 'forced-open' &&
      override !== 'forced-closed' &&
      override !== 'metrics-only'
    ) {
      throw new TypeError(
        `Expected an override ('forced-open', 'forced-closed', 'metrics-only' or null), got ${String(override)}`,
      );
    }
    const o = this.#o;
    const result = await this.#callStore('force', () => o.store.force(this.name, o.policy, override));
    this.#openUntil = 0;
    this.#applyUpdate(result);
    return result.snapshot;
  }

  /**
   * Writes buffered outcomes now, and those kept during a store outage if the store answers.
   * Call before shutting down when `flushIntervalMs` > 0 or after a store outage.
   */
  async flush(): Promise<void> {
    if (this.#flushing !== null) await this.#flushing;
    const pending = this.#flushBuffer();
    if (pending !== undefined) await pending;
    if (this.#unsent !== null) {
      // Kept again, not lost, if the store is still being left alone.
      const resent = this.#resendUnsent();
      if (resent !== undefined) await resent;
    }
  }

  get [internal](): BreakerInternals {
    return {
      notify: (message) => this.#notify(message),
      busy: () =>
        this.#inFlight > 0 || this.#buffer !== null || this.#flushing !== null || this.#unsent !== null,
    };
  }

  // ---- admission ----------------------------------------------------------------------------

  #admit(): Admission | CircuitOpenError | Promise<Admission | CircuitOpenError> {
    const o = this.#o;
    let now = 0;
    if (this.#openUntil !== 0) {
      now = o.clock.now();
      if (now < this.#openUntil) return this.#rejected('open', this.#openUntil - now);
      this.#openUntil = 0;
    }
    if (o.maxStalenessMs > 0 && this.#state === 'closed' && this.#override === null) {
      if (now === 0) now = o.clock.now();
      if (now - this.#viewAt <= o.maxStalenessMs) {
        return { generation: this.#generation, lease: null, local: false, start: this.#startTime() };
      }
    }
    if (this.#local !== null || this.#health.failures > 0) {
      if (now === 0) now = o.clock.now();
      if (!this.#health.usable(now)) return this.#admitWithoutStore(now);
    }
    let result: Awaitable<AcquireResult>;
    try {
      result = o.store.acquire(this.name, o.policy);
    } catch (error) {
      return this.#acquireFailed(error);
    }
    if (isPromiseLike(result)) {
      return withTimeout(result, o.storeTimeoutMs, 'acquire').then(
        (r) => this.#acquired(r),
        (error: unknown) => this.#acquireFailed(error),
      );
    }
    return this.#acquired(result);
  }

  #acquired(result: AcquireResult): Admission | CircuitOpenError {
    if (typeof result !== 'object' || result === null || typeof result.admitted !== 'boolean') {
      return this.#acquireFailed(new StoreError('Store acquire returned a malformed reply'));
    }
    const o = this.#o;
    if (result.transition !== null) this.#emitTransition(result.transition);
    if (result.generation >= this.#generation) {
      this.#generation = result.generation;
      this.#state = result.state;
      this.#override = result.override;
      if (o.maxStalenessMs > 0) this.#viewAt = o.clock.now();
    }
    // After the view is updated: outcomes kept from before the store was ever reached take its
    // generation now.
    if (this.#local !== null || this.#health.failures > 0) this.#storeRecovered();
    if (result.admitted) {
      return { generation: result.generation, lease: result.lease, local: false, start: this.#startTime() };
    }
    const reason = result.reason ?? 'open';
    if (reason === 'open') this.#openUntil = o.clock.now() + result.retryAfterMs;
    return this.#rejected(reason, result.retryAfterMs);
  }

  #rejected(reason: RejectReason, retryAfterMs: number): CircuitOpenError {
    const error = rejection(this.name, reason, retryAfterMs);
    if (this.#reject.size > 0) {
      this.#reject.emit({ name: this.name, context: this.context, reason, retryAfterMs: error.retryAfterMs });
    }
    return error;
  }

  #startTime(): number {
    return this.#o.slowCallMs > 0 || this.#success.size > 0 || this.#failure.size > 0
      ? this.#o.clock.now()
      : 0;
  }

  // ---- running the call ---------------------------------------------------------------------

  async #runGuarded<T>(
    fn: (signal: AbortSignal) => T | PromiseLike<T>,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<T> {
    if (timeoutMs <= 0 && signal !== undefined) return fn(signal);
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new CallTimeoutError(this.name, timeoutMs);
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    });
    try {
      return await Promise.race([Promise.resolve().then(() => fn(controller.signal)), timedOut]);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  #classify(error: unknown, signal?: AbortSignal): Outcome {
    if (isExpectedError(error)) return 'ignored';
    // The caller gave up: that says nothing about the dependency.
    if (signal?.aborted === true) return 'ignored';
    const isFailure = this.#o.isFailure;
    if (isFailure === null) return 'failure';
    try {
      const verdict = isFailure(error);
      return verdict === 'ignore' ? 'ignored' : verdict ? 'failure' : 'success';
    } catch (classifierError) {
      this.#o.logger?.error(
        { breaker: this.name, err: classifierError },
        'isFailure threw; counting a failure',
      );
      return 'failure';
    }
  }

  // ---- recording outcomes -------------------------------------------------------------------

  /** Records one outcome. Returns a promise only when the caller should wait for the store. */
  #settle(admission: Admission, outcome: Outcome, error: unknown): Promise<void> | undefined {
    this.#inFlight -= 1;
    const o = this.#o;
    let slow = false;
    if (admission.start !== 0) {
      const durationMs = o.clock.now() - admission.start;
      slow = o.slowCallMs > 0 && outcome !== 'ignored' && durationMs >= o.slowCallMs;
      if (slow) outcome = 'failure';
      if (outcome === 'success' && this.#success.size > 0) {
        this.#success.emit({ name: this.name, context: this.context, durationMs });
      } else if (outcome === 'failure' && this.#failure.size > 0) {
        this.#failure.emit({ name: this.name, context: this.context, error, durationMs, slow });
      }
    }
    if (admission.local) {
      this.#settleLocally(admission, outcome, slow);
      return undefined;
    }
    if (admission.lease === null && o.flushIntervalMs > 0) {
      this.#bufferOutcome(admission.generation, outcome, slow);
      return undefined;
    }
    const failures = outcome === 'failure' ? 1 : 0;
    const batch: OutcomeBatch =
      admission.lease === null
        ? {
            generation: admission.generation,
            successes: outcome === 'success' ? 1 : 0,
            failures,
            trailingFailures: failures,
            slow: slow ? 1 : 0,
            ignored: outcome === 'ignored' ? 1 : 0,
            probes: NO_PROBES,
            random: failures === 1 ? Math.random() : 0,
            jitterMs: failures === 1 && o.jitterFn !== null ? this.#jitterMs() : 0,
          }
        : {
            generation: admission.generation,
            successes: 0,
            failures: 0,
            trailingFailures: 0,
            slow: 0,
            ignored: 0,
            probes: [{ lease: admission.lease, outcome }],
            random: Math.random(),
            jitterMs: failures === 1 && o.jitterFn !== null ? this.#jitterMs() : 0,
          };
    return this.#write(batch);
  }

  #jitterMs(): number {
    try {
      const ms = this.#o.jitterFn!();
      return Number.isFinite(ms) && ms > 0 ? ms : 0;
    } catch (error) {
      this.#o.logger?.error({ breaker: this.name, err: error }, 'jitter function threw; using no jitter');
      return 0;
    }
  }

  /** Sends one batch to the store. Never rejects: a store failure never replaces the call's outcome. */
  #write(batch: OutcomeBatch): Promise<void> | undefined {
    const o = this.#o;
    if (this.#health.failures > 0 && !this.#health.usable(o.clock.now())) {
      this.#keepUnsent(batch);
      return undefined;
    }
    let result: Awaitable<UpdateResult>;
    try {
      result = o.store.record(this.name, o.policy, batch);
    } catch (error) {
      this.#keepUnsent(batch);
      this.#storeFailed('record', error);
      return undefined;
    }
    if (isPromiseLike(result)) {
      const pending = result;
      return withTimeout(pending, o.storeTimeoutMs, 'record').then(
        (r) => this.#recorded(r),
        (error: unknown) => {
          // A write that failed is kept for when the store is back. One that timed out may
          // still land: it is kept only if the store later says it failed, never counted twice.
          if (!timeouts.has(error as object)) {
            this.#keepUnsent(batch);
          } else {
            pending.then(undefined, () => {
              this.#keepUnsent(batch);
              if (this.#health.failures === 0) void this.#resendUnsent();
            });
          }
          return this.#storeFailed('record', error);
        },
      );
    }
    return this.#recorded(result);
  }

  #recorded(result: UpdateResult): Promise<void> | undefined {
    if (typeof result !== 'object' || result === null || typeof result.snapshot !== 'object') {
      this.#storeFailed('record', new StoreError('Store record returned a malformed reply'));
      return undefined;
    }
    if (this.#local !== null || this.#health.failures > 0) this.#storeRecovered();
    this.#applyUpdate(result);
    const trip = this.#o.policy.trip;
    const snapshot = result.snapshot;
    if (
      trip.kind === 'custom' &&
      !result.stale &&
      snapshot.state === 'closed' &&
      snapshot.counts.failures > 0 &&
      this.#customTrips(snapshot.counts)
    ) {
      return this.#write({
        generation: snapshot.generation,
        successes: 0,
        failures: 0,
        trailingFailures: 0,
        slow: 0,
        ignored: 0,
        probes: NO_PROBES,
        trip: true,
        random: Math.random(),
        jitterMs: this.#o.jitterFn !== null ? this.#jitterMs() : 0,
      });
    }
    return undefined;
  }

  #customTrips(counts: WindowCounts): boolean {
    const trip = this.#o.policy.trip;
    if (trip.kind !== 'custom' || trip.predicate === undefined) return false;
    try {
      return trip.predicate(counts);
    } catch (error) {
      this.#o.logger?.error({ breaker: this.name, err: error }, 'custom trip predicate threw; not tripping');
      return false;
    }
  }

  #applyUpdate(result: UpdateResult): void {
    if (result.transition !== null) this.#emitTransition(result.transition);
    this.#absorb(result.snapshot);
  }

  /** Takes a snapshot from the store as this process's view. */
  #absorb(snapshot: Snapshot): void {
    if (snapshot.generation < this.#generation) return;
    this.#generation = snapshot.generation;
    this.#state = snapshot.state;
    this.#override = snapshot.override;
    this.#counts = snapshot.counts;
    const knownOpen = snapshot.state === 'open' && snapshot.override === null && snapshot.retryAfterMs > 0;
    // The local clock is read only when the view needs it: it is a visible cost on the hot path.
    if (knownOpen || this.#o.maxStalenessMs > 0) {
      const localNow = this.#o.clock.now();
      this.#viewAt = localNow;
      this.#openUntil = knownOpen ? localNow + snapshot.retryAfterMs : 0;
    } else {
      this.#openUntil = 0;
    }
  }

  #emitTransition(transition: Transition): void {
    this.#o.logger?.info?.(
      { breaker: this.name, from: transition.from, to: transition.to, generation: transition.generation },
      'circuit breaker state changed',
    );
    if (this.#stateChange.size > 0) {
      this.#stateChange.emit({
        name: this.name,
        context: this.context,
        from: transition.from,
        to: transition.to,
        generation: transition.generation,
      });
    }
  }

  #notify(message: StateChangeMessage): void {
    if (message.generation <= this.#generation) return;
    const localNow = this.#o.clock.now();
    this.#generation = message.generation;
    this.#override =
      message.to === 'forced-open' || message.to === 'forced-closed'
        ? message.to
        : this.#override === 'metrics-only'
          ? 'metrics-only'
          : null;
    this.#state = message.to === 'forced-open' || message.to === 'forced-closed' ? this.#state : message.to;
    this.#openUntil =
      message.to === 'open' && message.openUntil > message.now
        ? localNow + (message.openUntil - message.now)
        : 0;
    // Only a change to closed is a view worth trusting without asking; anything else is asked.
    this.#viewAt = message.to === 'closed' ? localNow : -Infinity;
  }

  // ---- buffering (flushIntervalMs > 0) ------------------------------------------------------

  #bufferOutcome(generation: number, outcome: Outcome, slow: boolean): void {
    let buffer = this.#buffer;
    if (buffer !== null && buffer.generation !== generation) {
      void this.#flushBuffer();
      buffer = null;
    }
    if (buffer === null) {
      buffer = { generation, successes: 0, failures: 0, trailingFailures: 0, slow: 0, ignored: 0 };
      this.#buffer = buffer;
      this.#flushTimer = setTimeout(() => void this.#flushBuffer(), this.#o.flushIntervalMs);
      this.#flushTimer.unref?.();
    }
    addOutcome(buffer, outcome, slow);
    if (outcome === 'failure' && this.#couldTrip(buffer)) void this.#flushBuffer();
  }

  /** Whether the buffered failures, with the counts last seen, could trip the policy: then write now. */
  #couldTrip(buffer: PendingBatch): boolean {
    const seen = this.#counts;
    const successes = seen.successes + buffer.successes;
    const failures = seen.failures + buffer.failures;
    const merged: WindowCounts = {
      successes,
      failures,
      slow: seen.slow + buffer.slow,
      ignored: seen.ignored + buffer.ignored,
      total: successes + failures,
      failureRate: successes + failures === 0 ? 0 : failures / (successes + failures),
      consecutiveFailures:
        buffer.successes > 0 ? buffer.trailingFailures : seen.consecutiveFailures + buffer.failures,
    };
    return this.#o.policy.trip.kind === 'custom'
      ? this.#customTrips(merged)
      : shouldTrip(this.#o.policy.trip, merged);
  }

  #flushBuffer(): Promise<void> | undefined {
    const buffer = this.#buffer;
    if (buffer === null) return undefined;
    this.#buffer = null;
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    const written = this.#write({
      ...buffer,
      probes: NO_PROBES,
      random: Math.random(),
      jitterMs: buffer.failures > 0 && this.#o.jitterFn !== null ? this.#jitterMs() : 0,
    });
    if (written === undefined) return undefined;
    const flushing = written.finally(() => {
      if (this.#flushing === flushing) this.#flushing = null;
    });
    this.#flushing = flushing;
    return flushing;
  }

  // ---- store failure ------------------------------------------------------------------------

  #callStore<T>(operation: StoreErrorEvent['operation'], call: () => Awaitable<T>): Awaitable<T> {
    const result = call();
    if (!isPromiseLike(result)) return result;
    return withTimeout(result, this.#o.storeTimeoutMs, operation);
  }

  #storeFailed(operation: StoreErrorEvent['operation'], error: unknown): undefined {
    const o = this.#o;
    const now = o.clock.now();
    this.#health.failed(now);
    if (this.#storeError.size > 0) this.#storeError.emit({ name: this.name, operation, error });
    const health = this.#health;
    if (o.logger !== null) {
      // Rate-limited: an outage is one story, not one line per call.
      if (now - health.lastLogAt >= 5_000) {
        o.logger.warn(
          {
            breaker: this.name,
            operation,
            err: error,
            suppressed: health.suppressed,
            policy: o.onStoreFailure,
          },
          'circuit breaker store failed; using the store-failure policy',
        );
        health.lastLogAt = now;
        health.suppressed = 0;
      } else {
        health.suppressed += 1;
      }
    }
    return undefined;
  }

  #acquireFailed(error: unknown): Admission | CircuitOpenError {
    this.#storeFailed('acquire', error);
    const now = this.#o.clock.now();
    // A timed-out probe claim never admits a probe: the store may have granted it to someone else.
    if (
      this.#o.onStoreFailure === 'local' &&
      this.#state !== 'closed' &&
      this.#override !== 'forced-closed'
    ) {
      this.#local ??= this.#seedLocal();
      return this.#rejected('open', Math.max(1, this.#local.openUntil - now));
    }
    return this.#admitWithoutStore(now);
  }

  #admitWithoutStore(now: number): Admission | CircuitOpenError {
    const o = this.#o;
    if (o.onStoreFailure === 'reject') {
      return this.#rejected('store-unavailable', Math.max(1, this.#health.downUntil - now));
    }
    if (o.onStoreFailure === 'allow') {
      return { generation: this.#generation, lease: null, local: true, start: this.#startTime() };
    }
    const local = (this.#local ??= this.#seedLocal());
    const result = reducer.acquire(local, o.policy, now, `local-${++this.#localLeases}`);
    if (result.transition !== null) this.#logLocalTransition(result.transition);
    if (result.admitted) {
      return { generation: result.generation, lease: result.lease, local: true, start: this.#startTime() };
    }
    return this.#rejected(result.reason ?? 'open', result.retryAfterMs);
  }

  /**
   * The local breaker starts from the last state this process saw, never from a fresh closed
   * breaker: an open breaker stays open until its end, and an unknown half-open is open again.
   */
  #seedLocal(): BreakerRecord {
    const o = this.#o;
    const now = o.clock.now();
    const local = reducer.emptyRecord();
    local.override = this.#override;
    if (this.#state !== 'closed') {
      local.state = 'open';
      local.openedAt = now;
      local.openUntil = Math.max(this.#openUntil, now + (this.#state === 'half-open' ? o.policy.openMs : 0));
    } else {
      local.consecutiveFailures = this.#counts.consecutiveFailures;
    }
    return local;
  }

  #settleLocally(admission: Admission, outcome: Outcome, slow: boolean): void {
    const o = this.#o;
    const now = o.clock.now();
    if (o.onStoreFailure === 'local' && this.#local !== null) {
      const failures = outcome === 'failure' ? 1 : 0;
      const result = reducer.record(this.#local, o.policy, now, {
        generation: admission.generation,
        successes: outcome === 'success' ? 1 : 0,
        failures,
        trailingFailures: failures,
        slow: slow ? 1 : 0,
        ignored: outcome === 'ignored' ? 1 : 0,
        probes: admission.lease === null ? NO_PROBES : [{ lease: admission.lease, outcome }],
        random: Math.random(),
        jitterMs: failures === 1 && o.jitterFn !== null ? this.#jitterMs() : 0,
      });
      if (result.transition !== null) this.#logLocalTransition(result.transition);
    }
    // Outcomes of calls the shared state would have counted (closed) are kept for the store.
    if (this.#state === 'closed' && admission.lease === null) {
      const unsent = (this.#unsent ??= {
        generation: this.#generation,
        successes: 0,
        failures: 0,
        trailingFailures: 0,
        slow: 0,
        ignored: 0,
      });
      addOutcome(unsent, outcome, slow);
    }
  }

  #keepUnsent(batch: OutcomeBatch): void {
    if (batch.probes.length > 0 || batch.trip === true) return; // leases die with the outage
    const unsent = (this.#unsent ??= {
      generation: batch.generation,
      successes: 0,
      failures: 0,
      trailingFailures: 0,
      slow: 0,
      ignored: 0,
    });
    if (batch.generation < unsent.generation) return; // the store would fence it off anyway
    if (batch.generation > unsent.generation) {
      // The older outcomes would be fenced off by the store: the newer generation replaces them.
      unsent.generation = batch.generation;
      unsent.successes = unsent.failures = unsent.trailingFailures = unsent.slow = unsent.ignored = 0;
    }
    unsent.trailingFailures =
      batch.successes > 0 ? batch.trailingFailures : unsent.trailingFailures + batch.failures;
    unsent.successes += batch.successes;
    unsent.failures += batch.failures;
    unsent.slow += batch.slow;
    unsent.ignored += batch.ignored;
  }

  #storeRecovered(): void {
    const recovered = this.#health.succeeded();
    if (recovered) this.#o.logger?.warn({ breaker: this.name }, 'circuit breaker store is reachable again');
    this.#local = null;
    void this.#resendUnsent();
  }

  /** Writes the outcomes kept while the store was unreachable, under the generation they had. */
  #resendUnsent(): Promise<void> | undefined {
    const unsent = this.#unsent;
    // Generation 0: admitted before this process ever heard from the store. They were closed-state
    // calls, so they count in the generation the store is in when it answers again, once known.
    if (unsent === null || (unsent.generation === 0 && this.#generation === 0)) return undefined;
    this.#unsent = null;
    // Otherwise written under the generation they were admitted in: if the shared state moved on
    // meanwhile, the store fences them off rather than counting them twice or wrongly.
    return this.#write({
      ...unsent,
      generation: unsent.generation === 0 ? this.#generation : unsent.generation,
      probes: NO_PROBES,
      random: Math.random(),
      jitterMs: unsent.failures > 0 && this.#o.jitterFn !== null ? this.#jitterMs() : 0,
    });
  }

  #logLocalTransition(transition: Transition): void {
    this.#o.logger?.warn(
      { breaker: this.name, from: transition.from, to: transition.to },
      'circuit breaker changed state locally while its store is unreachable',
    );
  }
}

function addOutcome(batch: PendingBatch, outcome: Outcome, slow: boolean): void {
  if (outcome === 'success') {
    batch.successes += 1;
    batch.trailingFailures = 0;
  } else if (outcome === 'failure') {
    batch.failures += 1;
    batch.trailingFailures += 1;
  } else {
    batch.ignored += 1;
  }
  if (slow) batch.slow += 1;
}

/** Lets the factory hand a breaker its pre-resolved options, base name and context. */
export const initKey = Symbol('circuitry.init');
