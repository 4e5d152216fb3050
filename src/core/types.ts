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

/**
 * Why a call was rejected without running: `open`, `half-open-full` (the probes are taken),
 * `forced-open` (an override, or `openFor`), `store-unavailable` (`onStoreFailure: 'reject'`),
 * `recovering` (the breaker closed a moment ago and admits a rising share of calls:
 * `recovery.rampMs`), `throttled` (an `adaptiveThrottle` policy turned the call away, with a
 * probability that grows with the share of calls the dependency did not accept), `base-open` (too
 * many breakers of the base name are open: the provider is taken to be down for every tenant, see
 * `escalate`), `concurrency-limit` (`maxConcurrent` calls are in flight across every process),
 * `local-open` (this process's failures would open the breaker, but too few processes reported
 * failures for a quorum: it opens here only, see `quorum`).
 */
export type RejectReason =
  | 'open'
  | 'half-open-full'
  | 'forced-open'
  | 'store-unavailable'
  | 'recovering'
  | 'throttled'
  | 'base-open'
  | 'concurrency-limit'
  | 'local-open';

/** How a call ended, as far as the breaker is concerned. */
export type Outcome = 'success' | 'failure' | 'ignored';

/** When to trip a closed breaker. Plain data, so a store can evaluate it atomically. */
export type TripPolicy =
  | {
      /** Trip after `threshold` failures in a row (a success resets the run). */
      readonly kind: 'consecutive-failures';
      /** How many failures in a row trip the breaker (an integer, at least 1). */
      readonly threshold: number;
    }
  | {
      /** Trip after `threshold` failures within the last `windowMs`. */
      readonly kind: 'failures-in-window';
      /** How many failures within the window trip the breaker (an integer, at least 1). */
      readonly threshold: number;
      /** The counting window, in ms. */
      readonly windowMs: number;
    }
  | {
      /** Trip when failures / (successes + failures) over `windowMs` reaches `ratio`. */
      readonly kind: 'failure-rate';
      /** The failure rate that trips the breaker: more than 0, at most 1. */
      readonly ratio: number;
      /** How many calls (successes + failures) the window must hold before the rate can trip it. */
      readonly minimumCalls: number;
      /** The counting window, in ms. */
      readonly windowMs: number;
    }
  | ThrottlePolicy
  | {
      /** Evaluated by the breaker over the counts a store returns; a store never trips on it alone. */
      readonly kind: 'custom';
      /** The counting window, in ms (`custom()` defaults it to 60_000). */
      readonly windowMs: number;
      /** Returns true to trip, given the window's counts; without it the breaker never trips. */
      readonly predicate?: (counts: WindowCounts) => boolean;
    };

/**
 * Adaptive throttling (client-side throttling as Google's SRE book describes it): the breaker
 * never opens on counts; instead each process turns away a share of calls, at random, that grows
 * as the dependency accepts fewer of them. See `adaptiveThrottle` and `throttleRejectionRate`.
 */
export interface ThrottlePolicy {
  /** Turn a share of calls away, in each process, instead of opening. */
  readonly kind: 'adaptive-throttle';
  /** How many calls per accepted call are let through: 2 lets twice as many as were accepted. */
  readonly k: number;
  /** The window requests and accepts are counted over, in ms. */
  readonly windowMs: number;
  /** Added to the requests in the denominator, so a handful of calls cannot throttle hard. */
  readonly padding: number;
  /** The highest share of calls ever turned away (some always go through, to see recovery). */
  readonly maxRejectionRate: number;
  /** Below this many requests in the window nothing is turned away. */
  readonly minimumCalls: number;
}

/**
 * Everything a store needs to run the reducer for one breaker. Resolved once from the options and
 * passed with every store call, so the behaviour never depends on what another deployment stored.
 */
