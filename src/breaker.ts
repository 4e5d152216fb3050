import type {
  BreakerState,
  CircuitState,
  ForceOptions,
  Outcome,
  Override,
  RejectReason,
  Snapshot,
  Transition,
  WindowCounts,
} from './core/types.js';
import { MAX_REASON_LENGTH } from './core/reducer.js';
import type { Admission } from './admission.js';
import { Coordination, isPromiseLike } from './coordination.js';
import type { BreakerLeftovers, CoordinationHost, StoreOperation } from './coordination.js';
import { endDeadline, startDeadline } from './deadlines.js';
import type { CircuitOpenError } from './errors.js';
import {
  CallTimeoutError,
  InvalidOptionError,
  isCircuitOpenError,
  isExpectedError,
  rejection,
} from './errors.js';
import { noListeners, own } from './listeners.js';
import type { Disposer } from './listeners.js';
import type { BreakerOptions, ResolvedOptions } from './options.js';
import type { BaseStats } from './metrics.js';
import { describeValue, invalid, resolveOptions } from './options.js';
import type { StateChangeMessage } from './store.js';
import { MemoryStore, inProcess } from './stores/memory.js';
import { Reporter } from './quorum.js';
import type { InProcessPath, RecordSlot } from './stores/memory.js';

/** Options of one `execute` call. */
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

/** A state change, as `onStateChange` listeners get it. */
export interface StateChangeEvent<Context> {
  /** The breaker's name. */
  readonly name: string;
  /** The context the breaker was made for (`breakerFor`), or undefined. */
  readonly context: Context | undefined;
  /** The state callers saw before. */
  readonly from: CircuitState;
  /** The state callers see now. */
  readonly to: CircuitState;
  /** The generation the change started. */
  readonly generation: number;
  /**
   * True for a change in this process only: an open below the `quorum` (its calls are rejected
   * with `'local-open'`, no other process is told), and its end.
   */
  readonly local?: boolean;
}

/** This process's view admitting calls again, as `onAdmitting` listeners get it. */
export interface AdmittingEvent<Context> {
  /** The breaker's name. */
  readonly name: string;
  /** The context the breaker was made for (`breakerFor`), or undefined. */
  readonly context: Context | undefined;
  /**
   * What is left of the recovery ramp (`recovery.rampMs`) in ms, 0 without one: bring deferred
   * work back spread over it, since the breaker admits only a growing share of calls meanwhile.
   */
  readonly rampLeftMs: number;
}

/** A call that counted as a success, as `onSuccess` listeners get it. */
export interface SuccessEvent<Context> {
  /** The breaker's name. */
  readonly name: string;
  /** The context the breaker was made for (`breakerFor`), or undefined. */
  readonly context: Context | undefined;
  /** How long the call ran, in ms of the breaker's clock. */
  readonly durationMs: number;
}

/** A call that counted as a failure, as `onFailure` listeners get it. */
export interface FailureEvent<Context> {
  /** The breaker's name. */
  readonly name: string;
  /** The context the breaker was made for (`breakerFor`), or undefined. */
  readonly context: Context | undefined;
  /** The error `fn` threw; undefined for a slow success. */
  readonly error: unknown;
  /** How long the call ran, in ms of the breaker's clock. */
  readonly durationMs: number;
  /** True when the call took `slowCallMs` or longer. */
  readonly slow: boolean;
}

/** A call rejected without running, as `onReject` listeners get it. */
export interface RejectEvent<Context> {
  /** The breaker's name. */
  readonly name: string;
  /** The context the breaker was made for (`breakerFor`), or undefined. */
  readonly context: Context | undefined;
  /** Why the call was rejected. */
  readonly reason: RejectReason;
  /** How long until the breaker may admit a call again, in ms (as the `CircuitOpenError` says). */
  readonly retryAfterMs: number;
}

/** A store call that failed or timed out, as `onStoreError` listeners get it. */
export interface StoreErrorEvent {
  /** The breaker's name. */
  readonly name: string;
  /** Which store call failed. */
  readonly operation: StoreOperation;
  /** What went wrong: usually a `StoreError`, with the store client's error as its `cause`. */
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
  /** Records a success. */
  success(): Promise<void>;
  /** Records a failure; `error`, if given, is classified with `isFailure` first. */
  failure(error?: unknown): Promise<void>;
  /** Records an outcome that counts as neither success nor failure (it frees a probe's slot). */
  ignore(): Promise<void>;
}

/** How `force` sets an override. */
export interface OverrideOptions {
  /** The override lapses after this many ms (a forced-open then goes half-open). @defaultValue never */
  readonly forMs?: number;
  /** Why, for operators (CLI, dashboard); cut at 200 characters. */
  readonly reason?: string;
}

function checkOverrideOptions(options: OverrideOptions, method: string): ForceOptions {
  if (typeof options !== 'object' || options === null)
    throw invalid(`${method} options`, 'an object', options);
  const { forMs, reason } = options;
  if (forMs !== undefined && (typeof forMs !== 'number' || !Number.isFinite(forMs) || forMs <= 0)) {
    throw invalid('forMs', 'a positive finite number of milliseconds', forMs);
  }
  if (reason !== undefined && typeof reason !== 'string') throw invalid('reason', 'a string', reason);
  return {
    ...(forMs === undefined ? {} : { forMs: Math.ceil(forMs) }),
    ...(reason === undefined ? {} : { reason: reason.slice(0, MAX_REASON_LENGTH) }),
  };
}

