import type {
  AcquireResult,
  Outcome,
  OutcomeBatch,
  RejectReason,
  Transition,
  UpdateResult,
} from './core/types.js';
import type { Clock } from './core/clock.js';
import { systemClock } from './core/clock.js';
import type { CoordinationHost, StoreOperation } from './coordination.js';
import { isPromiseLike } from './coordination.js';
import type { CircuitOpenError } from './errors.js';
import { StoreError, isCircuitOpenError } from './errors.js';
import type { LocalFallback, View } from './fallback.js';
import type { ResolvedOptions } from './options.js';
import type { OutcomeWriter } from './outcome-writer.js';
import { NO_PROBES } from './pending-batch.js';
import type { StoreHealth } from './store-health.js';
import type { LocalThrottle } from './throttle.js';
import type { Awaitable } from './store.js';
import { createTurnClock } from './turn-clock.js';

/**
 * The clock the local-first view's staleness check reads when the breaker runs on the system
 * clock: one for every breaker, read cheaply (see `createTurnClock`). The check runs on every
 * call the view admits, and `Date.now()` was most of what that path cost over the in-process
 * one. It lags by microseconds within a turn, never across I/O or timers; `maxStalenessMs` is
 * whole milliseconds.
 */
const viewClock = createTurnClock();

/** One admitted call, as the breaker tracks it until its outcome is recorded. */
export interface Admission {
  readonly generation: number;
  readonly lease: string | null;
  /** The concurrency slot the call holds in the store (`maxConcurrent`): its outcome gives it back. */
  readonly slot: string | null;
  /** When the slot was granted (`performance.now()`), for the `concurrency-limit` hint. */
  readonly slotAt?: number;
  /** Admitted without the store (during a store outage): the outcome goes to the local breaker. */
  readonly local: boolean;
  readonly start: number;
}

export type Admitted = Admission | CircuitOpenError;
/**
 * What one attempt to admit answers when the call may queue for a concurrency slot (`queueMs`):
 * a number is "every slot is taken", the store's wait until one expires.
 */
type Attempt = Admitted | number;

/** Before this process has seen a call hold a slot: the `concurrency-limit` hint, in ms. */
const SLOT_HINT_MS = 100;
/** The first pause of a call queued for a concurrency slot, and the longest (`queueMs`). */
const QUEUE_PAUSE_MS = 10;
const MAX_QUEUE_PAUSE_MS = 100;

/**
 * What admission needs from the coordination that owns it: its view of the shared state (which
 * an answer updates there), the open of this process alone (`quorum`), and how it calls the store.
 */
export interface AdmitterOwner extends View {
  /** Local time until which the breaker is known to be open (0: not known open); cleared once passed. */
  openUntil: number;
  /** Local time the recovery ramp after the last close ends (0: none running); set by `learnClose`. */
  rampUntil: number;
  /** Local time the view was last confirmed by the store. */
  readonly viewAt: number;
  /** Local time until which this process alone keeps the breaker open (`quorum`; 0: it does not). */
  readonly localOpenUntil: number;
  /** While open here only: the rejection; once the period is over, null (and the event). */
  localOpen(now: number): CircuitOpenError | null;
  /** Runs a store call of the breaker's own (see `Coordination`). */
  own<T>(call: () => T): T;
  storeFailed(operation: StoreOperation, error: unknown): void;
  storeTimeoutMs(): number;
  /** The store answered a call of this breaker in time. */
  storeAnswered(): void;
  /** Takes an acquire's answer as the view. */
  absorbAcquire(result: AcquireResult): void;
  /** Takes a write's answer as the view (and reports the transition it made). */
  applyUpdate(result: UpdateResult): void;
  /** The local breaker (a store outage) changed state. */
  logLocalTransition(transition: Transition): void;
}

