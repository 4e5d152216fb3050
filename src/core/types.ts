/**
 * Data types shared by the reducer, the stores and the breaker. Everything here is plain,
 * JSON-serialisable data, so a store can persist it and a Lua or SQL port can read it.
 */

/** The computed state of a breaker. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * An operator override, stored beside the computed state.
 * - `forced-open`: every call is rejected.
 * - `forced-closed`: every call is admitted and nothing is counted (the breaker is disabled).
 * - `metrics-only`: the breaker counts, transitions and emits events, but never rejects.
 */
export type Override = 'forced-open' | 'forced-closed' | 'metrics-only';

/** The state a caller sees: the computed state, unless an override hides it. */
export type CircuitState = BreakerState | 'forced-open' | 'forced-closed';

/** Why a call was rejected without running. */
export type RejectReason = 'open' | 'half-open-full' | 'forced-open' | 'store-unavailable';

/** How a call ended, as far as the breaker is concerned. */
export type Outcome = 'success' | 'failure' | 'ignored';

/** When to trip a closed breaker. Plain data, so a store can evaluate it atomically. */
export type TripPolicy =
  | { readonly kind: 'consecutive-failures'; readonly threshold: number }
  | { readonly kind: 'failures-in-window'; readonly threshold: number; readonly windowMs: number }
  | {
      readonly kind: 'failure-rate';
      readonly ratio: number;
      readonly minimumCalls: number;
      readonly windowMs: number;
    }
  | {
      /** Evaluated by the breaker over the counts a store returns; a store never trips on it alone. */
      readonly kind: 'custom';
      readonly windowMs: number;
      readonly predicate?: (counts: WindowCounts) => boolean;
    };

/**
 * Everything a store needs to run the reducer for one breaker. Resolved once from the options and
 * passed with every store call, so the behaviour never depends on what another deployment stored.
 */
export interface BreakerPolicy {
  readonly trip: TripPolicy;
  /** The counting window and its buckets, aligned to the epoch. */
  readonly windowMs: number;
  readonly bucketMs: number;
  readonly bucketCount: number;
  readonly openMs: number;
  /** Each consecutive re-open multiplies the open period by this (1: no backoff). */
  readonly backoffMultiplier: number;
  readonly maxOpenMs: number;
  /** The open period grows by up to this fraction of itself, at random. */
  readonly jitterRatio: number;
  readonly halfOpenMaxCalls: number;
  readonly successThreshold: number;
  readonly probeLeaseMs: number;
}

/** One bucket of the counting window. `index` is `floor(time / bucketMs)`. */
export interface Bucket {
  index: number;
  successes: number;
  failures: number;
  slow: number;
  ignored: number;
}

/** A half-open probe lease: a claim on one of the `halfOpenMaxCalls` slots, until `expiresAt`. */
export interface Lease {
  id: string;
  expiresAt: number;
}

export const SCHEMA_VERSION = 1;

/** One breaker's stored state. The reducer owns every change to it. */
export interface BreakerRecord {
  schema: typeof SCHEMA_VERSION;
  state: BreakerState;
  override: Override | null;
  generation: number;
  /** When the breaker last opened (0 if never). */
  openedAt: number;
  /** When the open period ends; 0 unless open. */
  openUntil: number;
  /** Consecutive opens without a close in between, for backoff (0 on the first open). */
  reopens: number;
  consecutiveFailures: number;
  probeSuccesses: number;
  leases: Lease[];
  buckets: Bucket[];
  /**
   * When a timed override lapses (the store's time; absent or 0: it stays until cleared). A timed
   * `forced-open` (`openFor`) lapses to half-open, so probes decide; any other lapses to the
   * computed state.
   */
  overrideUntil?: number;
  /** Why the override was set, as its setter said (`openFor`'s reason, an operator's note). */
  overrideReason?: string;
}

