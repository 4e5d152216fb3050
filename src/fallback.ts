import { outcomesCanTrip } from './core/policy.js';
import * as reducer from './core/reducer.js';
import type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  BreakerState,
  Outcome,
  OutcomeBatch,
  Override,
  Snapshot,
  WindowCounts,
} from './core/types.js';
import type { StoreFailurePolicy } from './options.js';
import type { PendingBatch } from './pending-batch.js';
import { NO_PROBES, addOutcome, emptyBatch, isEmptyBatch, mergeInto } from './pending-batch.js';

/** What this process last saw of the shared state (see `Coordination`). */
export interface View {
  readonly state: BreakerState;
  readonly override: Override | null;
  /** Whether the store has answered for this breaker once (its generation may still be 0: no record). */
  readonly known: boolean;
  /** 0 until the store has answered, and while it holds no record for this breaker. */
  readonly generation: number;
  /** Local time until which the breaker is known to be open; 0 when not known open. */
  readonly openUntil: number;
  readonly counts: WindowCounts;
}

/**
 * A batch kept whole, to be re-sent as it is under its id: one the store may or may not have
 * applied (sent, no reply came: `inDoubt`), or one that cannot be merged (probe results, whose
 * leases the store still holds until they expire).
 */
interface KeptBatch {
  readonly batch: OutcomeBatch;
  readonly keptAt: number;
  readonly inDoubt: boolean;
}

/** Past this many, kept batches are merged (a re-send may then count some twice). */
const MAX_IN_DOUBT = 1_000;
/** Past this many, concurrency slots to give back are forgotten (they expire on their own). */
const MAX_KEPT_SLOTS = 1_000;

/** Outcome counts of what a breaker holds for its store. */
export interface KeptCounts {
  readonly successes: number;
  readonly failures: number;
  readonly ignored: number;
}

/**
 * What a breaker does while its store is unreachable, and what it keeps for the store meanwhile.
 *
 * - `'local'`: an in-process breaker, seeded from the last state this process saw, never from a
 *   fresh closed one: an open breaker stays open until its end, an unknown half-open is open again,
 *   and a breaker this process has **never seen** starts half-open, so it sends at most
 *   `halfOpenMaxCalls` trial calls at a time until one succeeds (then it admits everything) or
 *   fails (then it is open for `openMs`). A cluster that holds the breaker open or half-open
 *   therefore never gets unbounded traffic from a process that just started.
 * - `'allow'` admits every call; `'reject'` rejects every call with `store-unavailable`.
 *
 * Outcomes of closed-state calls are kept for the store either way: merged while never sent,
 * one by one (with their batch id) when a write got no answer and may have landed.
 */
export class LocalFallback {
  #local: BreakerRecord | null = null;
  /** The local breaker started half-open because this process had never seen the state. */
  #trial = false;
  #leases = 0;
  #unsent: PendingBatch | null = null;
  /**
   * Kept outcomes admitted under generation 0 (before the store answered, or while it held no
   * record), apart: a newer generation does not fence them off (a record made from none counts
   * them), so they are never replaced by the outcomes of a later one.
   */
  #unsentZero: PendingBatch | null = null;
  #whole: KeptBatch[] = [];
  /** Concurrency slots of merged batches, to give back with the next write (`OutcomeBatch.slots`). */
  #slots: string[] = [];

  /** True while the in-process breaker is in use. */
  get active(): boolean {
    return this.#local !== null;
  }

  /** The store answered: the shared state is in charge again. */
  stop(): void {
    this.#local = null;
    this.#trial = false;
  }