/**
 * Where a factory keeps the lookup count of a breaker's last move in its LRU. Not public API.
 * @internal
 */
export const lruTick = Symbol('circuitry.lruTick');
/**
 * Where a factory keeps the tenant id it finds a breaker by (see `BreakerFactory.breakerFor`).
 * Not public API.
 * @internal
 */
export const tenantKey = Symbol('circuitry.tenantKey');

/** Internal hooks the factory uses; not part of the public API. */
export const internal = Symbol('circuitry.internal');

/**
 * What `[internal]` gives the factory, the health handler and the metrics exporters.
 * @internal
 */
export interface BreakerInternals {
  /** A state change made by another process (or another breaker object) reached us. */
  notify(message: StateChangeMessage): void;
  /** Pushes may have been missed: re-read the state before trusting the local view. */
  resync(): void;
  /** True while the breaker holds a permit or unwritten outcomes: the registry must keep it. */
  busy(): boolean;
  /** For `close()`: writes what is buffered or kept, trying the store even after a failure, until `deadline` (performance.now()). */
  drain(deadline: number): Promise<void>;
  /** What is still not written, or in doubt, or null. */
  unwritten(): BreakerLeftovers | null;
  /** Starts (or with null stops) keeping metrics for this breaker's base name. */
  instrument(stats: BaseStats | null): void;
  /** This process's view of the state, without asking the store. */
  view(): {
    readonly state: BreakerState;
    readonly override: Override | null;
    readonly generation: number;
    readonly retryAfterMs: number;
  };
  /** The share of calls the adaptive throttle turns away now, or null without one. */
  throttleRate(): number | null;
  /**
   * Calls `listener` whenever this process's view goes from turning callers away (open,
   * half-open, forced-open) to admitting them; the breaker is kept while anyone listens.
   */
  onAdmitting(listener: () => void): Disposer;
  /** What is left of the recovery ramp in this process, in ms (0: none). */
  rampLeftMs(): number;
}

/**
 * The signal `execute` hands a call that nothing can abort (no timeout, no caller's signal). Not
 * public API: the HTTP integrations compare with it so they do not hang a listener per request on
 * one long-lived signal.
 */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;
/** `Admission.start` of a call whose duration nothing needs: a value no clock returns. */
export const NOT_TIMED = -Infinity;
const MAX_TIMER_MS = 2_147_483_647;

/** Checks `execute`'s per-call options; a bad one is the caller's bug and counts nothing. */
function checkExecuteOptions(options: ExecuteOptions<unknown>): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(
      'execute options',
      `Expected execute options to be an object, got ${describeValue(options)}`,
    );
  }
  const { timeoutMs, fallback, signal, fallbackOnFailure } = options as Record<string, unknown>;
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== 'number' ||
      !Number.isInteger(timeoutMs) ||
      timeoutMs < 0 ||
      timeoutMs > MAX_TIMER_MS)
  ) {
    throw invalid('timeoutMs', `an integer from 0 (no timeout) to ${MAX_TIMER_MS}`, timeoutMs);
  }
  if (fallback !== undefined && typeof fallback !== 'function')
    throw invalid('fallback', 'a function', fallback);
  if (fallbackOnFailure !== undefined && typeof fallbackOnFailure !== 'boolean') {
    throw invalid('fallbackOnFailure', 'a boolean', fallbackOnFailure);
  }
  if (
    signal !== undefined &&
    (typeof signal !== 'object' ||
      signal === null ||
      typeof (signal as AbortSignal).aborted !== 'boolean' ||
      typeof (signal as AbortSignal).addEventListener !== 'function')
  ) {
    throw invalid('signal', 'an AbortSignal', signal);
  }
}

/** A pair of `then` handlers of a breaker's shared closed path (see `execute`). */
type Handlers = readonly [(value: unknown) => unknown, (error: unknown) => unknown];

/** Rethrows `error` (fn's own), once `settled` is, if there is anything to wait for. */
function rethrow(error: unknown, settled: Promise<void> | undefined): Promise<never> {
  if (settled === undefined) throw error;
  return settled.then(() => {
    throw error;
  });
}

/**
 * Where a factory hands a breaker the gate of its base name, when the base name can escalate
 * (`escalate`). Not public API.
 * @internal
 */
export const baseGate = Symbol('circuitry.baseGate');

/**
 * A base name's gate (`escalate`): its breaker, which every breaker of the base name asks first,
 * and the check a breaker runs when it sees itself open. Not public API.
 * @internal
 */
export interface BaseGate {
  readonly breaker: CircuitBreaker<unknown>;
  /**
   * A breaker of the base name saw itself open (`opened`: it just changed to open; else a call
   * was rejected as open): the factory checks whether the base name is.
   */
  check(opened: boolean): void;
}

/**
 * A circuit breaker whose state lives in a store. Create one per protected dependency (or per
 * tenant of it), usually through `BreakerFactory.breakerFor`.
 *
 * This file is what a call does: `execute` and `acquire`, classifying outcomes, and the events.
 * How the breaker coordinates with its store is in `coordination.ts` (its view of the shared
 * state), `admission.ts` (whether a call may run) and `outcome-writer.ts` (where outcomes go);
 * what it does when the store does not answer is in `fallback.ts` and `store-health.ts`.
 */
