import { Admitter, isAcquireResult } from './admission.js';
import type { Admission, AdmitterOwner, Admitted } from './admission.js';
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
import { LocalFallback } from './fallback.js';
import { OutcomeWriter } from './outcome-writer.js';
import type { WriterOwner } from './outcome-writer.js';
import type { ResolvedOptions } from './options.js';
import { NO_PROBES } from './pending-batch.js';
import { StoreHealth } from './store-health.js';
import { LocalThrottle } from './throttle.js';
import type { Reporter } from './quorum.js';
import type { Awaitable, StateChangeMessage } from './store.js';

/**
 * A store call the breaker makes: `acquire` (admit a call), `record` (write outcomes), `inspect`
 * (read the state), `force` (set or clear an override).
 */
export type StoreOperation = 'acquire' | 'record' | 'inspect' | 'force';

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
  /** Who this breaker's failures are reported as (`quorum`), or null without one. */
  readonly reporter: Reporter | null;
  /** A state change of this process alone (an open below the quorum, and its end). */
  emitLocal(from: CircuitState, to: CircuitState): void;
}

/** Outcomes of one breaker that `close()` could not confirm in the store, by kind of outcome. */
export interface UnwrittenOutcomes {
  /** The breaker's name. */
  readonly name: string;
  /** Calls that counted as successes. */
  readonly successes: number;
  /** Calls that counted as failures. */
  readonly failures: number;
  /** Calls that counted as neither. */
  readonly ignored: number;
}

/** What one breaker holds for its store (see `Coordination.unwritten`). */
export interface BreakerLeftovers {
  readonly unwritten: UnwrittenOutcomes | null;
  readonly inDoubt: UnwrittenOutcomes | null;
}

