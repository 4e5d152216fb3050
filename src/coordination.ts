import * as reducer from './core/reducer.js';
import { NO_RECORD } from './core/reducer.js';
import { outcomesCanTrip, shouldTrip } from './core/policy.js';
import type {
  AcquireResult,
  BreakerState,
  CircuitState,
  ForceOptions,
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
import { StoreError } from './errors.js';
import { LocalFallback, countsOf } from './fallback.js';
import type { KeptCounts, View } from './fallback.js';
import type { ResolvedOptions } from './options.js';
import type { PendingBatch } from './pending-batch.js';
import { NO_PROBES, addOutcome, emptyBatch, nextBatchId } from './pending-batch.js';
import type { KeptOutcomesOwner } from './store-health.js';
import { StoreHealth, isStoreTimeout } from './store-health.js';
import type { Awaitable, StateChangeMessage } from './store.js';

export type StoreOperation = 'acquire' | 'record' | 'inspect' | 'force';

/** One admitted call, as the breaker tracks it until its outcome is recorded. */
export interface Admission {
  readonly generation: number;
  readonly lease: string | null;
  /** Admitted without the store (during a store outage): the outcome goes to the local breaker. */
  readonly local: boolean;
  readonly start: number;
}

/** What coordination needs from the breaker that owns it: its name and its events. */
export interface CoordinationHost {
  readonly name: string;
  emitTransition(transition: Transition): void;
  rejected(reason: RejectReason, retryAfterMs: number): CircuitOpenError;
  storeError(operation: StoreOperation, error: unknown): void;
  /** Extra ms of jitter from the user's jitter function (0 without one). */
  jitterMs(): number;
  /** The custom trip predicate over `counts` (false for data policies). */
  customTrips(counts: WindowCounts): boolean;
  /** When the call starts, for durations (`NOT_TIMED` when nothing needs it). */
  startTime(): number;
  /** A transition another process made reached this one (for metrics). */
  learnt(from: CircuitState, to: CircuitState): void;
}

/** Outcomes of one breaker that `close()` could not confirm in the store, by kind of outcome. */
export interface UnwrittenOutcomes {
  readonly name: string;
  readonly successes: number;
  readonly failures: number;
  readonly ignored: number;
}

/** What one breaker holds for its store (see `Coordination.unwritten`). */
export interface BreakerLeftovers {
  readonly unwritten: UnwrittenOutcomes | null;
  readonly inDoubt: UnwrittenOutcomes | null;
}

function sumCounts(parts: ReadonlyArray<KeptCounts | null>): KeptCounts | null {
  let sum: { successes: number; failures: number; ignored: number } | null = null;
  for (const part of parts) {
    if (part === null) continue;
    sum ??= { successes: 0, failures: 0, ignored: 0 };
    sum.successes += part.successes;
    sum.failures += part.failures;
    sum.ignored += part.ignored;
  }
  return sum;
}

/** Batches handed to a store's `record` at least once (so a re-send of one is in doubt). */
const SENT = new WeakSet<OutcomeBatch>();

const ZERO_COUNTS: WindowCounts = Object.freeze({
  successes: 0,
  failures: 0,
  slow: 0,
  ignored: 0,
  total: 0,
  failureRate: 0,
  consecutiveFailures: 0,
});

export function isPromiseLike<T>(value: Awaitable<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * How one breaker coordinates with its store: this process's view of the shared state (answered
 * locally while fresh enough, or known open), buffered outcomes and their flush, what late replies
 * and pushes teach it, and — through `LocalFallback` and the store's `StoreHealth` — what happens
 * when the store does not answer.
 */
export class Coordination implements View, KeptOutcomesOwner {
  // The view of the shared state. Read by the breaker's in-process fast path.
  state: BreakerState = 'closed';
  override: Override | null = null;
  generation = 0;
  /** Whether the store has answered for this breaker (a generation of 0 then means: no record). */
  known = false;
  counts: WindowCounts = ZERO_COUNTS;
  /** Local time until which the breaker is known to be open (0: not known open). */
  openUntil = 0;
  /** Local time the view was last confirmed by the store. */
  viewAt = -Infinity;
  inFlight = 0;
  /** True during a store call of this breaker's own (see `#own`). */
  selfCall = false;
  /**
   * Under a count policy a success (or an ignored call) only resets a run of failures: the store
   * writes nothing when there is none, and the caller does not wait for it (see `record`).
   */
  readonly #resetOnly: boolean;

  readonly #host: CoordinationHost;
  readonly #o: ResolvedOptions<unknown>;
  readonly #health: StoreHealth;
  readonly #fallback = new LocalFallback();
  #buffer: PendingBatch | null = null;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  #flushing: Promise<void> | null = null;
  #resending: Promise<void> | null = null;
  /** Batches sent and not answered yet (a timed-out one stays until its late answer), with that answer. */
  readonly #writing = new Map<OutcomeBatch, Promise<unknown>>();
  /** Writes nobody waits for (a success under a count policy): `flush()` waits for them. */
  readonly #background = new Set<Promise<void>>();
  /** While closing: write whatever is held even if the store is being left alone. */
  #draining = false;
  // Smoothed duration of the probes this process ran (ms; 0: none yet), for half-open-full hints.
  #probeMs = 0;
  #probeStartedAt = 0;

  constructor(host: CoordinationHost, options: ResolvedOptions<unknown>) {
    this.#host = host;
    this.#o = options;
    this.#health = StoreHealth.of(options.store);
    const kind = options.policy.trip.kind;
    this.#resetOnly = kind === 'consecutive-failures' || kind === 'failures-in-window';
  }

  #timeoutMs(): number {
    return this.#health.timeoutMs(this.#o.storeTimeoutMs, this.#o.connectTimeoutMs);
  }

  // ---- admission ----------------------------------------------------------------------------

  admit(): Admission | CircuitOpenError | Promise<Admission | CircuitOpenError> {
    const o = this.#o;
    let now = 0;
    if (this.openUntil !== 0) {
      now = o.clock.now();
      if (now < this.openUntil) return this.#host.rejected('open', this.openUntil - now);
      this.openUntil = 0;
    }
    if (o.maxStalenessMs > 0 && this.state === 'closed' && this.override === null && this.known) {
      if (now === 0) now = o.clock.now();
      if (now - this.viewAt <= o.maxStalenessMs) {
        return { generation: this.generation, lease: null, local: false, start: this.#host.startTime() };
      }
    }
    const health = this.#health;
    if (this.#fallback.active || health.failures > 0) {
      if (now === 0) now = o.clock.now();
      if (!health.usable(now)) return this.#admitWithoutStore(now);
    }
    let result: Awaitable<AcquireResult>;
    try {
      result = this.#own(() => o.store.acquire(this.#host.name, o.policy));
    } catch (error) {
      return this.#acquireFailed(error);
    }
    if (isPromiseLike(result)) {
      return health
        .call(result, this.#timeoutMs(), 'acquire', (late) => this.#lateAcquired(late))
        .then(
          (r) => this.#acquired(r),
          (error: unknown) => this.#acquireFailed(error),
        );
    }
    return this.#acquired(result);
  }

  /**
   * The local-first admission alone: the generation of a closed breaker without override whose
   * view is fresh enough to admit without asking the store, or -1 (then `admit`). Reads the clock.
   */
  admitFromView(): number {
    const o = this.#o;
    if (this.openUntil !== 0 || o.maxStalenessMs <= 0 || this.state !== 'closed' || this.override !== null) {
      return -1;
    }
    if (!this.known || o.clock.now() - this.viewAt > o.maxStalenessMs) return -1;
    return this.generation;
  }

  /**
   * Records one closed-state outcome of a call `admitFromView` admitted (no lease, not local, not
   * slow). Returns a promise only when the caller should wait for the store.
   */
  recordViewed(generation: number, outcome: Outcome): Promise<void> | undefined {
    if (this.#o.flushIntervalMs > 0) {
      this.inFlight -= 1;
      this.#bufferOutcome(generation, outcome, false);
      return undefined;
    }
    return this.record({ generation, lease: null, local: false, start: 0 }, outcome, false);
  }

  #acquired(result: AcquireResult): Admission | CircuitOpenError {
    if (!isAcquireResult(result)) {
      return this.#acquireFailed(new StoreError('Store acquire returned a malformed reply'));
    }
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    this.#absorbAcquire(result);
    this.#storeAnswered();
    if (result.admitted) {
      if (result.lease !== null) this.#probeStartedAt = performance.now();
      return {
        generation: result.generation,
        lease: result.lease,
        local: false,
        start: this.#host.startTime(),
      };
    }
    return this.#reject(result.reason ?? 'open', result.retryAfterMs);
  }

  /**
   * Rejects. A `half-open-full` rejection's `retryAfterMs` is a hint a queue can use: twice the
   * probe duration this process observed (1 s before it saw one), never later than the store's
   * answer (when the oldest probe lease expires, `probeLeaseMs` after it was granted).
   */
  #reject(reason: RejectReason, retryAfterMs: number): CircuitOpenError {
    if (reason === 'half-open-full') {
      const hint = this.#probeMs === 0 ? 1_000 : Math.max(1, Math.ceil(2 * this.#probeMs));
      retryAfterMs = Math.min(retryAfterMs, hint);
    }
    return this.#host.rejected(reason, retryAfterMs);
  }

  #absorbAcquire(result: AcquireResult): void {
    // Generation 0 is the store saying it holds no record (it expired, or was never needed): the
    // generation this process knew is gone, and outcomes go under 0 until a record exists again.
    if (result.generation < this.generation && result.generation !== NO_RECORD) return;
    const o = this.#o;
    this.known = true;
    this.generation = result.generation;
    this.state = result.state;
    this.override = result.override;
    if (o.maxStalenessMs > 0) this.viewAt = o.clock.now();
    if (!result.admitted && result.reason === 'open' && result.override !== 'metrics-only') {
      this.openUntil = o.clock.now() + result.retryAfterMs;
    }
  }

  /**
   * An acquire that timed out was answered after all. What it says updates the view (a late
   * "open" closes the door at once), the transition it made is reported (this process made it),
   * and a probe lease nobody will use is given back at once instead of blocking half-open until
   * it expires.
   */
  #lateAcquired(result: AcquireResult): void {
    if (!isAcquireResult(result)) return;
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    this.#absorbAcquire(result);
    if (result.admitted && result.lease !== null) {
      const o = this.#o;
      const release: OutcomeBatch = {
        generation: result.generation,
        successes: 0,
        failures: 0,
        trailingFailures: 0,
        slow: 0,
        ignored: 0,
        probes: [{ lease: result.lease, outcome: 'ignored' }],
        random: 0,
        id: nextBatchId(),
      };
      try {
        const written = this.#own(() => o.store.record(this.#host.name, o.policy, release));
        if (isPromiseLike(written)) {
          this.#health
            .call(written, this.#timeoutMs(), 'record', (late) => this.#applyUpdate(late))
            .then(
              (r) => this.#applyUpdate(r),
              () => undefined, // the lease expires on its own
            );
        } else {
          this.#applyUpdate(written);
        }
      } catch {
        // the lease expires on its own
      }
    }
  }

  #acquireFailed(error: unknown): Admission | CircuitOpenError {
    this.#storeFailed('acquire', error);
    const o = this.#o;
    const now = o.clock.now();
    const wait = this.#fallback.refuseTimedOutProbe(o.onStoreFailure, this, o.policy, now);
    if (wait !== null) return this.#host.rejected('open', wait);
    return this.#admitWithoutStore(now);
  }

  #admitWithoutStore(now: number): Admission | CircuitOpenError {
    const o = this.#o;
    const result = this.#fallback.admit(o.onStoreFailure, this, o.policy, now, this.#health.downUntil);
    if ('transition' in result && result.transition !== null) this.#logLocalTransition(result.transition);
    if (result.admitted) {
      return {
        generation: result.generation,
        lease: result.lease,
        local: true,
        start: this.#host.startTime(),
      };
    }
    return this.#reject(result.reason ?? 'open', result.retryAfterMs);
  }

  // ---- the in-process path of a MemoryStore ---------------------------------------------------

  /** A call was admitted by the in-process path (a closed `MemoryStore` breaker, nothing to time). */
  admittedClosed(generation: number): void {
    this.known = true;
    if (generation > this.generation) {
      this.generation = generation;
      this.state = 'closed';
      this.override = null;
    }
    this.inFlight += 1;
  }

  // ---- recording outcomes -------------------------------------------------------------------

  /** Records one outcome. Returns a promise only when the caller should wait for the store. */
  record(admission: Admission, outcome: Outcome, slow: boolean): Promise<void> | undefined {
    this.inFlight -= 1;
    const o = this.#o;
    if (admission.lease !== null && !admission.local && this.#probeStartedAt !== 0) {
      const ms = performance.now() - this.#probeStartedAt;
      this.#probeMs = this.#probeMs === 0 ? ms : this.#probeMs + (ms - this.#probeMs) / 4;
    }
    if (admission.local) {
      const transition = this.#fallback.settle(
        o.onStoreFailure,
        this,
        o.policy,
        o.clock.now(),
        admission,
        outcome,
        slow,
        () => this.#host.jitterMs(),
      );
      if (transition !== null) this.#logLocalTransition(transition);
      if (this.#fallback.holdsOutcomes) this.#health.keep(this);
      return undefined;
    }
    if (admission.lease === null && o.flushIntervalMs > 0) {
      this.#bufferOutcome(admission.generation, outcome, slow);
      return undefined;
    }
    const failures = outcome === 'failure' ? 1 : 0;
    const canTrip = outcomesCanTrip(o.policy.trip, outcome === 'success' ? 1 : 0, failures);
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
            // What an open this outcome may start needs (a success can trip a failure rate).
            random: canTrip ? Math.random() : 0,
            jitterMs: canTrip ? this.#host.jitterMs() : 0,
            id: nextBatchId(),
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
            jitterMs: failures === 1 ? this.#host.jitterMs() : 0,
            id: nextBatchId(),
          };
    if (admission.lease === null && outcome !== 'failure' && this.#resetOnly) {
      // Under a count policy a success only resets a run of failures, which other processes may
      // have built since this call was admitted: it is always sent (skipping it when the run
      // looked empty at admission let non-consecutive failures trip), and the store writes only
      // when there is a run to reset. Nothing the caller does next depends on it, so the caller
      // does not wait: a healthy call costs its caller one round trip (the acquire). The write
      // still leaves now, in completion order, and `flush()`/`close()` wait for it.
      const writing = this.#write(batch);
      if (writing !== undefined) {
        const background = this.#background;
        background.add(writing);
        void writing.finally(() => background.delete(writing));
      }
      return undefined;
    }
    return this.#write(batch);
  }

  /** Sends one batch to the store. Never rejects: a store failure never replaces the call's outcome. */
  #write(batch: OutcomeBatch): Promise<void> | undefined {
    const o = this.#o;
    const health = this.#health;
    // A batch sent before (an in-doubt one being re-sent) may have landed: if it is not sent now,
    // it stays in doubt, under its id, never merged into a new batch that would count it again.
    const sentBefore = SENT.has(batch);
    if (!this.#draining && health.failures > 0 && !health.usable(o.clock.now())) {
      this.#keep(batch, sentBefore);
      return undefined;
    }
    let result: Awaitable<UpdateResult>;
    try {
      result = this.#own(() => o.store.record(this.#host.name, o.policy, batch));
    } catch (error) {
      this.#storeFailed('record', error);
      this.#keep(batch, sentBefore);
      return undefined;
    }
    SENT.add(batch);
    if (isPromiseLike(result)) {
      const writing = this.#writing;
      writing.set(
        batch,
        Promise.resolve(result).catch(() => undefined),
      );
      return health
        .call(
          result,
          this.#timeoutMs(),
          'record',
          (late) => {
            writing.delete(batch);
            this.#lateRecorded(late);
          },
          // Timed out, then failed: it may or may not have landed. Kept under its id.
          () => {
            writing.delete(batch);
            this.#keep(batch, true);
          },
        )
        .then(
          (r) => {
            writing.delete(batch);
            return this.#recorded(r);
          },
          (error: unknown) => {
            this.#storeFailed('record', error);
            // A write that failed may still have landed (the reply was lost): kept under its id,
            // so a store that remembers ids counts it once. One that timed out is kept only if
            // the store later says it failed (above); if it lands, it was counted.
            if (!isStoreTimeout(error)) {
              writing.delete(batch);
              this.#keep(batch, true);
            }
          },
        );
    }
    return this.#recorded(result);
  }

  #recorded(result: UpdateResult): Promise<void> | undefined {
    if (!isUpdateResult(result)) {
      this.#storeFailed('record', new StoreError('Store record returned a malformed reply'));
      return undefined;
    }
    this.#storeAnswered();
    this.#applyUpdate(result);
    return this.#tripCustom(result);
  }

  /** A write that timed out landed after all: what it changed is learnt and reported. */
  #lateRecorded(result: UpdateResult): void {
    if (!isUpdateResult(result)) return;
    this.#applyUpdate(result);
    void this.#tripCustom(result);
  }

  #tripCustom(result: UpdateResult): Promise<void> | undefined {
    const snapshot = result.snapshot;
    if (
      this.#o.policy.trip.kind !== 'custom' ||
      result.stale ||
      snapshot.state !== 'closed' ||
      snapshot.counts.failures === 0 ||
      !this.#host.customTrips(snapshot.counts)
    ) {
      return undefined;
    }
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
      jitterMs: this.#host.jitterMs(),
      id: nextBatchId(),
    });
  }

  #keep(batch: OutcomeBatch, inDoubt: boolean): void {
    this.#fallback.keep(batch, inDoubt, this.#o.clock.now());
    if (this.#fallback.holdsOutcomes) this.#health.keep(this);
  }

  /** The store answered a call of this breaker in time. */
  #storeAnswered(): void {
    if (this.#health.succeeded()) {
      this.#o.logger?.warn({ breaker: this.#host.name }, 'circuit breaker store is reachable again');
    }
    this.#fallback.stop();
    // At once, before this call's own outcome: kept outcomes are older and must land first.
    if (this.#fallback.holdsOutcomes) void this.resendKept();
  }

  /**
   * Writes what was kept while the store did not answer: called by the store's health as soon as
   * any breaker's call succeeds, and by `flush()`.
   */
  resendKept(): Promise<void> {
    if (this.#resending !== null) return this.#resending;
    if (!this.#fallback.holdsOutcomes) return Promise.resolve();
    const resending = this.#resend().finally(() => {
      this.#resending = null;
    });
    this.#resending = resending;
    return resending;
  }

  async #resend(): Promise<void> {
    const unsentGeneration = this.#fallback.unsentGeneration;
    // Admitted before this process ever heard from the store: closed-state calls, so they count
    // in the generation the store is in now, once known.
    if (unsentGeneration === 0 && !this.known) await this.#learnGeneration();
    if (this.#fallback.unsentGeneration === 0 && !this.known) {
      this.#health.keep(this); // still unknown: try again when the store answers
      return;
    }
    const batches = this.#fallback.take(this.generation, this.#o.policy, () => this.#host.jitterMs());
    // Written under the generation they were admitted in: if the shared state moved on meanwhile,
    // the store fences them off rather than counting them twice or wrongly.
    await Promise.all(batches.map((batch) => this.#write(batch) ?? Promise.resolve()));
  }

  /** Reads the breaker's generation (0 when the store holds no record) without taking a probe. */
  async #learnGeneration(): Promise<void> {
    const o = this.#o;
    try {
      const snapshot = await this.#callStore('inspect', () => o.store.inspect(this.#host.name, o.policy));
      if (snapshot !== null) {
        this.#storeAnswered();
        this.#absorb(snapshot);
        return;
      }
      // No record: the breaker is closed everywhere, and a closed acquire takes no lease.
      const acquired = await this.#callStore('acquire', () => o.store.acquire(this.#host.name, o.policy));
      if (isAcquireResult(acquired)) {
        if (acquired.transition !== null) this.#host.emitTransition(acquired.transition);
        this.#absorbAcquire(acquired);
        this.#storeAnswered();
      }
    } catch (error) {
      this.#storeFailed('inspect', error);
    }
  }

  #applyUpdate(result: UpdateResult): void {
    if (!isUpdateResult(result)) return;
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    this.#absorb(result.snapshot);
  }

  /** Takes a snapshot from the store as this process's view. */
  #absorb(snapshot: Snapshot): void {
    if (snapshot.generation < this.generation) return;
    this.known = true;
    this.generation = snapshot.generation;
    this.state = snapshot.state;
    this.override = snapshot.override;
    this.counts = snapshot.counts;
    const knownOpen = snapshot.state === 'open' && snapshot.override === null && snapshot.retryAfterMs > 0;
    // The local clock is read only when the view needs it: it is a visible cost on the hot path.
    if (knownOpen || this.#o.maxStalenessMs > 0) {
      const localNow = this.#o.clock.now();
      this.viewAt = localNow;
      this.openUntil = knownOpen ? localNow + snapshot.retryAfterMs : 0;
    } else {
      this.openUntil = 0;
    }
  }

  /** Settles an outcome of the in-process path whose precondition no longer held. */
  settleMoved(generation: number, outcome: Outcome): void {
    void this.record({ generation, lease: null, local: false, start: -Infinity }, outcome, false);
  }

  /** A transition made by the in-process path: report it and take the new state. */
  movedInProcess(transition: Transition): void {
    this.#host.emitTransition(transition);
    const o = this.#o;
    const snapshot = o.store.inspect(this.#host.name, o.policy) as Snapshot | null;
    if (snapshot !== null) this.#absorb(snapshot);
  }

  // ---- pushes -------------------------------------------------------------------------------

  /** A state change made by another process (or another breaker object) reached us. */
  notify(message: StateChangeMessage): void {
    if (message.generation <= this.generation) return;
    if (!this.selfCall) this.#host.learnt(message.from, message.to);
    const localNow = this.#o.clock.now();
    this.known = true;
    this.generation = message.generation;
    const to = message.to;
    if (message.override !== undefined) {
      this.override = message.override;
    } else {
      this.override =
        to === 'forced-open' || to === 'forced-closed'
          ? to
          : this.override === 'metrics-only'
            ? 'metrics-only'
            : null;
    }
    if (to !== 'forced-open' && to !== 'forced-closed') this.state = to;
    // A metrics-only breaker never rejects, in this process as in the one that tripped it.
    this.openUntil =
      to === 'open' && this.override !== 'metrics-only' && message.openUntil > message.now
        ? localNow + (message.openUntil - message.now)
        : 0;
    // Only a change to closed is a view worth trusting without asking; anything else is asked.
    this.viewAt = to === 'closed' ? localNow : -Infinity;
  }

  /** Pushes may have been missed: the next call asks the store (a known open still stands). */
  resync(): void {
    this.viewAt = -Infinity;
  }

  // ---- buffering (flushIntervalMs > 0) ------------------------------------------------------

  #bufferOutcome(generation: number, outcome: Outcome, slow: boolean): void {
    let buffer = this.#buffer;
    if (buffer !== null && buffer.generation !== generation) {
      void this.#flushBuffer();
      buffer = null;
    }
    if (buffer === null) {
      buffer = emptyBatch(generation);
      this.#buffer = buffer;
      this.#flushTimer = setTimeout(() => void this.#flushBuffer(), this.#o.flushIntervalMs);
      this.#flushTimer.unref?.();
    }
    addOutcome(buffer, outcome, slow);
    // Written at once when this outcome could trip the policy (a success can, under a failure rate).
    const trip = this.#o.policy.trip;
    if (
      outcomesCanTrip(trip, outcome === 'success' ? 1 : 0, outcome === 'failure' ? 1 : 0) &&
      this.#couldTrip(buffer)
    ) {
      void this.#flushBuffer();
    }
  }

  /** Whether the buffered failures, with the counts last seen, could trip the policy: then write now. */
  #couldTrip(buffer: PendingBatch): boolean {
    const seen = this.counts;
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
      ? this.#host.customTrips(merged)
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
      jitterMs: outcomesCanTrip(this.#o.policy.trip, buffer.successes, buffer.failures)
        ? this.#host.jitterMs()
        : 0,
      id: nextBatchId(),
    });
    if (written === undefined) return undefined;
    const flushing = written.finally(() => {
      if (this.#flushing === flushing) this.#flushing = null;
    });
    this.#flushing = flushing;
    return flushing;
  }

  /** Writes buffered outcomes now, and those kept while the store did not answer. */
  async flush(): Promise<void> {
    if (this.#background.size > 0) await Promise.all(this.#background);
    if (this.#flushing !== null) await this.#flushing;
    const pending = this.#flushBuffer();
    if (pending !== undefined) await pending;
    await this.resendKept();
  }

  /**
   * For `close()`: like `flush`, but tries the store even while it is being left alone after a
   * failure (one attempt per batch, each bounded by the store timeout).
   */
  async drain(deadline: number): Promise<void> {
    this.#draining = true;
    try {
      await this.flush();
      // Writes that timed out may still be answered: wait for them, then write what their
      // failures gave back, until nothing is in flight or `deadline` (performance.now()) passes.
      while (this.#writing.size > 0 && performance.now() < deadline) {
        await Promise.all(this.#writing.values());
        await new Promise((resolve) => setTimeout(resolve, 20));
        await this.flush();
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * What is buffered or kept and not confirmed by the store, or null when nothing is: `unwritten`
   * never reached it (buffered, or kept while it did not answer), `inDoubt` was sent and got no
   * answer (a write in flight, or one whose reply was lost), so the store may hold it already.
   */
  unwritten(): BreakerLeftovers | null {
    const kept = this.#fallback.keptCounts();
    const unwritten = sumCounts([
      kept?.unsent ?? null,
      countsOf(this.#buffer === null ? [] : [this.#buffer]),
    ]);
    const inDoubt = sumCounts([kept?.inDoubt ?? null, countsOf([...this.#writing.keys()])]);
    if (unwritten === null && inDoubt === null) return null;
    return {
      unwritten: unwritten === null ? null : { name: this.#host.name, ...unwritten },
      inDoubt: inDoubt === null ? null : { name: this.#host.name, ...inDoubt },
    };
  }

  /** True while the breaker holds a permit or unwritten outcomes: the registry must keep it. */
  busy(): boolean {
    return (
      this.inFlight > 0 ||
      this.#buffer !== null ||
      this.#flushing !== null ||
      this.#background.size > 0 ||
      this.#fallback.holdsOutcomes
    );
  }

  // ---- operator calls -----------------------------------------------------------------------

  async inspect(): Promise<Snapshot> {
    const o = this.#o;
    try {
      const snapshot = await this.#callStore('inspect', () => o.store.inspect(this.#host.name, o.policy));
      if (snapshot !== null) this.#absorb(snapshot);
      return snapshot ?? reducer.snapshot(reducer.emptyRecord(), o.policy, o.clock.now());
    } catch (error) {
      this.#storeFailed('inspect', error);
      return this.#fallback.snapshot(o.onStoreFailure, this, o.policy, o.clock.now(), this.#health.downUntil);
    }
  }

  async force(override: Override | null, options?: ForceOptions): Promise<Snapshot> {
    const o = this.#o;
    const result = await this.#callStore('force', () =>
      options === undefined
        ? o.store.force(this.#host.name, o.policy, override)
        : o.store.force(this.#host.name, o.policy, override, options),
    );
    if (!isUpdateResult(result)) throw new StoreError('Store force returned a malformed reply');
    this.openUntil = 0;
    this.#applyUpdate(result);
    return result.snapshot;
  }

  /**
   * Runs a store call of this breaker's own. An in-process store pushes the transition it makes
   * before the call returns: `notify` must not count that as one learnt from another process.
   */
  #own<T>(call: () => T): T {
    this.selfCall = true;
    try {
      return call();
    } finally {
      this.selfCall = false;
    }
  }

  #callStore<T>(operation: StoreOperation, call: () => Awaitable<T>): Awaitable<T> {
    const result = this.#own(call);
    if (!isPromiseLike(result)) return result;
    return this.#health.call(result, this.#timeoutMs(), operation);
  }

  #storeFailed(operation: StoreOperation, error: unknown): undefined {
    const o = this.#o;
    const now = o.clock.now();
    this.#health.failed(now);
    this.#host.storeError(operation, error);
    this.#health.logFailure(o.logger, now, {
      breaker: this.#host.name,
      operation,
      err: error,
      policy: o.onStoreFailure,
    });
    return undefined;
  }

  #logLocalTransition(transition: Transition): void {
    this.#o.logger?.warn(
      { breaker: this.#host.name, from: transition.from, to: transition.to },
      'circuit breaker changed state locally while its store is unreachable',
    );
  }
}

function isAcquireResult(result: unknown): result is AcquireResult {
  return (
    typeof result === 'object' && result !== null && typeof (result as AcquireResult).admitted === 'boolean'
  );
}

function isUpdateResult(result: unknown): result is UpdateResult {
  return (
    typeof result === 'object' &&
    result !== null &&
    typeof (result as UpdateResult).snapshot === 'object' &&
    (result as UpdateResult).snapshot !== null
  );
}