/**
 * How one breaker asks for permission to run a call: the local-first view (`maxStalenessMs`), a
 * known open, the recovery ramp and the adaptive throttle before any store call; the store's
 * acquire (carrying a waiting outcome, after a write it must not overtake), what its answer
 * (even a late one) says, and the hints of a rejection; the queue for a concurrency slot
 * (`queueMs`); and, through `LocalFallback`, admission while the store does not answer.
 */
export class Admitter {
  readonly #owner: AdmitterOwner;
  readonly #host: CoordinationHost;
  readonly #o: ResolvedOptions<unknown>;
  readonly #health: StoreHealth;
  readonly #fallback: LocalFallback;
  readonly #writer: OutcomeWriter;
  /** The adaptive throttle (`trip: adaptiveThrottle()`), or null. */
  readonly #throttle: LocalThrottle | null;
  /** Whether the store can carry a waiting outcome on an acquire (`Store.recordThenAcquire`). */
  readonly #carries: boolean;
  /** Whether the store applies this process's calls in the order they are made (`Store.ordered`). */
  readonly #ordered: boolean;
  /**
   * Whether a fresh local view may admit without the store: `maxStalenessMs`, and no concurrency
   * limit (with one, every call asks the store for its slot).
   */
  readonly #viewAdmits: boolean;
  /** Where `admitFromView` reads time: the breaker's clock, or `viewClock` for the system one. */
  readonly #viewClock: Clock;
  /** Local time the recovery ramp after the last close started (see `#ramp`). */
  #rampStart = 0;
  // Smoothed duration of the probes this process ran (ms; 0: none yet), for half-open-full hints.
  #probeMs = 0;
  #probeStartedAt = 0;
  // Smoothed duration of the calls of this process that held a slot (ms; 0: none yet), for hints.
  #slotMs = 0;

  constructor(
    owner: AdmitterOwner,
    host: CoordinationHost,
    options: ResolvedOptions<unknown>,
    health: StoreHealth,
    fallback: LocalFallback,
    writer: OutcomeWriter,
    throttle: LocalThrottle | null,
  ) {
    this.#owner = owner;
    this.#host = host;
    this.#o = options;
    this.#health = health;
    this.#fallback = fallback;
    this.#writer = writer;
    this.#throttle = throttle;
    this.#carries = typeof options.store.recordThenAcquire === 'function';
    this.#ordered = options.store.ordered === true;
    this.#viewAdmits = options.maxStalenessMs > 0 && options.policy.maxConcurrent === 0;
    this.#viewClock = options.clock === systemClock ? viewClock : options.clock;
  }