export interface BreakerPolicy {
  /** When a closed breaker opens. */
  readonly trip: TripPolicy;
  /** The counting window and its buckets, aligned to the epoch. */
  readonly windowMs: number;
  /** The width of one bucket, in ms: a tenth of `windowMs`, rounded up. */
  readonly bucketMs: number;
  /** How many buckets make up the window (at most 10). */
  readonly bucketCount: number;
  /** How long the first open lasts, in ms, before backoff and jitter. */
  readonly openMs: number;
  /** Each consecutive re-open multiplies the open period by this (1: no backoff). */
  readonly backoffMultiplier: number;
  /** The open period never grows past this by backoff, in ms (jitter comes on top). */
  readonly maxOpenMs: number;
  /** The open period grows by up to this fraction of itself, at random. */
  readonly jitterRatio: number;
  /** How many probes may run at once in half-open, across every process. */
  readonly halfOpenMaxCalls: number;
  /** How many probe successes close a half-open breaker. */
  readonly successThreshold: number;
  /** How long a probe holds its half-open slot, in ms, before the slot goes to another caller. */
  readonly probeLeaseMs: number;
  /**
   * How many calls may be in flight at once, across every process (each holds a concurrency slot
   * from `acquire` until its outcome is recorded); 0: no limit.
   */
  readonly maxConcurrent: number;
  /** How long a call holds its concurrency slot, in ms, if no outcome frees it (a crashed process). */
  readonly concurrencyLeaseMs: number;
}

/** One bucket of the counting window. `index` is `floor(time / bucketMs)`. */
export interface Bucket {
  /** Which bucket this is: it covers `[index * bucketMs, (index + 1) * bucketMs)`. */
  index: number;
  /** Calls that succeeded. */
  successes: number;
  /** Calls that failed, slow calls included. */
  failures: number;
  /** Calls that took `slowCallMs` or longer (each also counted in `failures`). */
  slow: number;
  /** Calls that counted as neither success nor failure. */
  ignored: number;
}

/**
 * A lease: a claim until `expiresAt` on one of the `halfOpenMaxCalls` probe slots of a half-open
 * breaker, or on one of the `maxConcurrent` concurrency slots.
 */
export interface Lease {
  /** Identifies the lease; the call's outcome names it (`ProbeResult.lease`, `OutcomeBatch.slots`). */
  id: string;
  /** When the slot is given back if no outcome came, in the store's time (ms). */
  expiresAt: number;
}

export const SCHEMA_VERSION = 1;

/** One breaker's stored state. The reducer owns every change to it. */
export interface BreakerRecord {
  /** The record's layout version; stores reset a record of another version. */
  schema: typeof SCHEMA_VERSION;
  /** The computed state (an override may hide it from callers). */
  state: BreakerState;
  /** The operator override, or null. */
  override: Override | null;
  /**
   * Rises with every change of state or override. Outcomes count only under the generation their
   * call was admitted at, so results of calls admitted before a change cannot move the state.
   */
  generation: number;
  /** When the breaker last opened (0 if never). */
  openedAt: number;
  /** When the open period ends; 0 unless open. */
  openUntil: number;
  /** Consecutive opens without a close in between, for backoff (0 on the first open). */
  reopens: number;
  /** Failures in a row since the last success. */
  consecutiveFailures: number;
  /** Probe successes in the current half-open period. */
  probeSuccesses: number;
  /** The half-open probe leases held now. */
  leases: Lease[];
  /**
   * The concurrency slots held now (`maxConcurrent`), in any state and across generations: a call
   * holds its slot until its outcome is recorded or the slot expires. Absent: none ever taken.
   */
  slots?: Lease[];
  /** The window's buckets that counted something, oldest first, at most `bucketCount`. */
  buckets: Bucket[];
  /**
   * When a timed override lapses (the store's time; absent or 0: it stays until cleared). A timed
   * `forced-open` (`openFor`) lapses to half-open, so probes decide; any other lapses to the
   * computed state.
   */
  overrideUntil?: number;
  /** Why the override was set, as its setter said (`openFor`'s reason, an operator's note). */
  overrideReason?: string;
  /**
   * When callers last saw the breaker close after rejecting (half-open or open to closed, a reset,
   * a forced-open cleared), in the store's time: the anchor of the recovery ramp. Absent: never.
   */
  closedAt?: number;
  /**
   * Who reported failures in the window (a quorum, `OutcomeBatch.quorum`): each reporter's id and
   * the bucket of its latest failure, at most `MAX_REPORTERS`. Absent: no batch named a reporter.
   */
  reporters?: Reporter[];
  /**
   * The adaptive throttle's rejection rate (0–1) the last breaker that wrote failures reported
   * (`OutcomeBatch.throttleRate`), and when (the store's time): for operators. Absent: none.
   */
  throttle?: {
    /** The share of calls that breaker turned away (0–1), to a millionth. */
    rate: number;
    /** When it was reported, in the store's time (ms). */
    at: number;
  };
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
  /** Calls in the window that succeeded. */
  readonly successes: number;
  /** Calls in the window that failed, slow calls included. */
  readonly failures: number;
  /** Calls in the window that took `slowCallMs` or longer (each also counted in `failures`). */
  readonly slow: number;
  /** Calls in the window that counted as neither success nor failure. */
  readonly ignored: number;
  /** successes + failures: the calls that count toward a failure rate. */
  readonly total: number;
  /** failures / total, or 0 when nothing was counted. */
  readonly failureRate: number;
  /** Failures in a row since the last success (not limited to the window). */
  readonly consecutiveFailures: number;
}