/** The counts of a breaker nothing is known of yet. */
export const ZERO_COUNTS: WindowCounts = Object.freeze({
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
 * when the store does not answer. Whether a call may run is the `Admitter`'s (`admission.ts`),
 * which reads this view and hands it what the store answers; outcomes go out through the
 * `OutcomeWriter` (`outcome-writer.ts`).
 */
export class Coordination implements AdmitterOwner, WriterOwner {
  // The view of the shared state. Read by the breaker's in-process fast path.
  state: BreakerState = 'closed';
  override: Override | null = null;
  /**
   * Called when this process's view goes from turning callers away (open, half-open,
   * forced-open) to admitting them, however it learnt it (its own write, an answer, a push); null
   * while nobody listens. The BullMQ integration brings deferred jobs back with it.
   */
  admitting: Set<() => void> | null = null;
  generation = 0;
  /** Whether the store has answered for this breaker (a generation of 0 then means: no record). */
  known = false;
  counts: WindowCounts = ZERO_COUNTS;
  /** Local time until which the breaker is known to be open (0: not known open). */
  openUntil = 0;
  /** Local time the view was last confirmed by the store. */
  viewAt = -Infinity;
  /**
   * Local time the recovery ramp after the last close ends (0: none running; see `recovery`). Set
   * and cleared by the `Admitter`, which runs the ramp.
   */
  rampUntil = 0;
  inFlight = 0;
  /** True during a store call of this breaker's own (see `own`). */
  selfCall = false;
  /**
   * Under a count policy a success (or an ignored call) only resets a run of failures: the store
   * writes nothing when there is none, and the caller does not wait for it (see `record`).
   */
  readonly #resetOnly: boolean;
  /** Whether the store can carry a waiting outcome on an acquire (`Store.recordThenAcquire`). */
  readonly #carries: boolean;

  readonly #host: CoordinationHost;
  readonly #o: ResolvedOptions<unknown>;
  readonly #health: StoreHealth;
  readonly #fallback = new LocalFallback();
  /** Where outcomes go: written, buffered, kept while the store does not answer, re-sent. */
  readonly #writer: OutcomeWriter;
  /** The adaptive throttle (`trip: adaptiveThrottle()`), or null. */
  readonly #throttle: LocalThrottle | null;
  /** Whether a call may run: the view, the ramp, the store's acquire, the queue for a slot. */
  readonly #admitter: Admitter;

  constructor(host: CoordinationHost, options: ResolvedOptions<unknown>) {
    this.#host = host;
    this.#o = options;
    this.#health = StoreHealth.of(options.store);
    this.#writer = new OutcomeWriter(this, host, options, this.#health, this.#fallback);
    const kind = options.policy.trip.kind;
    this.#resetOnly = kind === 'consecutive-failures' || kind === 'failures-in-window';
    this.#carries = typeof options.store.recordThenAcquire === 'function';
    this.#throttle = options.throttle === null ? null : new LocalThrottle(options.throttle);
    this.#admitter = new Admitter(
      this,
      host,
      options,
      this.#health,
      this.#fallback,
      this.#writer,
      this.#throttle,
    );
  }

  /** The share of calls the adaptive throttle turns away now (0 without one), for metrics. */
  throttleRate(): number {
    return this.#throttle === null ? 0 : this.#throttle.rejectionRate(this.#o.clock.now());
  }

  storeTimeoutMs(): number {
    return this.#health.timeoutMs(this.#o.storeTimeoutMs, this.#o.connectTimeoutMs);
  }

  // ---- admission (`admission.ts`) -------------------------------------------------------------

  /** Asks for permission to run a call: an admission, or the rejection (see `Admitter.admit`). */
  admit(): Admitted | Promise<Admitted> {
    return this.#admitter.admit();
  }

  /**
   * The local-first admission alone: the generation the fresh view admits a call under without
   * asking the store, or -1 (then `admit`; see `Admitter.admitFromView`).
   */
  admitFromView(): number {
    return this.#admitter.admitFromView();
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
    if (this.#throttle !== null && outcome !== 'failure') this.#throttle.accept(o.clock.now());
    if (outcome === 'success') this.#localReopens = 0;
    // How long the call held its probe lease or slot, for the hints of later rejections.
    this.#admitter.ended(admission, outcome);
    const slot = admission.slot;
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
      if (transition !== null) this.logLocalTransition(transition);
      if (this.#fallback.holdsOutcomes) this.#health.keep(this.#writer);
      return undefined;
    }
    // A call holding a slot is never buffered: its outcome frees the slot, and waiting for a flush
    // would keep the slot from the next caller.
    if (admission.lease === null && o.flushIntervalMs > 0 && slot === null) {
      this.#writer.buffer(admission.generation, outcome, slow);
      return undefined;
    }
    const failures = outcome === 'failure' ? 1 : 0;
    const canTrip = outcomesCanTrip(o.policy.trip, outcome === 'success' ? 1 : 0, failures);
    // The slot travels with the outcome: the store gives it back in the same write, even when the
    // write otherwise changes nothing (a success with no run to reset, a stale generation). Inside
    // the literal: spreading a batch to add `slots` costs ~2 µs a call on Node 20.
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
            id: this.#writer.nextId(),
            idFloor: this.#writer.idFloor(),
            ...(slot === null ? {} : { slots: [slot] }),
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
            id: this.#writer.nextId(),
            idFloor: this.#writer.idFloor(),
            ...(slot === null ? {} : { slots: [slot] }),
          };
    if (slot !== null) this.#admitter.slotGivenBack();
    if (
      admission.lease === null &&
      outcome !== 'failure' &&
      (this.#resetOnly || outcome === 'ignored' || !this.#successMayTrip())
    ) {
      // Under a count policy a success only resets a run of failures, which other processes may
      // have built since this call was admitted: it is always sent (skipping it when the run
      // looked empty at admission let non-consecutive failures trip), and the store writes only
      // when there is a run to reset. Under a failure rate a success is counted, and it can open
      // the breaker only when the counts last seen say it may (then the caller waits, below).
      // Otherwise nothing the caller does next depends on it: the caller does not wait, and
      // `flush()`/`close()` do. It leaves by the end of this event-loop turn, in completion
      // order, and a call this breaker admits before then carries it on its acquire (a store
      // with `recordThenAcquire`): one round trip per call, not two. A slot is given back at
      // once: callers in other processes may be waiting for it.
      if (this.#carries && slot === null) this.#writer.carry(batch);
      else this.#writer.writeInBackground(batch);
      return undefined;
    }
    return this.#writer.write(batch);
  }

  /**
   * Records one closed-state outcome of a call `admitFromView` admitted (no lease, not local, not
   * slow). Returns a promise only when the caller should wait for the store.
   */
  recordViewed(generation: number, outcome: Outcome): Promise<void> | undefined {
    if (this.#o.flushIntervalMs > 0) {
      this.inFlight -= 1;
      this.#writer.buffer(generation, outcome, false);
      return undefined;
    }
    return this.record({ generation, lease: null, slot: null, local: false, start: 0 }, outcome, false);
  }

  /**
   * Whether one more success could open the breaker, by the counts last seen: only under a
   * failure rate (a success can complete `minimumCalls`) or a custom policy (anything can).
   */
  #successMayTrip(): boolean {
    const trip = this.#o.policy.trip;
    if (trip.kind !== 'failure-rate') return trip.kind === 'custom';
    const c = this.counts;
    const successes = c.successes + 1;
    const total = successes + c.failures;
    return shouldTrip(trip, { ...c, successes, total, failureRate: c.failures / total });
  }

  /** A write was answered in time (for the writer). */
  writeAnswered(result: UpdateResult): Promise<void> | undefined {
    if (!isUpdateResult(result)) {
      this.storeFailed('record', new StoreError('Store record returned a malformed reply'));
      return undefined;
    }
    this.storeAnswered();
    this.applyUpdate(result);
    if (result.belowQuorum === true) this.#openLocally();
    return this.#tripCustom(result);
  }

  /** A write that timed out landed after all: what it changed is learnt and reported. */
  writeAnsweredLate(result: UpdateResult): void {
    if (!isUpdateResult(result)) return;
    this.applyUpdate(result);
    if (result.belowQuorum === true) this.#openLocally();
    void this.#tripCustom(result);
  }

  // ---- below a quorum (`quorum`) --------------------------------------------------------------

  /** Local time until which this process alone keeps the breaker open (0: it does not). */
  localOpenUntil = 0;
  /** Local opens in a row, for backoff; a success ends the run. */
  #localReopens = 0;

  /**
   * The policy tripped on this process's failures, but too few processes reported failures for a
   * shared open: this process opens on its own for an open period (with backoff), and only here.
   */
  #openLocally(): void {
    const o = this.#o;
    if (this.localOpenUntil !== 0) return;
    const now = o.clock.now();
    const ms = reducer.openPeriodMs(o.policy, this.#localReopens, Math.random(), this.#host.jitterMs());
    this.localOpenUntil = now + Math.max(1, ms);
    this.#localReopens += 1;
    this.#host.emitLocal('closed', 'open');
  }

  /** While open here only: the rejection; once the period is over, null (and the event). */
  localOpen(now: number): CircuitOpenError | null {
    if (now < this.localOpenUntil) return this.#host.rejected('local-open', this.localOpenUntil - now);
    this.localOpenUntil = 0;
    this.#host.emitLocal('open', 'closed');
    return null;
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
    return this.#writer.write({
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
      id: this.#writer.nextId(),
      idFloor: this.#writer.idFloor(),
    });
  }

  /** The store answered a call of this breaker in time. */
  storeAnswered(): void {
    if (this.#health.succeeded()) {
      this.#o.logger?.warn({ breaker: this.#host.name }, 'circuit breaker store is reachable again');
    }
    this.#fallback.stop();
    // At once, before this call's own outcome: kept outcomes are older and must land first.
    if (this.#fallback.holdsOutcomes) void this.#writer.resendKept();
  }

  /** Reads the breaker's generation (0 when the store holds no record) without taking a probe. */
  async learnGeneration(): Promise<void> {
    const o = this.#o;
    try {
      const snapshot = await this.#callStore('inspect', () => o.store.inspect(this.#host.name, o.policy));
      if (snapshot !== null) {
        this.storeAnswered();
        this.#absorb(snapshot);
        return;
      }
      // No record: the breaker is closed everywhere, and a closed acquire takes no lease (with a
      // concurrency limit it takes a slot, given back at once).
      const acquired = await this.#callStore('acquire', () => o.store.acquire(this.#host.name, o.policy));
      if (isAcquireResult(acquired)) {
        if (acquired.transition !== null) this.#host.emitTransition(acquired.transition);
        this.absorbAcquire(acquired);
        this.storeAnswered();
        this.#admitter.giveBack(acquired);
      }
    } catch (error) {
      this.storeFailed('inspect', error);
    }
  }

  /** Takes a write's answer as the view, and reports the transition it made. */
  applyUpdate(result: UpdateResult): void {
    if (!isUpdateResult(result)) return;
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    this.#absorb(result.snapshot);
  }

  /** Takes a snapshot from the store as this process's view. */
  #absorb(snapshot: Snapshot): void {
    if (snapshot.generation < this.generation) return;
    this.#take(snapshot.generation, snapshot.state, snapshot.override);
    this.counts = snapshot.counts;
    if (snapshot.closedAt > 0) this.#admitter.learnClose(snapshot.closedAt, snapshot.now);
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

  /** Takes the store's word for the state, telling `admitting` when it now admits callers. */
  #take(generation: number, state: BreakerState, override: Override | null): void {
    const watched = this.admitting !== null && turnsAway(this.state, this.override);
    this.known = true;
    this.generation = generation;
    this.state = state;
    this.override = override;
    if (watched) this.#admittingIf();
  }

  /** Takes an acquire's answer as the view (see `Admitter`). */
  absorbAcquire(result: AcquireResult): void {
    // Generation 0 is the store saying it holds no record (it expired, or was never needed): the
    // generation this process knew is gone, and outcomes go under 0 until a record exists again.
    if (result.generation < this.generation && result.generation !== NO_RECORD) return;
    const o = this.#o;
    this.#take(result.generation, result.state, result.override);
    if (o.maxStalenessMs > 0) this.viewAt = o.clock.now();
    if (!result.admitted && result.reason === 'open' && result.override !== 'metrics-only') {
      this.openUntil = o.clock.now() + result.retryAfterMs;
    }
    const closedAt = result.closedAt;
    if (closedAt !== undefined && closedAt > 0) this.#admitter.learnClose(closedAt, result.now);
  }

  /** Settles an outcome of the in-process path whose precondition no longer held. */
  settleMoved(generation: number, outcome: Outcome): void {
    void this.record({ generation, lease: null, slot: null, local: false, start: -Infinity }, outcome, false);
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
    const watched = this.admitting !== null && turnsAway(this.state, this.override);
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
    // A close after rejecting (probes succeeded, a reset, a forced-open cleared) starts the ramp.
    if (to === 'closed' && message.from !== 'closed' && message.from !== 'forced-closed') {
      this.#admitter.learnClose(message.now, message.now);
    }
    if (watched) this.#admittingIf();
  }

  /** Tells the `admitting` listeners when the view, which turned callers away, now admits them. */
  #admittingIf(): void {
    const listeners = this.admitting;
    if (listeners === null || turnsAway(this.state, this.override)) return;
    for (const listener of [...listeners]) {
      try {
        listener();
      } catch {
        // A listener's failure is its own; the others still hear of it.
      }
    }
  }

  /** Pushes may have been missed: the next call asks the store (a known open still stands). */
  resync(): void {
    this.viewAt = -Infinity;
  }

  /** True while the breaker holds a permit or unwritten outcomes: the registry must keep it. */
  busy(): boolean {
    return this.inFlight > 0 || this.#writer.holding;
  }

  /** Writes buffered outcomes now, and those kept while the store did not answer. */
  flush(): Promise<void> {
    return this.#writer.flush();
  }

  /** For `close()`: `flush`, trying the store even while it is being left alone (see the writer). */
  drain(deadline: number): Promise<void> {
    return this.#writer.drain(deadline);
  }

  /** What is not confirmed by the store (see `OutcomeWriter.unwritten`). */
  unwritten(): BreakerLeftovers | null {
    return this.#writer.unwritten();
  }

  // ---- operator calls -----------------------------------------------------------------------

  async inspect(): Promise<Snapshot> {
    const o = this.#o;
    try {
      const snapshot = await this.#callStore('inspect', () => o.store.inspect(this.#host.name, o.policy));
      if (snapshot !== null) this.#absorb(snapshot);
      return snapshot ?? reducer.snapshot(reducer.emptyRecord(), o.policy, o.clock.now());
    } catch (error) {
      this.storeFailed('inspect', error);
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
    this.applyUpdate(result);
    return result.snapshot;
  }

  /**
   * Runs a store call of this breaker's own. An in-process store pushes the transition it makes
   * before the call returns: `notify` must not count that as one learnt from another process.
   */
  own<T>(call: () => T): T {
    this.selfCall = true;
    try {
      return call();
    } finally {
      this.selfCall = false;
    }
  }

  #callStore<T>(operation: StoreOperation, call: () => Awaitable<T>): Awaitable<T> {
    const result = this.own(call);
    if (!isPromiseLike(result)) return result;
    return this.#health.call(result, this.storeTimeoutMs(), operation);
  }

  storeFailed(operation: StoreOperation, error: unknown): undefined {
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

  /** The local breaker (`onStoreFailure: 'local'`) changed state while the store did not answer. */
  logLocalTransition(transition: Transition): void {
    this.#o.logger?.warn(
      { breaker: this.#host.name, from: transition.from, to: transition.to },
      'circuit breaker changed state locally while its store is unreachable',
    );
  }
}

function isUpdateResult(result: unknown): result is UpdateResult {
  return (
    typeof result === 'object' &&
    result !== null &&
    typeof (result as UpdateResult).snapshot === 'object' &&
    (result as UpdateResult).snapshot !== null
  );
}

/** Whether a breaker in this state turns ordinary callers away (a half-open one admits only probes). */
function turnsAway(state: BreakerState, override: Override | null): boolean {
  return override === 'forced-open' || (override === null && state !== 'closed');
}