export class CircuitBreaker<Context = unknown> {
  // The fields a closed call reads come first, in the order it reads them: fields are laid out in
  // the object in the order they are declared, so these share two or three cache lines. A factory
  // calling a thousand tenants' breakers in turn finds each one out of cache (issue 26).
  readonly #o: ResolvedOptions<Context>;
  readonly #co: Coordination;
  /** The allocation-free closed path of a `MemoryStore`, when nothing needs the general path. */
  readonly #fast: InProcessPath | null;
  /** @internal */
  [baseGate]: BaseGate | null = null;
  // Shared empty lists until a listener is added (`own`): most breakers never have one.
  #success = noListeners<SuccessEvent<Context>>();
  #failure = noListeners<FailureEvent<Context>>();
  /** This breaker's record in the in-process path (see `RecordSlot`), made on first use. */
  #slot: RecordSlot | null = null;
  /**
   * The `then` handlers of the shared closed path (see `execute`), made once per breaker, on its
   * second call; held here rather than in an object of their own, one object less per call.
   */
  #onSuccess: ((value: unknown) => unknown) | null = null;
  #onFailure: ((error: unknown) => unknown) | null = null;
  /** The generation of the calls in flight on the shared path (see `execute`). */
  #sharedGeneration = 0;
  #sharedInFlight = 0;
  /** This base name's metrics, once the factory's metrics were asked for (`circuitry/prometheus`). */
  #stats: BaseStats | null = null;
  /** Start of the call running alone on the shared path (see `#runShared`). */
  #aloneSince = 0;
  /**
   * The factory's lookup count when it last found this breaker (see `BreakerFactory.breakerFor`).
   * @internal
   */
  [lruTick] = 0;

  /** The breaker's name: the key of its state in the store. */
  readonly name: string;
  /** @internal */
  [tenantKey]: string | null = null;
  /** The base name it was made for (`breakerFor`); its name when made with `new`. */
  readonly baseName: string;
  /** The context it was made for (`breakerFor`); undefined when made with `new`. */
  readonly context: Context | undefined;

  #stateChange = noListeners<StateChangeEvent<Context>>();
  #reject = noListeners<RejectEvent<Context>>();
  #storeError = noListeners<StoreErrorEvent>();
  /** User functions that threw and were reported with a process warning (once each). */
  #warned: Set<string> | null = null;
  #ownListeners = 0;
  readonly #reporter: Reporter | null;
  /** Whether a call took the path that makes the shared handlers (see `#warmUp`). */
  #warm = false;
  /** With metrics: handlers timing a call that runs alone on the shared path, made on first need. */
  #timed: Handlers | null = null;

  /**
   * The breaker as its `Coordination` sees it: one object per breaker holding only the breaker,
   * its methods on a shared prototype (closures here would cost every idle per-tenant breaker).
   */
  static readonly #Host = class implements CoordinationHost {
    constructor(readonly breaker: CircuitBreaker<unknown>) {}
    get name(): string {
      return this.breaker.name;
    }
    emitTransition(transition: Transition): void {
      this.breaker.#emitTransition(transition);
    }
    rejected(reason: RejectReason, retryAfterMs: number): CircuitOpenError {
      return this.breaker.#rejected(reason, retryAfterMs);
    }
    storeError(operation: StoreOperation, error: unknown): void {
      const b = this.breaker;
      if (b.#storeError.size > 0) b.#storeError.emit({ name: b.name, operation, error });
    }
    jitterMs(): number {
      return this.breaker.#jitterMs();
    }
    customTrips(counts: WindowCounts): boolean {
      return this.breaker.#customTrips(counts);
    }
    get reporter(): Reporter | null {
      return this.breaker.#reporter;
    }
    emitLocal(from: CircuitState, to: CircuitState): void {
      this.breaker.#emitLocal(from, to);
    }
    startTime(): number {
      return this.breaker.#startTime();
    }
    learnt(from: CircuitState, to: CircuitState): void {
      if (to === 'open') this.breaker[baseGate]?.check(true);
      this.breaker.#stats?.transition(from, to, 'learnt');
    }
  };