/** A breaker's state as read from the store. */
export interface Snapshot {
  /** The computed state (an override may hide it from callers: see `circuitState`). */
  readonly state: BreakerState;
  /** The operator override, or null. */
  readonly override: Override | null;
  /** The state callers see. */
  readonly circuitState: CircuitState;
  /** The record's generation: it rises with every change of state or override. */
  readonly generation: number;
  /** When the open period ends, in the store's time (ms); 0 unless open. */
  readonly openUntil: number;
  /** How long until the breaker may admit a call again; 0 when it admits now. */
  readonly retryAfterMs: number;
  /** The counts over the window, and the failures in a row. */
  readonly counts: WindowCounts;
  /** Half-open probe leases held now (not expired). */
  readonly activeProbes: number;
  /** Concurrency slots held now (not expired): calls in flight under `maxConcurrent`; 0 without a limit. */
  readonly activeSlots: number;
  /** Probe successes in the current half-open period. */
  readonly probeSuccesses: number;
  /** Consecutive opens without a close in between, for backoff (0 on the first open). */
  readonly reopens: number;
  /** The store's time when the snapshot was taken (Redis: the server's clock). */
  readonly now: number;
  /** When the override lapses, in the store's time; 0 when there is none or it has no time. */
  readonly overrideUntil: number;
  /** Why the override was set, or null. */
  readonly overrideReason: string | null;
  /** When callers last saw it close after rejecting, in the store's time (0: never). */
  readonly closedAt: number;
  /**
   * The adaptive throttle's rejection rate a process reported with its latest failures
   * (`trip: adaptiveThrottle()`), and when, in the store's time; absent when none did. The rate
   * is that process's: each process throttles on what it sees.
   */
  readonly throttle?: {
    /** The share of calls that process turned away (0–1), to a millionth. */
    readonly rate: number;
    /** When it was reported, in the store's time (ms). */
    readonly reportedAt: number;
  };
}

/** A state change, reported only by the operation that performed it. */
export interface Transition {
  /** The state callers saw before. */
  readonly from: CircuitState;
  /** The state callers see after. */
  readonly to: CircuitState;
  /** The generation the change started. */
  readonly generation: number;
}

/**
 * Outcomes of calls admitted under one generation. One call is a batch of one; a buffered flush
 * is a larger batch. Order inside a batch matters only for consecutive failures, carried by
 * `trailingFailures`.
 */