  /** Admits or rejects without the store; a rejection is `{ reason, retryAfterMs }`. */
  admit(
    mode: StoreFailurePolicy,
    view: View,
    policy: BreakerPolicy,
    now: number,
    retryStoreAt: number,
  ):
    | AcquireResult
    | { readonly admitted: true; readonly generation: number; readonly lease: null; readonly slot?: null } {
    if (mode === 'reject')
      return rejectLocally('store-unavailable', Math.max(1, retryStoreAt - now), view, now);
    if (mode === 'allow') return { admitted: true, generation: view.generation, lease: null };
    if (this.#local === null) {
      this.#local = seed(view, policy, now);
      this.#trial = !view.known;
    }
    return reducer.acquire(this.#local, policy, now, `local-${++this.#leases}`);
  }

  /**
   * A probe claim that timed out: the store may have granted it to someone else, so it never
   * admits. Returns how long to stay away, or null when the claim was not for a probe.
   */
  refuseTimedOutProbe(
    mode: StoreFailurePolicy,
    view: View,
    policy: BreakerPolicy,
    now: number,
  ): number | null {
    if (mode !== 'local' || view.state === 'closed' || !view.known) return null;
    if (view.override === 'forced-closed' || view.override === 'metrics-only') return null;
    const local = (this.#local ??= seed(view, policy, now));
    return Math.max(1, local.openUntil - now);
  }

  /**
   * The local breaker's snapshot, for `state()` while the store is unreachable. With `'reject'`
   * every call is rejected until the store is tried again, and the snapshot says so: open.
   */
  snapshot(
    mode: StoreFailurePolicy,
    view: View,
    policy: BreakerPolicy,
    now: number,
    retryStoreAt: number,
  ): Snapshot {
    const snapshot = reducer.snapshot(this.#local ?? seed(view, policy, now), policy, now);
    if (mode !== 'reject' || snapshot.circuitState === 'forced-closed') return snapshot;
    const openUntil = Math.max(retryStoreAt, now + 1);
    return { ...snapshot, state: 'open', circuitState: 'open', openUntil, retryAfterMs: openUntil - now };
  }

  /** The outcome of a call admitted without the store. Returns the local transition, if any. */
  settle(
    mode: StoreFailurePolicy,
    view: View,
    policy: BreakerPolicy,
    now: number,
    admission: { readonly generation: number; readonly lease: string | null; readonly slot: string | null },
    outcome: Outcome,
    slow: boolean,
    jitterMs: () => number,
  ) {
    let transition = null;
    if (mode === 'local' && this.#local !== null) {
      const failures = outcome === 'failure' ? 1 : 0;
      transition = reducer.record(this.#local, policy, now, {
        generation: this.#local.generation,
        successes: outcome === 'success' ? 1 : 0,
        failures,
        trailingFailures: failures,
        slow: slow ? 1 : 0,
        ignored: outcome === 'ignored' ? 1 : 0,
        probes: admission.lease === null ? NO_PROBES : [{ lease: admission.lease, outcome }],
        // A slot taken by the local breaker (its concurrency limit) goes back to it.
        ...(admission.slot === null ? {} : { slots: [admission.slot] }),
        random: Math.random(),
        jitterMs: outcomesCanTrip(policy.trip, outcome === 'success' ? 1 : 0, failures) ? jitterMs() : 0,
      }).transition;
      // A first trial that passes is not a state change worth a warning: nothing was known before.
      if (transition !== null && this.#trial) {
        this.#trial = false;
        if (transition.to === 'closed') transition = null;
      }
    }
    // Outcomes of calls the shared state would have counted (closed, or not known yet) are kept,
    // under the generation this process saw (0: not known yet), not the local breaker's.
    if (view.state === 'closed' && view.override !== 'forced-closed') {
      const unsent = this.#unsentAt(view.generation);
      if (unsent !== null) addOutcome(unsent, outcome, slow);
    }
    return transition;
  }

  /** Keeps a batch the store did not confirm. `inDoubt`: it was sent and may have landed. */
  keep(batch: OutcomeBatch, inDoubt: boolean, now: number): void {
    // A request to trip on counts is decided again from the counts the store holds then.
    if (batch.trip === true) return;
    const probes = batch.probes.length > 0;
    const slots = batch.slots ?? [];
    if (!probes && slots.length === 0 && isEmptyBatch(batch)) return;
    // A probe result is re-sent as it is: its lease may still be held (the store ignores one that
    // expired meanwhile), and a failed probe must re-open the breaker, not wait out the lease.
    if ((probes || (inDoubt && batch.id !== undefined)) && this.#whole.length < MAX_IN_DOUBT) {
      this.#whole.push({ batch, keptAt: now, inDoubt });
      return;
    }
    // Slots are given back apart (whatever the generation): the store frees them when it answers,
    // unless they expired first. Past the bound they are left to expire.
    for (const slot of slots) if (this.#slots.length < MAX_KEPT_SLOTS) this.#slots.push(slot);
    if (probes) return; // past the bound: the lease expires on its own
    const unsent = this.#unsentAt(batch.generation);
    if (unsent !== null) mergeInto(unsent, batch);
  }

  /** The kept batch for `generation`, or null when a newer generation's outcomes are kept. */
  #unsentAt(generation: number): PendingBatch | null {
    if (generation === 0) return (this.#unsentZero ??= emptyBatch(0));
    const unsent = (this.#unsent ??= emptyBatch(generation));
    if (generation < unsent.generation) return null; // the store would fence it off anyway
    if (generation > unsent.generation) {
      // The older outcomes would be fenced off by the store: the newer generation replaces them.
      this.#unsent = emptyBatch(generation);
      return this.#unsent;
    }
    return unsent;
  }

  /** The batches kept whole (in doubt, or probe results), to be sent again under their ids. */
  keptBatches(): readonly OutcomeBatch[] {
    return this.#whole.map((k) => k.batch);
  }

  get holdsOutcomes(): boolean {
    return (
      this.#unsent !== null || this.#unsentZero !== null || this.#whole.length > 0 || this.#slots.length > 0
    );
  }

  /** Generation of the merged kept outcomes (0 when some were admitted under 0), or null. */
  get unsentGeneration(): number | null {
    return this.#unsentZero !== null ? 0 : (this.#unsent?.generation ?? null);
  }

  /**
   * Hands over what is kept, as batches to write: the in-doubt ones under their own ids (a store
   * that remembers ids counts each once), then the merged ones as a new batch, then the slots to
   * give back (those two without an id: the writer numbers them). `generation` is used for outcomes admitted before the store ever answered
   * (generation 0), and for the slots (freed whatever the generation).
   */
  take(generation: number, policy: BreakerPolicy, jitterMs: () => number): OutcomeBatch[] {
    const batches = this.#whole.map((d) => d.batch);
    this.#whole = [];
    for (const unsent of [this.#unsentZero, this.#unsent]) {
      if (unsent === null || isEmptyBatch(unsent)) continue;
      batches.push({
        ...unsent,
        generation: unsent.generation === 0 ? generation : unsent.generation,
        probes: NO_PROBES,
        random: Math.random(),
        jitterMs: outcomesCanTrip(policy.trip, unsent.successes, unsent.failures) ? jitterMs() : 0,
      });
    }
    this.#unsentZero = null;
    this.#unsent = null;
    if (this.#slots.length > 0) {
      batches.push({
        ...emptyBatch(generation),
        probes: NO_PROBES,
        slots: this.#slots,
        random: 0,
      });
      this.#slots = [];
    }
    return batches;
  }

  /**
   * Counts of what is kept, for `close()`'s report: `unsent` never reached the store; `inDoubt`
   * was sent and got no reply, so the store may hold it already.
   */
  keptCounts(): { readonly unsent: KeptCounts | null; readonly inDoubt: KeptCounts | null } | null {
    if (!this.holdsOutcomes) return null;
    const unsent = [
      ...this.#whole.filter((k) => !k.inDoubt).map((k) => k.batch),
      ...(this.#unsent === null ? [] : [this.#unsent]),
      ...(this.#unsentZero === null ? [] : [this.#unsentZero]),
    ];
    const inDoubt = this.#whole.filter((k) => k.inDoubt).map((k) => k.batch);
    return { unsent: countsOf(unsent), inDoubt: countsOf(inDoubt) };
  }
}

/** The outcomes in `batches` (probe results included), or null when there are none. */
export function countsOf(
  batches: ReadonlyArray<
    Pick<OutcomeBatch, 'successes' | 'failures' | 'ignored'> & { probes?: OutcomeBatch['probes'] }
  >,
): KeptCounts | null {
  if (batches.length === 0) return null;
  let successes = 0;
  let failures = 0;
  let ignored = 0;
  for (const b of batches) {
    successes += b.successes;
    failures += b.failures;
    ignored += b.ignored;
    for (const probe of b.probes ?? []) {
      if (probe.outcome === 'success') successes += 1;
      else if (probe.outcome === 'failure') failures += 1;
      else ignored += 1;
    }
  }
  return { successes, failures, ignored };
}

function rejectLocally(
  reason: 'store-unavailable',
  retryAfterMs: number,
  view: View,
  now: number,
): AcquireResult {
  return {
    admitted: false,
    reason,
    retryAfterMs,
    generation: view.generation,
    lease: null,
    state: view.state,
    override: view.override,
    openUntil: 0,
    now,
    transition: null,
  };
}

/** The local breaker's first state: from what this process last saw (see `LocalFallback`). */
function seed(view: View, policy: BreakerPolicy, now: number): BreakerRecord {
  const local = reducer.emptyRecord(Math.max(1, view.generation));
  local.override = view.override;
  if (!view.known) {
    local.state = 'half-open';
  } else if (view.state !== 'closed') {
    local.state = 'open';
    local.openedAt = now;
    local.openUntil = Math.max(view.openUntil, now + (view.state === 'half-open' ? policy.openMs : 0));
  } else {
    local.consecutiveFailures = view.counts.consecutiveFailures;
  }
  return local;
}