  admit(): Admitted | Promise<Admitted> {
    // Without a queue an attempt never answers a number (see `#acquired`).
    if (this.#o.queueMs === 0) return this.#attempt(false) as Admitted | Promise<Admitted>;
    const attempt = this.#attempt(true);
    if (typeof attempt === 'number') return this.#queue(attempt);
    if (isPromiseLike(attempt)) {
      return Promise.resolve(attempt).then((a) => (typeof a === 'number' ? this.#queue(a) : a));
    }
    return attempt;
  }

  /**
   * A call that found every concurrency slot taken waits for one, up to `queueMs`. This breaker's
   * queued calls in this process wait in order: the first asks the store again after a short pause
   * that doubles (10 ms to 100 ms, jittered; cut short when this process gives a slot back), the
   * others wait for their turn, which comes when it is admitted or gives up. A call takes whatever
   * an attempt answers other than "full" (a slot, or another rejection: the breaker opened
   * meanwhile, and the calls behind it then ask at once).
   */
  async #queue(retryAfterMs: number): Promise<Admitted> {
    const deadline = performance.now() + this.#o.queueMs;
    let pause = QUEUE_PAUSE_MS;
    if (this.#asking) {
      const turn = await this.#waitTurn(deadline);
      if (turn === null) return this.#reject('concurrency-limit', retryAfterMs);
      if (turn === 'at-once') pause = 0;
    }
    this.#asking = true;
    let answer: Admitted | null = null;
    try {
      for (;;) {
        const left = deadline - performance.now();
        if (left <= 0) return this.#reject('concurrency-limit', retryAfterMs);
        if (pause > 0) await this.#pause(Math.min(left, pause * (0.5 + Math.random() / 2)));
        pause = Math.min(MAX_QUEUE_PAUSE_MS, Math.max(QUEUE_PAUSE_MS, pause * 2));
        const given = this.#slotsGivenBack;
        const attempt = await this.#attempt(true);
        if (typeof attempt !== 'number') {
          answer = attempt;
          return attempt;
        }
        retryAfterMs = attempt;
        // A slot given back in this process while the attempt was in flight: ask again at once.
        if (this.#slotsGivenBack !== given) pause = 0;
      }
    } finally {
      // The next call in line asks now (at once if this one found the breaker rejecting).
      const next = this.#inLine.shift();
      if (next === undefined) this.#asking = false;
      else next(answer !== null && isCircuitOpenError(answer) ? 'at-once' : 'paused');
    }
  }

  /** Calls queued behind the one asking the store (`#queue`), oldest first: each one's turn. */
  readonly #inLine: Array<(turn: 'paused' | 'at-once') => void> = [];
  /** Whether a queued call of this breaker in this process is asking the store (`#queue`). */
  #asking = false;
  /** Cuts short the pause of the call asking, when this process gives a slot back. */
  #wakeAsker: (() => void) | null = null;
  /** Slots this breaker gave back in this process, counted so an asker sees one it missed. */
  #slotsGivenBack = 0;

  /** Waits for this call's turn to ask (`#queue`); null when `deadline` passes first. */
  #waitTurn(deadline: number): Promise<'paused' | 'at-once' | null> {
    return new Promise((resolve) => {
      const inLine = this.#inLine;
      const turn = (how: 'paused' | 'at-once'): void => {
        clearTimeout(timer);
        resolve(how);
      };
      const timer = setTimeout(
        () => {
          const at = inLine.indexOf(turn);
          if (at !== -1) inLine.splice(at, 1);
          resolve(null);
        },
        Math.max(0, deadline - performance.now()),
      );
      inLine.push(turn);
    });
  }

  /** The asker's pause, cut short when this process gives a slot back (`slotGivenBack`). */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wakeAsker === done) this.#wakeAsker = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakeAsker = done;
    });
  }

  /** A call of this breaker gave its concurrency slot back: the queued call asking may ask now. */
  slotGivenBack(): void {
    this.#slotsGivenBack += 1;
    this.#wakeAsker?.();
  }

  #attempt(queueable: boolean, waited = false): Attempt | Promise<Attempt> {
    const o = this.#o;
    const co = this.#owner;
    let now = 0;
    if (co.localOpenUntil !== 0) {
      now = o.clock.now();
      const rejected = co.localOpen(now);
      if (rejected !== null) return rejected;
    }
    if (co.openUntil !== 0) {
      now = o.clock.now();
      if (now < co.openUntil) return this.#host.rejected('open', this.#spread(co.openUntil - now));
      co.openUntil = 0;
    }
    if (co.rampUntil !== 0) {
      if (now === 0) now = o.clock.now();
      const rejected = this.#ramp(now);
      if (rejected !== null) return rejected;
    }
    // An adaptive throttle turns calls away here, before any store call; an override other
    // than forced-open (which rejects anyway) means the breaker does not reject at all.
    const throttle = this.#throttle;
    if (throttle !== null && co.override === null) {
      if (now === 0) now = o.clock.now();
      const retryAfterMs = throttle.request(now, Math.random());
      if (retryAfterMs !== 0) return this.#host.rejected('throttled', retryAfterMs);
    }
    if (this.#viewAdmits && co.state === 'closed' && co.override === null && co.known) {
      if (now === 0) now = o.clock.now();
      if (now - co.viewAt <= o.maxStalenessMs) {
        return {
          generation: co.generation,
          lease: null,
          slot: null,
          local: false,
          start: this.#host.startTime(),
        };
      }
    }
    const health = this.#health;
    if (this.#fallback.active || health.failures > 0) {
      if (now === 0) now = o.clock.now();
      if (!health.usable(now)) return this.#admitWithoutStore(now);
    }
    // A write of this breaker's that can change the answer, still in flight on a store that may
    // apply calls out of order: the acquire waits for it (at most its store timeout), then asks
    // again from the top (once: a busy breaker's next write does not hold it back again).
    const preceding = this.#ordered || waited ? null : this.#writer.preceding;
    if (preceding !== null) return preceding.then(() => this.#attempt(queueable, true));
    let result: Awaitable<AcquireResult>;
    try {
      const carried = this.#carries ? this.#writer.takeCarried() : null;
      result =
        carried === null
          ? co.own(() => o.store.acquire(this.#host.name, o.policy))
          : this.#acquireCarrying(carried);
    } catch (error) {
      return this.#acquireFailed(error);
    }
    if (isPromiseLike(result)) {
      return health
        .call(result, co.storeTimeoutMs(), 'acquire', (late) => this.#lateAcquired(late))
        .then(
          (r) => this.#acquired(r, queueable),
          (error: unknown) => this.#acquireFailed(error),
        );
    }
    return this.#acquired(result, queueable);
  }

  /**
   * The store's acquire, carrying `batch` (an outcome nobody waits for, not sent yet) before it:
   * `Store.recordThenAcquire`, one round trip. The writer sends the batch (its id, kept in doubt if
   * no answer comes, as any write); the acquire's half comes back here. If the writer keeps the
   * batch instead of sending it, a plain acquire.
   */
  #acquireCarrying(batch: OutcomeBatch): Awaitable<AcquireResult> {
    const o = this.#o;
    const name = this.#host.name;
    const carried: { acquire: Promise<AcquireResult> | null } = { acquire: null };
    this.#writer.writeInBackground(batch, (sent) => {
      const both = Promise.resolve(o.store.recordThenAcquire!(name, o.policy, sent));
      carried.acquire = both.then((answer) => answer.acquire);
      return both.then((answer) => answer.update);
    });
    return carried.acquire ?? this.#owner.own(() => o.store.acquire(name, o.policy));
  }

  /**
   * The local-first admission alone: the generation of a closed breaker without override whose
   * view is fresh enough to admit without asking the store, or -1 (then `admit`). Reads the clock.
   */
  admitFromView(): number {
    const o = this.#o;
    const co = this.#owner;
    if (
      co.openUntil !== 0 ||
      co.localOpenUntil !== 0 ||
      co.rampUntil !== 0 ||
      !this.#viewAdmits ||
      co.state !== 'closed' ||
      co.override !== null
    ) {
      return -1;
    }
    if (!co.known || this.#viewClock.now() - co.viewAt > o.maxStalenessMs) return -1;
    return co.generation;
  }

  /** `queueable`: a `concurrency-limit` rejection answers its wait instead (see `#queue`). */
  #acquired(result: AcquireResult, queueable: boolean): Attempt {
    if (!isAcquireResult(result)) {
      return this.#acquireFailed(new StoreError('Store acquire returned a malformed reply'));
    }
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    const co = this.#owner;
    co.absorbAcquire(result);
    co.storeAnswered();
    if (result.admitted) {
      if (result.lease !== null) this.#probeStartedAt = performance.now();
      const slot = result.slot ?? null;
      return slot === null
        ? {
            generation: result.generation,
            lease: result.lease,
            slot,
            local: false,
            start: this.#host.startTime(),
          }
        : {
            generation: result.generation,
            lease: result.lease,
            slot,
            slotAt: performance.now(),
            local: false,
            start: this.#host.startTime(),
          };
    }
    if (queueable && result.reason === 'concurrency-limit') return result.retryAfterMs;
    return this.#reject(result.reason ?? 'open', result.retryAfterMs);
  }

  /**
   * A call this breaker admitted ended with `outcome` (its outcome is being recorded): how long it
   * held its probe lease or its concurrency slot feeds the hints of later rejections (`#reject`).
   */
  ended(admission: Admission, outcome: Outcome): void {
    // A probe given back without an outcome (ignored: it may never have run, e.g. a base name's
    // probe its tenant's own breaker turned away) says nothing of how long probes take.
    if (admission.lease !== null && !admission.local && this.#probeStartedAt !== 0 && outcome !== 'ignored') {
      const ms = performance.now() - this.#probeStartedAt;
      this.#probeMs = this.#probeMs === 0 ? ms : this.#probeMs + (ms - this.#probeMs) / 4;
    }
    if (admission.slot !== null && admission.slotAt !== undefined) {
      const ms = performance.now() - admission.slotAt;
      this.#slotMs = this.#slotMs === 0 ? ms : this.#slotMs + (ms - this.#slotMs) / 4;
    }
  }

  /**
   * Rejects. A `half-open-full` rejection's `retryAfterMs` is a hint a queue can use: twice the
   * probe duration this process observed (1 s before it saw one), never later than the store's
   * answer (when the oldest probe lease expires, `probeLeaseMs` after it was granted). So is a
   * `concurrency-limit` one: twice the duration of the calls that held a slot here (100 ms before
   * any), never later than when the oldest slot expires.
   */
  #reject(reason: RejectReason, retryAfterMs: number): CircuitOpenError {
    if (reason === 'open') retryAfterMs = this.#spread(retryAfterMs);
    if (reason === 'half-open-full') {
      const hint = this.#probeMs === 0 ? 1_000 : Math.max(1, Math.ceil(2 * this.#probeMs));
      retryAfterMs = Math.min(retryAfterMs, hint);
    } else if (reason === 'concurrency-limit') {
      const hint = this.#slotMs === 0 ? SLOT_HINT_MS : Math.max(1, Math.ceil(2 * this.#slotMs));
      retryAfterMs = Math.max(1, Math.min(retryAfterMs, hint));
    }
    return this.#host.rejected(reason, retryAfterMs);
  }

  /**
   * The recovery ramp (`recovery.rampMs`): at a fraction `p` of the `rampMs` after a close, a call
   * is admitted with probability `√p` (from 0 to 1, the same in every process: anchored to the
   * close in the store's time); the others are rejected with reason `'recovering'` and a
   * `retryAfterMs` drawn over what is left of the ramp, later more likely than sooner (see
   * `lateInRamp`). Null: admit (and ask the store as usual).
   */
  #ramp(now: number): CircuitOpenError | null {
    const co = this.#owner;
    if (now >= co.rampUntil) {
      co.rampUntil = 0;
      return null;
    }
    if (co.state !== 'closed' || co.override !== null) return null;
    if (Math.random() < Math.sqrt((now - this.#rampStart) / this.#o.rampMs)) return null;
    return this.#host.rejected('recovering', Math.max(1, Math.ceil(lateInRamp() * (co.rampUntil - now))));
  }

  /**
   * A retry-after for a call rejected while open: the open period's end, plus a part of the
   * recovery ramp drawn at random (later more likely than sooner: `lateInRamp`), so deferred work
   * comes back at the pace the ramp admits it instead of all at the moment the breaker probes.
   */
  #spread(retryAfterMs: number): number {
    const ramp = this.#o.rampMs;
    return ramp > 0 ? retryAfterMs + Math.floor(lateInRamp() * ramp) : retryAfterMs;
  }

  /** A close callers saw at `closedAt` (the store's time, read at `storeNow`) starts the ramp. */
  learnClose(closedAt: number | undefined, storeNow: number): void {
    const ramp = this.#o.rampMs;
    if (ramp <= 0 || closedAt === undefined || closedAt <= 0) return;
    const age = Math.max(0, storeNow - closedAt);
    if (age >= ramp) {
      this.#owner.rampUntil = 0;
      return;
    }
    const localNow = this.#o.clock.now();
    this.#rampStart = localNow - age;
    this.#owner.rampUntil = this.#rampStart + ramp;
  }

  /**
   * An acquire that timed out was answered after all. What it says updates the view (a late
   * "open" closes the door at once), the transition it made is reported (this process made it),
   * and a probe lease or concurrency slot nobody will use is given back at once instead of
   * blocking half-open (or a slot) until it expires.
   */
  #lateAcquired(result: AcquireResult): void {
    if (!isAcquireResult(result)) return;
    if (result.transition !== null) this.#host.emitTransition(result.transition);
    this.#owner.absorbAcquire(result);
    this.giveBack(result);
  }

  /** Gives back at once the probe lease and concurrency slot of an admission nobody will use. */
  giveBack(result: AcquireResult): void {
    const slot = result.slot ?? null;
    if (result.admitted && (result.lease !== null || slot !== null)) {
      const o = this.#o;
      const co = this.#owner;
      const release: OutcomeBatch = {
        generation: result.generation,
        successes: 0,
        failures: 0,
        trailingFailures: 0,
        slow: 0,
        ignored: 0,
        probes: result.lease === null ? NO_PROBES : [{ lease: result.lease, outcome: 'ignored' }],
        ...(slot === null ? {} : { slots: [slot] }),
        random: 0,
        // No id: it is sent once and never again (giving back twice frees nothing more).
      };
      try {
        const written = co.own(() => o.store.record(this.#host.name, o.policy, release));
        if (slot !== null) this.slotGivenBack();
        if (isPromiseLike(written)) {
          this.#health
            .call(written, co.storeTimeoutMs(), 'record', (late) => co.applyUpdate(late))
            .then(
              (r) => co.applyUpdate(r),
              () => undefined, // the lease expires on its own
            );
        } else {
          co.applyUpdate(written);
        }
      } catch {
        // the lease expires on its own
      }
    }
  }

  #acquireFailed(error: unknown): Admitted {
    const co = this.#owner;
    co.storeFailed('acquire', error);
    const o = this.#o;
    const now = o.clock.now();
    const wait = this.#fallback.refuseTimedOutProbe(o.onStoreFailure, co, o.policy, now);
    if (wait !== null) return this.#host.rejected('open', wait);
    return this.#admitWithoutStore(now);
  }

  /**
   * Admits or rejects without the store. Under `'local'` the in-process breaker is the reducer, so
   * it keeps a concurrency limit too, for this process's calls alone (a fleet of p processes runs
   * at most p * maxConcurrent at once meanwhile): its slots are the local breaker's, given back by
   * `fallback.settle`.
   */
  #admitWithoutStore(now: number): Admitted {
    const o = this.#o;
    const co = this.#owner;
    const result = this.#fallback.admit(o.onStoreFailure, co, o.policy, now, this.#health.downUntil);
    if ('transition' in result && result.transition !== null) co.logLocalTransition(result.transition);
    if (result.admitted) {
      return {
        generation: result.generation,
        lease: result.lease,
        slot: result.slot ?? null,
        local: true,
        start: this.#host.startTime(),
      };
    }
    return this.#reject(result.reason ?? 'open', result.retryAfterMs);
  }
}

export function isAcquireResult(result: unknown): result is AcquireResult {
  return (
    typeof result === 'object' && result !== null && typeof (result as AcquireResult).admitted === 'boolean'
  );
}

/**
 * Where in (what is left of) a recovery ramp deferred work comes back, from 0 to 1: `√u` of a
 * uniform `u`, so density `2x`, rising as the ramp's admitted share (`√x`) does. Returns drawn
 * uniformly met a share of 1/2 on average and half were turned away again; drawn so, and with
 * the share rising as `√x`, a return is turned away a fifth of the time (∫(1 − √x)·2x dx).
 */
function lateInRamp(): number {
  return Math.sqrt(Math.random());
}