export interface OutcomeBatch {
  /** The generation the calls were admitted under; at another generation the batch is stale. */
  readonly generation: number;
  /** Calls that succeeded (closed state). */
  readonly successes: number;
  /** Calls that failed, slow calls included (closed state). */
  readonly failures: number;
  /** Failures after the last success in this batch (equals `failures` when there was no success). */
  readonly trailingFailures: number;
  /** Calls that took `slowCallMs` or longer (each also counted in `failures`). */
  readonly slow: number;
  /** Calls that counted as neither success nor failure. */
  readonly ignored: number;
  /** Results of half-open probes, by lease. */
  readonly probes: readonly ProbeResult[];
  /**
   * Concurrency slots to give back (`AcquireResult.slot`): freed whatever the generation, even when
   * the batch is stale or counts nothing. Absent: none.
   */
  readonly slots?: readonly string[];
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
  /**
   * Set by circuitry's breakers, whose batch ids are `<writer>.<n>` (one writer per breaker
   * instance; `n` counts its batches, in base 36): the lowest `n` of this writer's batches that may
   * still reach a store, sent for the first time or again. A store that remembers ids may forget
   * this writer's ids below it (RedisStore keeps one entry per writer, not one per batch). Absent:
   * the id is opaque, and a store remembers it for as long as it remembers any id.
   */
  readonly idFloor?: number;
  /**
   * Who sends the batch (a factory's incarnation id, at most 64 characters of `[A-Za-z0-9_.-]`):
   * with `quorum`, the store remembers who reported failures in the window.
   */
  readonly reporter?: string;
  /**
   * How many distinct reporters must have reported failures in the window for the trip policy to
   * open the breaker (1 or absent: any). Below it the breaker stays closed and the result says
   * `belowQuorum`: the reporter opens on its own only (`'local-open'`).
   */
  readonly quorum?: number;
  /**
   * The sender's adaptive-throttle rejection rate (0–1: the share of calls it turns away now), on
   * batches with failures of a breaker with `trip: adaptiveThrottle()`: the store keeps the latest
   * (`Snapshot.throttle`), so operators see it. It changes nothing else.
   */
  readonly throttleRate?: number;
}

/** The outcome of one half-open probe. */
export interface ProbeResult {
  /** The lease the probe was admitted with (`AcquireResult.lease`). */
  readonly lease: string;
  /** A failure re-opens the breaker; `successThreshold` successes close it; `ignored` only frees the slot. */
  readonly outcome: Outcome;
}

/** What `acquire` answers: a permit, or a rejection. */
export interface AcquireResult {
  /** True when the call may run. */
  readonly admitted: boolean;
  /** Set when not admitted. */
  readonly reason: RejectReason | null;
  /** When rejected, how long until the breaker may admit a call again, in ms; 0 when admitted. */
  readonly retryAfterMs: number;
  /** The generation the permit belongs to; outcomes must carry it. */
  readonly generation: number;
  /** The probe lease when the call was admitted as a half-open probe. */
  readonly lease: string | null;
  /**
   * The concurrency slot the call holds (with `policy.maxConcurrent` > 0): its outcome gives it
   * back (`OutcomeBatch.slots`). Null or absent: none.
   */
  readonly slot?: string | null;
  /** The computed state after this call (an open breaker whose period ended is now half-open). */
  readonly state: BreakerState;
  /** The operator override, or null. */
  readonly override: Override | null;
  /** When the open period ends, in the store's time (ms); 0 unless open. */
  readonly openUntil: number;
  /** The store's time when it answered (ms). */
  readonly now: number;
  /** The state change this call made (open to half-open, an override that lapsed), or null. */
  readonly transition: Transition | null;
  /**
   * The run of failures the store holds, when it tells (RedisStore does), for information: the
   * breaker writes every outcome whatever it says (a success not written because the run was
   * empty at acquire would let other processes' failures land before it and trip on a run that
   * was not consecutive).
   */
  readonly consecutiveFailures?: number;
  /**
   * When callers last saw the breaker close after rejecting, in the store's time (0: never, or
   * the store does not tell): breakers with a recovery ramp admit a rising share of calls after it.
   */
  readonly closedAt?: number;
}

/** What `record` and `force` answer. */
export interface UpdateResult {
  /** The breaker's state after the update. */
  readonly snapshot: Snapshot;
  /** The state change this update made, or null. */
  readonly transition: Transition | null;
  /** True when the batch was from an older generation and changed nothing. */
  readonly stale: boolean;
  /**
   * True when the trip policy would have opened the breaker but fewer than the batch's `quorum`
   * of reporters reported failures in the window: it stays closed for everyone else.
   */
  readonly belowQuorum?: boolean;
}

/** One reporter of failures in the window (see `BreakerRecord.reporters`). */
export interface Reporter {
  /** The reporter's id (`OutcomeBatch.reporter`). */
  id: string;
  /** The bucket of its latest failure (`floor(time / bucketMs)`). */
  bucket: number;
}