  constructor(name: string, options: BreakerOptions<Context> = {}) {
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(`Expected the breaker name to be a non-empty string, got ${String(name)}`);
    }
    const resolved = (options as { [internal]?: ResolvedOptions<Context> })[internal];
    const init = (
      options as {
        [initKey]?: { baseName: string; context: Context | undefined; reporter?: Reporter | null };
      }
    )[initKey];
    this.#o = resolved ?? resolveOptions(options);
    if (resolved === undefined && this.#o.escalate !== null) {
      throw new InvalidOptionError(
        'escalate',
        '`escalate` opens a base name for all its breakers: it is an option of `BreakerFactory` (or its `byBaseName`), not of a breaker made with `new`',
      );
    }
    this.name = name;
    this.baseName = init?.baseName ?? name;
    this.context = init?.context;
    const o = this.#o;
    // A factory's breakers report as the factory; a breaker made with `new`, as itself.
    this.#reporter = o.quorum === null ? null : (init?.reporter ?? new Reporter(o.store));
    this.#co = new Coordination(
      new CircuitBreaker.#Host(this as CircuitBreaker<unknown>),
      o as ResolvedOptions<unknown>,
    );
    // (The in-process path admits without taking a concurrency slot: with a limit, every call
    // goes through `acquire`.)
    this.#fast =
      o.store instanceof MemoryStore &&
      o.flushIntervalMs === 0 &&
      o.slowCallMs === 0 &&
      o.throttle === null &&
      o.quorum === null &&
      o.policy.trip.kind !== 'custom' &&
      o.policy.maxConcurrent === 0
        ? o.store[inProcess]
        : null;
    if (this.#o.onStateChange !== null) {
      const callback = this.#o.onStateChange;
      this.#stateChange = own(this.#stateChange);
      this.#stateChange.add((event) =>
        callback(event.name, event.context, event.from, event.to, { local: event.local === true }),
      );
    }
  }

  /**
   * Fires once per state change, in the process whose store operation made it. A factory never
   * drops a breaker from its LRU while it has listeners added here; to observe many tenants, give
   * the factory an `onStateChange` option instead.
   */
  onStateChange(listener: (event: StateChangeEvent<Context>) => void): Disposer {
    return this.#listen((this.#stateChange = own(this.#stateChange)).add(listener));
  }

  /**
   * Fires for every outcome that counts as a success: a call that returned, or threw an error
   * `isFailure` answers `false` for. A slow success counts as a failure instead.
   */
  onSuccess(listener: (event: SuccessEvent<Context>) => void): Disposer {
    return this.#listen((this.#success = own(this.#success)).add(listener));
  }

  /** Fires for every outcome that counts as a failure, including slow successes. */
  onFailure(listener: (event: FailureEvent<Context>) => void): Disposer {
    return this.#listen((this.#failure = own(this.#failure)).add(listener));
  }

  /** Fires for every call the breaker rejects without running it (with a `CircuitOpenError`). */
  onReject(listener: (event: RejectEvent<Context>) => void): Disposer {
    return this.#listen((this.#reject = own(this.#reject)).add(listener));
  }

  /**
   * Fires when this process's view goes from turning callers away (open, half-open, forced-open)
   * to admitting them, however it learnt it: its own probe, another process's (a push, an
   * answer), a reset or an operator's close. A job queue brings the work it deferred back then,
   * spread over `rampLeftMs`, instead of letting it wait out its delay (`circuitry/bullmq` does).
   * The factory keeps the breaker while a listener is added.
   */
  onAdmitting(listener: (event: AdmittingEvent<Context>) => void): Disposer {
    const internals = this[internal];
    return this.#listen(
      internals.onAdmitting(() =>
        listener({ name: this.name, context: this.context, rampLeftMs: internals.rampLeftMs() }),
      ),
    );
  }

  /** Fires when the store fails or times out (the breaker keeps working; see `onStoreFailure`). */
  onStoreError(listener: (event: StoreErrorEvent) => void): Disposer {
    return this.#listen((this.#storeError = own(this.#storeError)).add(listener));
  }

  /** Counts listeners added through the `on*` methods, so the factory keeps this breaker. */
  #listen(dispose: Disposer): Disposer {
    this.#ownListeners += 1;
    let disposed = false;
    return () => {
      if (disposed) return;
      disposed = true;
      this.#ownListeners -= 1;
      dispose();
    };
  }

  /**
   * Runs `fn` if the breaker admits it. Resolves with `fn`'s value, rethrows `fn`'s error
   * untouched, or rejects with `CircuitOpenError` without calling `fn`.
   */
  execute<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T> {
    // Two closed paths without options or outcome listeners settle through handlers the breaker
    // makes once (`#onSuccess`, `#onFailure`), with no async frame: a call on an in-process
    // `MemoryStore`, and one the local-first view admits (`maxStalenessMs`). Calls in flight on
    // them share one generation; a call admitted under another one takes the general path, so
    // fencing holds.
    if (
      options !== undefined ||
      typeof fn !== 'function' ||
      this.#o.timeoutMs > 0 ||
      this.#success.size !== 0 ||
      this.#failure.size !== 0 ||
      this[baseGate] !== null
    ) {
      return this[baseGate] === null ? this.#execute(fn, options) : this.#gated(fn, options);
    }
    const fast = this.#fast;
    if (fast === null) return this.#viewShared(fn);
    const co = this.#co;
    if (co.openUntil === 0 && co.rampUntil === 0) {
      const generation = fast.admitClosed((this.#slot ??= fast.slot(this.name)));
      const warm = this.#onSuccess !== null || this.#warmUp();
      if (warm && generation !== 0 && this.#sharesGeneration(generation)) {
        co.admittedClosed(generation);
        return this.#runShared(fn, generation);
      }
    }
    return this.#execute(fn, options);
  }

  /**
   * `execute` without options on a breaker without the in-process path: the local-first view's
   * shared path when the view admits the call, else the general path. Apart from `execute`, which
   * then stays small enough for V8 to inline into the caller.
   */
  #viewShared<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>): Promise<T> {
    const o = this.#o;
    if (o.maxStalenessMs > 0 && o.slowCallMs === 0 && o.throttle === null && o.policy.maxConcurrent === 0) {
      const co = this.#co;
      const generation = co.admitFromView();
      const warm = this.#onSuccess !== null || this.#warmUp();
      if (warm && generation >= 0 && this.#sharesGeneration(generation)) {
        co.inFlight += 1;
        return this.#runShared(fn, generation);
      }
    }
    return this.#execute(fn, undefined);
  }

  #sharesGeneration(generation: number): boolean {
    return this.#sharedInFlight === 0 || generation === this.#sharedGeneration;
  }

  /**
   * Makes the shared handlers on a breaker's second call: the first takes the general path, so a
   * breaker used once (a tenant seen once) keeps none. False on that first call.
   */
  #warmUp(): boolean {
    if (!this.#warm) {
      this.#warm = true;
      return false;
    }
    // Each closes over `this` alone: a call reaches the breaker through the handler's context,
    // with no settle function and context of its own in between.
    this.#onSuccess = (value) => {
      const settled = this.#settleShared('success');
      return settled === undefined ? value : settled.then(() => value);
    };
    this.#onFailure = (error) => rethrow(error, this.#settleShared(this.#classify(error)));
    return true;
  }

  /**
   * Records one outcome of the shared path: on the in-process path of a `MemoryStore` when the
   * breaker has one, else through the local-first view. A promise when the caller should wait for
   * the store.
   */
  #settleShared(outcome: Outcome): Promise<void> | undefined {
    this.#sharedInFlight -= 1;
    const fast = this.#fast;
    if (fast === null) return this.#co.recordViewed(this.#sharedGeneration, outcome);
    this.#settleClosed(fast, this.#sharedGeneration, outcome);
    return undefined;
  }

  /** Runs `fn`, admitted on the shared path under `generation`, and settles it there. */
  #runShared<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, generation: number): Promise<T> {
    this.#sharedGeneration = generation;
    const alone = this.#sharedInFlight === 0;
    this.#sharedInFlight += 1;
    const stats = this.#stats;
    const started = stats === null ? 0 : stats.now();
    if (alone) this.#aloneSince = started;
    let result: T | PromiseLike<T>;
    try {
      result = fn(NEVER_ABORTED);
    } catch (error) {
      // fn's own error, whatever it is, rethrown untouched (as execute always does).
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      result = Promise.reject(error);
    }
    const running: Promise<T> = result instanceof Promise ? (result as Promise<T>) : Promise.resolve(result);
    if (stats === null) return running.then(this.#onSuccess, this.#onFailure) as Promise<T>;
    return this.#timedShared(running, stats, alone, started);
  }

  /**
   * `#runShared` with metrics: each call's duration. Apart, because its closures would make every
   * call on the shared path allocate a context for the variables they share.
   */
  #timedShared<T>(running: Promise<T>, stats: BaseStats, alone: boolean, started: number): Promise<T> {
    // A call with no other in flight on this path keeps its start in `#aloneSince` (no later call
    // writes it while this one runs): shared handlers.
    if (alone) {
      const timed = (this.#timed ??= this.#timedHandlers(stats));
      return running.then(timed[0], timed[1]) as Promise<T>;
    }
    // Calls that overlap: two closures per call, as on the general path.
    return running.then(
      (value: T) => {
        const settled = this.#settleShared('success');
        if (started !== 0) stats.ran('success', stats.now() - started);
        return settled === undefined ? value : settled.then(() => value);
      },
      (error: unknown) => {
        const outcome = this.#classify(error);
        const settled = this.#settleShared(outcome);
        if (started !== 0) stats.ran(outcome, stats.now() - started);
        return rethrow(error, settled);
      },
    );
  }

  #timedHandlers(stats: BaseStats): Handlers {
    return [
      (value) => {
        const started = this.#aloneSince;
        const settled = this.#settleShared('success');
        if (started !== 0) stats.ran('success', stats.now() - started);
        return settled === undefined ? value : settled.then(() => value);
      },
      (error) => {
        const started = this.#aloneSince;
        const outcome = this.#classify(error);
        const settled = this.#settleShared(outcome);
        if (started !== 0) stats.ran(outcome, stats.now() - started);
        return rethrow(error, settled);
      },
    ];
  }

  async #execute<T>(
    fn: (signal: AbortSignal) => T | PromiseLike<T>,
    options?: ExecuteOptions<T>,
  ): Promise<T> {
    // A programming error, not the dependency's: rejected before anything is counted.
    if (typeof fn !== 'function') throw invalid('fn', 'a function', fn);
    if (options !== undefined) checkExecuteOptions(options);
    const signal = options?.signal;
    if (signal?.aborted === true) throw signal.reason;
    const timeoutMs = options?.timeoutMs ?? this.#o.timeoutMs;
    const fast = this.#fast;
    const co = this.#co;
    if (
      fast !== null &&
      signal === undefined &&
      co.openUntil === 0 &&
      co.rampUntil === 0 &&
      this.#success.size === 0 &&
      this.#failure.size === 0
    ) {
      const generation = fast.admitClosed((this.#slot ??= fast.slot(this.name)));
      if (generation !== 0) {
        // Inlined rather than a helper: one async frame less per call.
        co.admittedClosed(generation);
        const stats = this.#stats;
        const started = stats === null ? 0 : stats.now();
        let value: T;
        try {
          value = await (timeoutMs > 0 ? this.#runGuarded(fn, undefined, timeoutMs) : fn(NEVER_ABORTED));
        } catch (error) {
          const outcome = this.#classify(error);
          this.#settleClosed(fast, generation, outcome);
          if (stats !== null && started !== 0) stats.ran(outcome, stats.now() - started);
          if (options?.fallback !== undefined && options.fallbackOnFailure === true) {
            return options.fallback(error);
          }
          throw error;
        }
        this.#settleClosed(fast, generation, 'success');
        if (stats !== null && started !== 0) stats.ran('success', stats.now() - started);
        return value;
      }
    }
    let admitted = co.admit();
    if (isPromiseLike(admitted)) admitted = await admitted;
    if (!('lease' in admitted)) {
      if (options?.fallback !== undefined) return options.fallback(admitted);
      throw admitted;
    }
    co.inFlight += 1;
    // (`aborted` is read again: it may have changed while the admission was awaited.)
    const given: AbortSignal | undefined = signal;
    if (this.#o.queueMs > 0 && given?.aborted === true) {
      // The caller gave up while the call waited for a concurrency slot: the slot goes back.
      const settled = this.#settle(admitted, 'ignored', undefined, 0);
      if (settled !== undefined) await settled;
      throw given.reason;
    }
    const ranSince = this.#stats === null ? 0 : this.#stats.now();
    let value: T;
    try {
      value =
        timeoutMs > 0 || signal !== undefined
          ? await this.#runGuarded(fn, signal, timeoutMs)
          : await fn(NEVER_ABORTED);
    } catch (error) {
      const settled = this.#settle(admitted, this.#classify(error, signal), error, ranSince);
      if (settled !== undefined) await settled;
      const fallback = options?.fallback;
      if (fallback !== undefined && options?.fallbackOnFailure === true) return fallback(error);
      throw error;
    }
    const settled = this.#settle(admitted, 'success', undefined, ranSince);
    if (settled !== undefined) await settled;
    return value;
  }

  /** Records the outcome of a call admitted by the in-process path. */
  #settleClosed(fast: InProcessPath, generation: number, outcome: Outcome): void {
    const o = this.#o;
    // What an open this outcome may start needs (a success can trip a failure rate).
    const canTrip = outcome === 'failure' || (outcome === 'success' && o.policy.trip.kind === 'failure-rate');
    const co = this.#co;
    co.selfCall = true;
    const moved = fast.recordClosed(
      (this.#slot ??= fast.slot(this.name)),
      o.policy,
      generation,
      outcome,
      false,
      canTrip ? Math.random() : 0,
      canTrip && o.jitterFn !== null ? this.#jitterMs() : 0,
    );
    co.selfCall = false;
    if (moved === undefined) {
      // The state moved on while the call ran: the general path fences or counts it.
      co.settleMoved(generation, outcome);
      return;
    }
    co.inFlight -= 1;
    if (moved !== null) co.movedInProcess(moved);
  }

  /**
   * The two-step form, for work that is not one async function (a queue worker's job): ask for
   * a permit, do the work, then settle the permit. Throws `CircuitOpenError` when rejected.
   */
  async acquire(): Promise<Permit> {
    if (this[baseGate] === null) return this.#acquire();
    const base = await this.#passBase();
    if (base === null) return this.#acquire();
    if (!('probe' in base)) throw base;
    let permit: Permit;
    try {
      permit = await this.#acquire();
    } catch (error) {
      void base.ignore();
      throw error;
    }
    // The base name's probe: the call's outcome decides for the whole base name too.
    return {
      generation: permit.generation,
      probe: permit.probe,
      success: () => Promise.all([permit.success(), base.success()]).then(() => undefined),
      failure: (error?: unknown) =>
        Promise.all([permit.failure(error), base.failure(error)]).then(() => undefined),
      ignore: () => Promise.all([permit.ignore(), base.ignore()]).then(() => undefined),
    };
  }

  /**
   * Asks the base name's breaker (`escalate`): null when it admits (closed, from its view at no
   * cost, or from the store at most once a second), the rejection (reason `'base-open'`), or the
   * base name's probe permit, whose outcome the caller reports.
   */
  async #passBase(): Promise<Permit | CircuitOpenError | null> {
    const base = this[baseGate]!.breaker;
    if (base.#co.admitFromView() >= 0) return null;
    let permit: Permit;
    try {
      permit = await base.#acquire();
    } catch (error) {
      if (isCircuitOpenError(error)) return this.#rejected('base-open', error.retryAfterMs);
      throw error;
    }
    if (!permit.probe) {
      // Closed: the ask only refreshed the view. An ignored outcome writes nothing.
      void permit.ignore();
      return null;
    }
    return permit;
  }

  /** `execute` of a breaker whose base name can escalate: the base name admits the call first. */
  async #gated<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T> {
    const base = await this.#passBase();
    if (base === null) return this.#execute(fn, options);
    if (!('probe' in base)) {
      if (options?.fallback !== undefined) return options.fallback(base);
      throw base;
    }
    // The base name's probe: its outcome decides for the whole base name.
    const fallback = options?.fallback;
    const own: ExecuteOptions<T> | undefined =
      options === undefined ? undefined : { ...options, fallback: undefined, fallbackOnFailure: false };
    let value: T;
    try {
      value = await this.#execute(fn, own);
    } catch (error) {
      if (isCircuitOpenError(error) && error.breakerName === this.name) {
        // This breaker rejected the call itself: the probe did not reach the dependency.
        void base.ignore();
        if (fallback !== undefined) return fallback(error);
        throw error;
      }
      void base.failure(error);
      if (fallback !== undefined && options?.fallbackOnFailure === true) return fallback(error);
      throw error;
    }
    void base.success();
    return value;
  }

  async #acquire(): Promise<Permit> {
    const co = this.#co;
    let admitted = co.admit();
    if (isPromiseLike(admitted)) admitted = await admitted;
    if (!('lease' in admitted)) throw admitted;
    co.inFlight += 1;
    const admission = admitted;
    const ranSince = this.#stats === null ? 0 : this.#stats.now();
    let settled = false;
    const settle = (outcome: Outcome, error: unknown): Promise<void> => {
      if (settled) return Promise.resolve();
      settled = true;
      return Promise.resolve(this.#settle(admission, outcome, error, ranSince));
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
  state(): Promise<Snapshot> {
    return this.#co.inspect();
  }

  /**
   * Sets an operator override (`'forced-open'`, `'forced-closed'`, `'metrics-only'`) or clears
   * it (`null`). Other processes learn of it through the store's push channel, or when their
   * local view expires. Rejects if the store cannot be reached: an operator must know.
   */
  async force(override: Override | null, options?: OverrideOptions): Promise<Snapshot> {
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
    if (options === undefined) return this.#co.force(override);
    return this.#co.force(override, checkOverrideOptions(options, 'force'));
  }

  /**
   * Opens the breaker for `ms`, in every process (a timed `forced-open` kept in the store and
   * pushed like any override), with a `reason` operators see in the CLI and dashboard; calls are
   * rejected with reason `'forced-open'` and the time left as `retryAfterMs`. When the time is up
   * the breaker is half-open: `halfOpenMaxCalls` probes decide whether it closes, as after any
   * open. What a server asks for with `Retry-After` (`circuitry/fetch` calls it). It yields to
   * an operator: an override set without a time (forced open, forced closed, metrics-only) is left
   * alone, and a timed open is only ever made longer. `force(null)` (or `circuitry clear`) ends it.
   */
  async openFor(ms: number, options: { readonly reason?: string } = {}): Promise<Snapshot> {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
      throw invalid('ms', 'a positive finite number of milliseconds', ms);
    }
    if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
    const reason = options.reason;
    if (reason !== undefined && typeof reason !== 'string') throw invalid('reason', 'a string', reason);
    return this.#co.force('forced-open', {
      forMs: Math.ceil(ms),
      ...(reason === undefined ? {} : { reason: reason.slice(0, MAX_REASON_LENGTH) }),
      yieldToOperator: true,
    });
  }

  /**
   * Writes buffered outcomes now, and those kept while the store did not answer, if it answers.
   * `factory.close()` does this for every breaker (and more); call it yourself for a breaker
   * made without a factory.
   */
  flush(): Promise<void> {
    return this.#co.flush();
  }

  /**
   * The factory's hooks into this breaker. Not public API.
   * @internal
   */
  get [internal](): BreakerInternals {
    const co = this.#co;
    return {
      notify: (message) => co.notify(message),
      resync: () => co.resync(),
      // A breaker someone listens to is kept: dropping it would drop their listeners silently.
      busy: () => co.busy() || this.#ownListeners > 0 || co.admitting !== null,
      drain: (deadline) => co.drain(deadline),
      instrument: (stats) => {
        this.#stats = stats;
      },
      view: () => ({
        state: co.state,
        override: co.override,
        generation: co.generation,
        retryAfterMs: co.openUntil === 0 ? 0 : Math.max(0, co.openUntil - this.#o.clock.now()),
      }),
      unwritten: () => co.unwritten(),
      throttleRate: () => (this.#o.throttle === null ? null : co.throttleRate()),
      onAdmitting: (listener) => {
        const listeners = (co.admitting ??= new Set());
        listeners.add(listener);
        return () => {
          listeners.delete(listener);
          if (listeners.size === 0 && co.admitting === listeners) co.admitting = null;
        };
      },
      rampLeftMs: () => (co.rampUntil === 0 ? 0 : Math.max(0, co.rampUntil - this.#o.clock.now())),
    };
  }

  #rejected(reason: RejectReason, retryAfterMs: number): CircuitOpenError {
    if (reason === 'open') this[baseGate]?.check(false);
    this.#stats?.reject(reason);
    const error = rejection(this.name, reason, retryAfterMs);
    if (this.#reject.size > 0) {
      this.#reject.emit({ name: this.name, context: this.context, reason, retryAfterMs: error.retryAfterMs });
    }
    return error;
  }

  /** The clock at the call's start, or `NOT_TIMED` when nothing needs the call's duration. */
  #startTime(): number {
    return this.#o.slowCallMs > 0 || this.#success.size > 0 || this.#failure.size > 0
      ? this.#o.clock.now()
      : NOT_TIMED;
  }

  // ---- running the call ---------------------------------------------------------------------

  /**
   * Runs `fn` with a signal of its own, aborted when the caller's `signal` aborts or `timeoutMs`
   * passes; the timeout also rejects the call with `CallTimeoutError` at once, whether or not
   * `fn` heeds the signal. One promise per call, timed by the timer of its duration
   * (`startDeadline`); nothing is left behind once it settles.
   */
  #runGuarded<T>(
    fn: (signal: AbortSignal) => T | PromiseLike<T>,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<T> {
    if (timeoutMs <= 0 && signal !== undefined) {
      try {
        return Promise.resolve(fn(signal));
      } catch (error) {
        // fn's own error, whatever it is, rethrown untouched (as execute always does).
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      const controller = new AbortController();
      const onAbort = signal === undefined ? null : (): void => controller.abort(signal.reason);
      if (onAbort !== null) signal!.addEventListener('abort', onAbort, { once: true });
      const deadline = startDeadline(timeoutMs, () => {
        if (onAbort !== null) signal!.removeEventListener('abort', onAbort);
        const error = new CallTimeoutError(this.name, timeoutMs);
        controller.abort(error);
        reject(error);
      });
      const done = (): void => {
        endDeadline(deadline);
        if (onAbort !== null) signal!.removeEventListener('abort', onAbort);
      };
      let result: T | PromiseLike<T>;
      try {
        result = fn(controller.signal);
      } catch (error) {
        done();
        // fn's own error, whatever it is, rethrown untouched (as execute always does).
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(error);
        return;
      }
      Promise.resolve(result).then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(error);
        },
      );
    });
  }

  #classify(error: unknown, signal?: AbortSignal): Outcome {
    if (isExpectedError(error)) return 'ignored';
    // The caller gave up: that says nothing about the dependency.
    if (signal?.aborted === true) return 'ignored';
    const isFailure = this.#o.isFailure;
    // Another breaker inside this call rejected it: the work never reached that dependency, which
    // says nothing about this one's (an isFailure of the user's may say otherwise).
    if (isFailure === null) return isCircuitOpenError(error) ? 'ignored' : 'failure';
    try {
      const verdict = isFailure(error);
      return verdict === 'ignore' ? 'ignored' : verdict ? 'failure' : 'success';
    } catch (classifierError) {
      this.#reportUserError('isFailure', classifierError, 'isFailure threw; counting a failure');
      return 'failure';
    }
  }

  // ---- recording outcomes -------------------------------------------------------------------

  /** Records one outcome. Returns a promise only when the caller should wait for the store. */
  #settle(
    admission: Admission,
    outcome: Outcome,
    error: unknown,
    ranSince: number,
  ): Promise<void> | undefined {
    const o = this.#o;
    let slow = false;
    // A clock may read 0 (a ManualClock, an uptime clock): only NOT_TIMED means "not timed".
    if (admission.start !== NOT_TIMED) {
      const durationMs = o.clock.now() - admission.start;
      slow = o.slowCallMs > 0 && outcome !== 'ignored' && durationMs >= o.slowCallMs;
      if (slow) outcome = 'failure';
      if (outcome === 'success' && this.#success.size > 0) {
        this.#success.emit({ name: this.name, context: this.context, durationMs });
      } else if (outcome === 'failure' && this.#failure.size > 0) {
        this.#failure.emit({ name: this.name, context: this.context, error, durationMs, slow });
      }
    }
    const stats = this.#stats;
    if (stats !== null && ranSince !== 0) stats.ran(outcome, stats.now() - ranSince);
    return this.#co.record(admission, outcome, slow);
  }

  #jitterMs(): number {
    if (this.#o.jitterFn === null) return 0;
    try {
      const ms = this.#o.jitterFn();
      return Number.isFinite(ms) && ms > 0 ? ms : 0;
    } catch (error) {
      this.#reportUserError('jitter', error, 'jitter function threw; using no jitter');
      return 0;
    }
  }

  #customTrips(counts: WindowCounts): boolean {
    const trip = this.#o.policy.trip;
    if (trip.kind !== 'custom' || trip.predicate === undefined) return false;
    try {
      return trip.predicate(counts);
    } catch (error) {
      this.#reportUserError('trip predicate', error, 'custom trip predicate threw; not tripping');
      return false;
    }
  }

  /**
   * A function the user gave threw: told to the logger every time, or, without one, as a process
   * warning once per breaker and function (as a throwing listener is), never silently.
   */
  #reportUserError(what: string, error: unknown, message: string): void {
    const logger = this.#o.logger;
    if (logger !== null) {
      logger.error({ breaker: this.name, err: error }, message);
      return;
    }
    if (this.#warned?.has(what) === true) return;
    (this.#warned ??= new Set()).add(what);
    process.emitWarning(
      `circuitry: breaker ${JSON.stringify(this.name.slice(0, 200))}: ${message}: ${String(error)}`,
      'CircuitryUserFunctionWarning',
    );
  }

  /** A state change of this process alone (see `StateChangeEvent.local`). */
  #emitLocal(from: CircuitState, to: CircuitState): void {
    this.#o.logger?.info?.(
      { breaker: this.name, from, to, local: true },
      'circuit breaker state changed here only',
    );
    if (this.#stateChange.size > 0) {
      this.#stateChange.emit({
        name: this.name,
        context: this.context,
        from,
        to,
        generation: this.#co.generation,
        local: true,
      });
    }
  }

  #emitTransition(transition: Transition): void {
    if (transition.to === 'open') this[baseGate]?.check(true);
    this.#stats?.transition(transition.from, transition.to);
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
}

/** Lets the factory hand a breaker its pre-resolved options, base name and context. */
export const initKey = Symbol('circuitry.init');