/** How `force` sets an override. */
export interface ForceOptions {
  /** The override lapses after this many ms of the store's time. @defaultValue never */
  readonly forMs?: number;
  /** Why, for operators (CLI, dashboard): at most 200 characters. */
  readonly reason?: string;
  /**
   * Only open for a while, yielding to an operator (`openFor`): with `forced-open`, leaves an
   * override that has no time alone (an operator's forced-open, forced-closed or metrics-only),
   * and never shortens a timed forced-open (it lapses at the later of the two times).
   */
  readonly yieldToOperator?: boolean;
}

/** Counts over the window (closed state), and the consecutive failures. */
export interface WindowCounts {
  readonly successes: number;
  readonly failures: number;
  readonly slow: number;
  readonly ignored: number;
  /** successes + failures: the calls that count toward a failure rate. */
  readonly total: number;
  /** failures / total, or 0 when nothing was counted. */
  readonly failureRate: number;
  readonly consecutiveFailures: number;
}

/** A breaker's state as read from the store. */
export interface Snapshot {
  readonly state: BreakerState;
  readonly override: Override | null;
  /** The state callers see. */
  readonly circuitState: CircuitState;
  readonly generation: number;
  readonly openUntil: number;
  /** How long until the breaker may admit a call again; 0 when it admits now. */
  readonly retryAfterMs: number;
  readonly counts: WindowCounts;
  readonly activeProbes: number;
  readonly probeSuccesses: number;
  readonly reopens: number;
  /** The store's time when the snapshot was taken (Redis: the server's clock). */
  readonly now: number;
  /** When the override lapses, in the store's time; 0 when there is none or it has no time. */
  readonly overrideUntil: number;
  /** Why the override was set, or null. */
  readonly overrideReason: string | null;
}

/** A state change, reported only by the operation that performed it. */
export interface Transition {
  readonly from: CircuitState;
  readonly to: CircuitState;
  readonly generation: number;
}

/**
 * Outcomes of calls admitted under one generation. One call is a batch of one; a buffered flush
 * is a larger batch. Order inside a batch matters only for consecutive failures, carried by
 * `trailingFailures`.
 */
export interface OutcomeBatch {
  readonly generation: number;
  readonly successes: number;
  readonly failures: number;
  /** Failures after the last success in this batch (equals `failures` when there was no success). */
  readonly trailingFailures: number;
  readonly slow: number;
  readonly ignored: number;
  /** Results of half-open probes, by lease. */
  readonly probes: readonly ProbeResult[];
  /** Ask to open the breaker if it is still closed at `generation` (custom trip predicates). */
  readonly trip?: boolean;
  /** A uniform random number in [0, 1) for the jitter of an open period this batch may start. */
  readonly random: number;
  /** Extra milliseconds of jitter (from a jitter function) for an open period this batch may start. */
  readonly jitterMs?: number;
  /**
   * Identifies the batch, so a store that remembers recent ids counts a batch re-sent after an
   * in-doubt write (no reply came) once. Unique per batch; stores may ignore it.
   */
  readonly id?: string;
}

export interface ProbeResult {
  readonly lease: string;
  readonly outcome: Outcome;
}

/** What `acquire` answers: a permit, or a rejection. */
export interface AcquireResult {
  readonly admitted: boolean;
  /** Set when not admitted. */
  readonly reason: RejectReason | null;
  readonly retryAfterMs: number;
  /** The generation the permit belongs to; outcomes must carry it. */
  readonly generation: number;
  /** The probe lease when the call was admitted as a half-open probe. */
  readonly lease: string | null;
  readonly state: BreakerState;
  readonly override: Override | null;
  readonly openUntil: number;
  readonly now: number;
  readonly transition: Transition | null;
  /**
   * The run of failures the store holds, when it tells (RedisStore does). A caller whose call
   * succeeds with no run to reset under a count policy need not write at all; a store that leaves
   * this out gets every outcome written.
   */
  readonly consecutiveFailures?: number;
}

/** What `record` and `force` answer. */
export interface UpdateResult {
  readonly snapshot: Snapshot;
  readonly transition: Transition | null;
  /** True when the batch was from an older generation and changed nothing. */
  readonly stale: boolean;
}
