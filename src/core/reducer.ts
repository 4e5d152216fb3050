import { SCHEMA_VERSION } from './types.js';
import type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  Bucket,
  CircuitState,
  ForceOptions,
  Lease,
  Outcome,
  OutcomeBatch,
  Override,
  Reporter,
  Snapshot,
  Transition,
  UpdateResult,
  WindowCounts,
} from './types.js';
import { outcomesCanTrip, shouldTrip } from './policy.js';
import { bucketIndex, currentBucket, windowCounts } from './window.js';

/**
 * The reducer: the executable form of DESIGN.md's semantics. Every store runs exactly these
 * transitions (MemoryStore calls these functions; the Redis Lua and the DynamoDB store port them
 * and are checked against them by the conformance suite).
 *
 * Each function takes ownership of `record` and changes it in place (the memory store's hot path
 * allocates nothing it does not have to); callers that need the old value clone it first. None
 * reads a clock or does I/O: `now` is passed in.
 */

/**
 * The generation a record starts at when it is created at `now` (the store's clock): a hundred per
 * millisecond since the epoch, so a record created again after the old one was lost (a restart
 * without persistence, an eviction, a flush) starts above every generation the old one reached,
 * and a breaker that remembers the old generations adopts the new record instead of ignoring it.
 * (The old record would have needed more than 100 transitions per millisecond of its life to
 * outrun it; a transition takes at least an open period.) Safe integers for another 2,500 years.
 *
 * It is always a multiple of 100, and `nextGeneration` never lands on one: a record whose
 * generation is a multiple of 100 has not changed state since it was created (`isFresh`).
 */
export function initialGeneration(now: number): number {
  return Math.max(1, Math.floor(now)) * 100;
}

/** The generation after `generation`: one more, skipping multiples of 100 (see `initialGeneration`). */
export function nextGeneration(generation: number): number {
  return generation % 100 === 99 ? generation + 2 : generation + 1;
}

/**
 * The generation a store answers for a breaker it holds nothing for (closed, no counts), when it
 * admits without creating a record, as `RedisStore` and `DynamoDBStore` do: a tenant that never
 * failed costs them no record at all.
 */
export const NO_RECORD = 0;

/**
 * Whether outcomes of calls admitted under `generation` count in `record`: the same generation, or
 * `NO_RECORD` while the record is closed, without an override, and has not changed state since it
 * was created (those calls were admitted while there was no record; the first outcome that needed
 * one created it).
 */
export function admittedUnder(record: BreakerRecord, generation: number): boolean {
  return (
    generation === record.generation ||
    (generation === NO_RECORD &&
      record.state === 'closed' &&
      record.override === null &&
      record.generation % 100 === 0)
  );
}

export function emptyRecord(generation = 1): BreakerRecord {
  return {
    schema: SCHEMA_VERSION,
    state: 'closed',
    override: null,
    generation,
    openedAt: 0,
    openUntil: 0,
    reopens: 0,
    consecutiveFailures: 0,
    probeSuccesses: 0,
    leases: [],
    buckets: [],
  };
}

export function circuitState(record: Pick<BreakerRecord, 'state' | 'override'>): CircuitState {
  if (record.override === 'forced-open' || record.override === 'forced-closed') return record.override;
  return record.state;
}

/** The bucket counting at `now`; a record's first one goes in an array of exactly one slot. */
function bucketAt(record: BreakerRecord, now: number, policy: BreakerPolicy): Bucket {
  if (record.buckets.length > 0)
    return currentBucket(record.buckets, now, policy.bucketMs, policy.bucketCount);
  const bucket: Bucket = {
    index: bucketIndex(now, policy.bucketMs),
    successes: 0,
    failures: 0,
    slow: 0,
    ignored: 0,
  };
  // A literal is allocated to size; a push onto [] would reserve 17 slots for every idle tenant.
  record.buckets = [bucket];
  return bucket;
}

/**
 * Drops probe leases and concurrency slots whose holder did not report in time, so a crashed
 * caller cannot wedge the breaker.
 */
function expireLeases(record: BreakerRecord, now: number): void {
  dropExpired(record.leases, now);
  if (record.slots !== undefined) dropExpired(record.slots, now);
}

function dropExpired(leases: Lease[], now: number): void {
  if (leases.length === 0) return;
  let kept = 0;
  for (const lease of leases) {
    if (lease.expiresAt > now) leases[kept++] = lease;
  }
  leases.length = kept;
}

/** Gives back the concurrency slots `ids` names (unknown or expired ones were given back already). */
function releaseSlots(record: BreakerRecord, ids: readonly string[] | undefined): void {
  const slots = record.slots;
  if (ids === undefined || ids.length === 0 || slots === undefined || slots.length === 0) return;
  let kept = 0;
  for (const slot of slots) {
    if (!ids.includes(slot.id)) slots[kept++] = slot;
  }
  slots.length = kept;
}

/** When the first of `leases` expires, as a wait from `now` (at least 1 ms), or `fallback` when there is none. */
function soonestExpiry(leases: readonly Lease[], now: number, fallback: number): number {
  let soonest = Infinity;
  for (const lease of leases) soonest = Math.min(soonest, lease.expiresAt);
  return soonest === Infinity ? fallback : Math.max(1, soonest - now);
}

/** The open period for the next open: backoff on consecutive re-opens, capped, then jitter. */
export function openPeriodMs(policy: BreakerPolicy, reopens: number, random: number, jitterMs = 0): number {
  const base = Math.min(policy.maxOpenMs, policy.openMs * Math.pow(policy.backoffMultiplier, reopens));
  return Math.round(base + base * policy.jitterRatio * random + jitterMs);
}

function open(record: BreakerRecord, policy: BreakerPolicy, now: number, batch: OutcomeBatch): void {
  record.reopens = record.state === 'half-open' ? record.reopens + 1 : 0;
  record.state = 'open';
  record.generation = nextGeneration(record.generation);
  record.openedAt = now;
  record.openUntil = now + openPeriodMs(policy, record.reopens, batch.random, batch.jitterMs);
  record.leases.length = 0;
  record.probeSuccesses = 0;
}

function close(record: BreakerRecord): void {
  if (record.reporters !== undefined) delete record.reporters;
  record.state = 'closed';
  record.generation = nextGeneration(record.generation);
  record.openUntil = 0;
  record.reopens = 0;
  record.consecutiveFailures = 0;
  record.probeSuccesses = 0;
  record.leases.length = 0;
  record.buckets.length = 0;
}

function toHalfOpen(record: BreakerRecord): void {
  record.state = 'half-open';
  record.generation = nextGeneration(record.generation);
  record.openUntil = 0;
  record.probeSuccesses = 0;
  record.leases.length = 0;
}

/** The longest `overrideReason` a store keeps (longer ones are cut). */
export const MAX_REASON_LENGTH = 200;

/**
 * Ends a timed override whose time is up (at a new generation): a `forced-open` lapses to
 * half-open (probes decide, as after any open), any other to the computed state. Returns the
 * circuit state before, or null when nothing lapsed.
 */
function lapse(record: BreakerRecord, now: number): CircuitState | null {
  const until = record.overrideUntil;
  if (until === undefined || until === 0 || now < until) return null;
  const from = circuitState(record);
  const was = record.override;
  record.override = null;
  record.overrideUntil = undefined;
  record.overrideReason = undefined;
  record.generation = nextGeneration(record.generation);
  if (was === 'forced-open') {
    record.state = 'half-open';
    record.openUntil = 0;
    record.probeSuccesses = 0;
    record.leases.length = 0;
  }
  return from;
}

/** `result` with the transition from `from` (before a lapse) to the record's state now. */
function sinceLapse<T extends { transition: Transition | null }>(
  from: CircuitState | null,
  record: BreakerRecord,
  result: T,
): T {
  if (from === null) return result;
  return { ...result, transition: transition(from, record) };
}

/**
 * Notes a close callers see (from a state that rejected: open, half-open, forced-open, to closed)
 * at `now`: the anchor of the recovery ramp. A forced-closed breaker admitted everything already.
 */
function noteClose(from: CircuitState, record: BreakerRecord, now: number): void {
  if (from !== 'closed' && from !== 'forced-closed' && circuitState(record) === 'closed')
    record.closedAt = now;
}

function transition(from: CircuitState, record: BreakerRecord): Transition | null {
  const to = circuitState(record);
  return from === to ? null : { from, to, generation: record.generation };
}

/**
 * Asks for a permit. Moves an open breaker whose period has ended to half-open (the caller that
 * does so reports the transition) and hands out probe leases up to `halfOpenMaxCalls`. With
 * `policy.maxConcurrent` > 0 and no override, every admitted call also takes a concurrency slot,
 * and a call that finds them all taken is rejected (`concurrency-limit`); a breaker with an
 * override does not limit (forced-closed and metrics-only never reject, forced-open rejects all).
 * `leaseId` must be unique per breaker; it names the probe lease and the slot it grants, if any.
 */
export function acquire(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  leaseId: string,
): AcquireResult {
  expireLeases(record, now);
  if (record.overrideUntil !== undefined) {
    const lapsed = lapse(record, now);
    if (lapsed !== null) return sinceLapse(lapsed, record, acquireNow(record, policy, now, leaseId));
  }
  return acquireNow(record, policy, now, leaseId);
}

function acquireNow(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  leaseId: string,
): AcquireResult {
  const override = record.override;
  if (override === 'forced-open') {
    const until = record.overrideUntil ?? 0;
    return reject(record, now, 'forced-open', until > 0 ? Math.max(1, until - now) : policy.openMs, null);
  }
  if (override === 'forced-closed') return admit(record, now, null, null, null);
  const limit = override === null ? policy.maxConcurrent : 0;
  if (record.state === 'closed') {
    if (limit > 0 && slotsFull(record, limit)) return rejectFull(record, policy, now, null);
    return admit(record, now, null, null, limit > 0 ? takeSlot(record, policy, now, leaseId) : null);
  }

  let moved: Transition | null = null;
  if (record.state === 'open') {
    if (now < record.openUntil) {
      if (override === 'metrics-only') return admit(record, now, null, null, null);
      return reject(record, now, 'open', record.openUntil - now, null);
    }
    const from = circuitState(record);
    toHalfOpen(record);
    moved = transition(from, record);
  }

  // half-open
  if (record.leases.length < policy.halfOpenMaxCalls) {
    if (limit > 0 && slotsFull(record, limit)) return rejectFull(record, policy, now, moved);
    record.leases.push({ id: leaseId, expiresAt: now + policy.probeLeaseMs });
    return admit(record, now, leaseId, moved, limit > 0 ? takeSlot(record, policy, now, leaseId) : null);
  }
  if (override === 'metrics-only') return admit(record, now, null, moved, null);
  return reject(record, now, 'half-open-full', soonestExpiry(record.leases, now, Infinity), moved);
}

/** Whether the `limit` concurrency slots are all taken (expired ones were dropped). */
function slotsFull(record: BreakerRecord, limit: number): boolean {
  return record.slots !== undefined && record.slots.length >= limit;
}

function takeSlot(record: BreakerRecord, policy: BreakerPolicy, now: number, id: string): string {
  const slot = { id, expiresAt: now + policy.concurrencyLeaseMs };
  if (record.slots === undefined) record.slots = [slot];
  else record.slots.push(slot);
  return id;
}

/** Rejects with `concurrency-limit`: the wait is until the first slot expires, if no outcome frees one sooner. */
function rejectFull(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  moved: Transition | null,
): AcquireResult {
  return reject(
    record,
    now,
    'concurrency-limit',
    soonestExpiry(record.slots ?? [], now, policy.concurrencyLeaseMs),
    moved,
  );
}

function admit(
  record: BreakerRecord,
  now: number,
  lease: string | null,
  moved: Transition | null,
  slot: string | null,
): AcquireResult {
  return {
    admitted: true,
    reason: null,
    retryAfterMs: 0,
    generation: record.generation,
    lease,
    slot,
    state: record.state,
    override: record.override,
    openUntil: record.openUntil,
    now,
    transition: moved,
    consecutiveFailures: record.consecutiveFailures,
    closedAt: record.closedAt ?? 0,
  };
}

function reject(
  record: BreakerRecord,
  now: number,
  reason: 'open' | 'half-open-full' | 'forced-open' | 'concurrency-limit',
  retryAfterMs: number,
  moved: Transition | null,
): AcquireResult {
  return {
    admitted: false,
    reason,
    retryAfterMs,
    generation: record.generation,
    lease: null,
    slot: null,
    state: record.state,
    override: record.override,
    openUntil: record.openUntil,
    now,
    transition: moved,
    consecutiveFailures: record.consecutiveFailures,
  };
}

/**
 * Records the outcomes of calls admitted under `batch.generation`. The concurrency slots the batch
 * names are given back first, whatever the generation. Otherwise a batch from an older
 * generation changes nothing. In closed, counts go to the window and the trip policy is
 * evaluated; in half-open, probe results close the breaker (after `successThreshold` successes)
 * or re-open it (any failure, with backoff).
 */
export function record(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  batch: OutcomeBatch,
): UpdateResult {
  expireLeases(record, now);
  releaseSlots(record, batch.slots);
  const lapsed = record.overrideUntil === undefined ? null : lapse(record, now);
  if (!admittedUnder(record, batch.generation) || record.override === 'forced-closed') {
    return sinceLapse(lapsed, record, {
      snapshot: snapshot(record, policy, now),
      transition: null,
      stale: true,
    });
  }
  const from = circuitState(record);
  let counts: WindowCounts | undefined;
  let belowQuorum = false;
  if (record.state === 'closed') {
    if (batch.reporter !== undefined && batch.failures > 0) noteReporter(record, policy, now, batch.reporter);
    if (batch.throttleRate !== undefined && batch.failures > 0) noteThrottle(record, now, batch.throttleRate);
    if (batch.successes + batch.failures + batch.slow + batch.ignored > 0) {
      const bucket = bucketAt(record, now, policy);
      bucket.successes += batch.successes;
      bucket.failures += batch.failures;
      bucket.slow += batch.slow;
      bucket.ignored += batch.ignored;
      record.consecutiveFailures =
        batch.successes > 0 ? batch.trailingFailures : record.consecutiveFailures + batch.failures;
    }
    // Opening changes neither the buckets nor the consecutive failures: the snapshot reuses these.
    counts = windowCounts(record, now, policy.bucketMs, policy.bucketCount);
    if (
      (outcomesCanTrip(policy.trip, batch.successes, batch.failures) && shouldTrip(policy.trip, counts)) ||
      (batch.trip === true && policy.trip.kind === 'custom')
    ) {
      const quorum = batch.quorum ?? 1;
      if (quorum <= 1 || reportersInWindow(record, policy, now) >= quorum) open(record, policy, now, batch);
      // Below the quorum the breaker stays closed; the reporter of the failures opens on its own
      // (a success that completed a failure rate's minimumCalls reports nothing).
      else belowQuorum = batch.reporter !== undefined;
    }
  } else if (record.state === 'half-open' && batch.probes.length > 0) {
    let failed = false;
    for (const probe of batch.probes) {
      const at = record.leases.findIndex((lease) => lease.id === probe.lease);
      if (at === -1) continue; // expired or unknown: its slot was already given back
      record.leases.splice(at, 1);
      if (probe.outcome === 'success') record.probeSuccesses += 1;
      else if (probe.outcome === 'failure') failed = true;
    }
    if (failed) open(record, policy, now, batch);
    else if (record.probeSuccesses >= policy.successThreshold) close(record);
  }
  noteClose(lapsed ?? from, record, now);
  const result: UpdateResult = {
    snapshot: snapshot(record, policy, now, counts),
    transition: transition(lapsed ?? from, record),
    stale: false,
  };
  return belowQuorum ? { ...result, belowQuorum } : result;
}

/**
 * Keeps the throttle rate a breaker reported with its failures (`OutcomeBatch.throttleRate`), in
 * millionths (what every store can hold as an integer), and when.
 */
export function noteThrottle(record: BreakerRecord, now: number, rate: number): void {
  record.throttle = { rate: throttleMillionths(rate) / 1_000_000, at: now };
}

/** A reported throttle rate as an integer number of millionths in [0, 1_000_000] (NaN: 0). */
export function throttleMillionths(rate: number): number {
  return Number.isFinite(rate) ? Math.round(Math.min(1, Math.max(0, rate)) * 1_000_000) : 0;
}

/** How many reporters a record remembers at most (`BreakerRecord.reporters`): the latest ones. */
export const MAX_REPORTERS = 32;

/** Remembers that `reporter` reported a failure now (quorum), forgetting those out of the window. */
function noteReporter(record: BreakerRecord, policy: BreakerPolicy, now: number, reporter: string): void {
  const bucket = Math.floor(now / policy.bucketMs);
  const kept = (record.reporters ?? []).filter(
    (r) => r.id !== reporter && r.bucket > bucket - policy.bucketCount,
  );
  kept.push({ id: reporter, bucket: Math.max(bucket, kept.at(-1)?.bucket ?? bucket) });
  // Oldest first, so the newest are kept.
  record.reporters = kept.length > MAX_REPORTERS ? kept.slice(kept.length - MAX_REPORTERS) : kept;
}

/** How many distinct reporters reported failures in the window ending now (or at the newest one). */
export function reportersInWindow(record: BreakerRecord, policy: BreakerPolicy, now: number): number {
  const reporters = record.reporters;
  if (reporters === undefined || reporters.length === 0) return 0;
  const newest = Math.max(Math.floor(now / policy.bucketMs), reporters.at(-1)!.bucket);
  let n = 0;
  for (const r of reporters) if (r.bucket > newest - policy.bucketCount) n += 1;
  return n;
}

/**
 * Whether `batch`, under `policy`, can only reset the run of failures: under a count policy
 * (`consecutiveFailures`, `failuresInWindow`, which read failures and the run, nothing else), a
 * batch of successes or ignored calls without failures, probes or a trip request. A shared store
 * applies such a batch with `resetRun`: it writes only when there is a run to reset, and makes no
 * record when it holds none, so a tenant that only succeeds costs it nothing. (`record` gives
 * the same state; it also counts the successes, which nothing reads under a count policy.)
 */
export function resetsOnly(policy: BreakerPolicy, batch: OutcomeBatch): boolean {
  const kind = policy.trip.kind;
  return (
    (kind === 'consecutive-failures' || kind === 'failures-in-window') &&
    batch.failures === 0 &&
    batch.probes.length === 0 &&
    batch.trip !== true &&
    batch.successes + batch.slow + batch.ignored > 0
  );
}

/**
 * Whether `batch` only gives back concurrency slots: nothing counted, no probe, no trip request.
 * A store holding no record for the breaker has nothing to give back, and makes none for it.
 */
export function releasesOnly(batch: OutcomeBatch): boolean {
  return (
    batch.slots !== undefined &&
    batch.slots.length > 0 &&
    batch.successes + batch.failures + batch.slow + batch.ignored === 0 &&
    batch.probes.length === 0 &&
    batch.trip !== true
  );
}

/**
 * `record` for a batch that `resetsOnly`: the concurrency slots it names are given back, and a
 * closed breaker at the batch's generation takes the batch's run (`trailingFailures`, 0) when the
 * batch has a success; nothing else changes.
 */
export function resetRun(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  batch: OutcomeBatch,
): UpdateResult {
  expireLeases(record, now);
  releaseSlots(record, batch.slots);
  const lapsed = record.overrideUntil === undefined ? null : lapse(record, now);
  if (!admittedUnder(record, batch.generation) || record.override === 'forced-closed') {
    return sinceLapse(lapsed, record, {
      snapshot: snapshot(record, policy, now),
      transition: null,
      stale: true,
    });
  }
  if (record.state === 'closed' && batch.successes > 0) record.consecutiveFailures = batch.trailingFailures;
  return sinceLapse(lapsed, record, {
    snapshot: snapshot(record, policy, now),
    transition: null,
    stale: false,
  });
}

/**
 * `record` for one outcome of a call admitted in closed state with no override, for a store that
 * answers in-process: the same change as `record` with a batch of one, without building the batch
 * or the snapshot. Returns the transition (closed to open) or null, or `undefined` when the
 * precondition does not hold (the record is not closed, has an override, or is at another
 * generation); then nothing was changed and the caller must use `record`.
 */
export function recordClosedOutcome(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  generation: number,
  outcome: Outcome,
  slow: boolean,
  random: number,
  jitterMs: number,
): Transition | null | undefined {
  if (record.state !== 'closed' || record.override !== null || record.generation !== generation) {
    return undefined;
  }
  const bucket = bucketAt(record, now, policy);
  const trip = policy.trip;
  if (slow) bucket.slow += 1;
  if (outcome === 'success') {
    bucket.successes += 1;
    record.consecutiveFailures = 0;
    // Only a failure rate can trip on a success (outcomesCanTrip).
    if (trip.kind !== 'failure-rate') return null;
  } else if (outcome === 'ignored') {
    bucket.ignored += 1;
    return null;
  } else {
    bucket.failures += 1;
    record.consecutiveFailures += 1;
  }
  const trips =
    trip.kind === 'consecutive-failures'
      ? record.consecutiveFailures >= trip.threshold
      : shouldTrip(trip, windowCounts(record, now, policy.bucketMs, policy.bucketCount));
  if (!trips) return null;
  open(record, policy, now, { ...NOTHING, generation, random, jitterMs });
  return { from: 'closed', to: 'open', generation: record.generation };
}

/**
 * Opens a closed breaker at `generation` whose window already holds outcomes that trip the policy:
 * for a store that counted them with an atomic update of its own and now asks whether they trip,
 * with the same rule `record` applies after counting. Stale when the generation moved on.
 */
export function tripIfDue(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  generation: number,
  random: number,
  jitterMs = 0,
  quorum = 1,
): UpdateResult {
  expireLeases(record, now);
  if (!admittedUnder(record, generation) || record.override === 'forced-closed') {
    return { snapshot: snapshot(record, policy, now), transition: null, stale: true };
  }
  const from = circuitState(record);
  const counts = windowCounts(record, now, policy.bucketMs, policy.bucketCount);
  if (
    record.state === 'closed' &&
    shouldTrip(policy.trip, counts) &&
    (quorum <= 1 || reportersInWindow(record, policy, now) >= quorum)
  ) {
    open(record, policy, now, { ...NOTHING, generation, random, jitterMs });
  }
  return {
    snapshot: snapshot(record, policy, now, counts),
    transition: transition(from, record),
    stale: false,
  };
}

const NOTHING: OutcomeBatch = {
  generation: 0,
  successes: 0,
  failures: 0,
  trailingFailures: 0,
  slow: 0,
  ignored: 0,
  probes: [],
  random: 0,
};

/**
 * Sets or clears an operator override. Any change starts a new generation, so results of calls
 * admitted before it cannot move the state it leaves behind.
 */
export function force(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  override: Override | null,
  options: ForceOptions = {},
): UpdateResult {
  expireLeases(record, now);
  const lapsed = record.overrideUntil === undefined ? null : lapse(record, now);
  const from = lapsed ?? circuitState(record);
  const forMs = options.forMs ?? 0;
  const until = override !== null && forMs > 0 ? now + Math.ceil(forMs) : 0;
  if (options.yieldToOperator === true && override === 'forced-open' && record.override !== null) {
    // An override with no time is an operator's; a timed forced-open only ever gets longer.
    const current = record.overrideUntil ?? 0;
    if (record.override !== 'forced-open' || current === 0 || until <= current) {
      return { snapshot: snapshot(record, policy, now), transition: transition(from, record), stale: false };
    }
  }
  if (record.override !== override) {
    record.override = override;
    record.generation = nextGeneration(record.generation);
    record.leases.length = 0;
    record.probeSuccesses = 0;
  }
  if (until > 0) {
    record.overrideUntil = until;
    record.overrideReason = options.reason?.slice(0, MAX_REASON_LENGTH);
  } else if (record.overrideUntil !== undefined || record.overrideReason !== undefined) {
    record.overrideUntil = undefined;
    record.overrideReason = override === null ? undefined : options.reason?.slice(0, MAX_REASON_LENGTH);
  } else if (override !== null && options.reason !== undefined) {
    record.overrideReason = options.reason.slice(0, MAX_REASON_LENGTH);
  }
  noteClose(from, record, now);
  return { snapshot: snapshot(record, policy, now), transition: transition(from, record), stale: false };
}

/**
 * Starts the breaker afresh, for an operator: closed, with no window counts, no consecutive
 * failures, no probe leases or probe successes and no backoff, at a new generation (so outcomes of
 * calls admitted before it are stale). The operator override stays: clearing it is
 * `force(record, policy, now, null)`. Reports the transition when the state callers see changed
 * (open or half-open to closed); a closed breaker only forgets its counts. A store that holds
 * nothing for the breaker has nothing to reset and must not create a record for it (see
 * `Store.reset`).
 */
export function reset(record: BreakerRecord, policy: BreakerPolicy, now: number): UpdateResult {
  const lapsed = record.overrideUntil === undefined ? null : lapse(record, now);
  const from = lapsed ?? circuitState(record);
  close(record);
  noteClose(from, record, now);
  return { snapshot: snapshot(record, policy, now), transition: transition(from, record), stale: false };
}

/**
 * The snapshot of a record at `now`. Does not change the record. `counts`, when given, must be
 * the record's window counts at `now` (a caller that just computed them saves the work).
 */
export function snapshot(
  record: BreakerRecord,
  policy: BreakerPolicy,
  now: number,
  counts: WindowCounts = windowCounts(record, now, policy.bucketMs, policy.bucketCount),
): Snapshot {
  const until = record.overrideUntil ?? 0;
  if (until > 0 && now >= until) {
    // A timed override whose time is up reads as lapsed (the next write makes it so).
    const lapsed = { ...record, leases: [...record.leases] };
    if (record.slots !== undefined) lapsed.slots = [...record.slots];
    lapse(lapsed, now);
    return snapshot(lapsed, policy, now, counts);
  }
  const state = circuitState(record);
  let retryAfterMs = 0;
  if (state === 'forced-open') retryAfterMs = until > 0 ? Math.max(1, until - now) : policy.openMs;
  else if (state === 'open') retryAfterMs = Math.max(0, record.openUntil - now);
  let activeProbes = 0;
  for (const lease of record.leases) if (lease.expiresAt > now) activeProbes += 1;
  let activeSlots = 0;
  if (record.slots !== undefined) for (const slot of record.slots) if (slot.expiresAt > now) activeSlots += 1;
  const taken: Snapshot = {
    state: record.state,
    override: record.override,
    circuitState: state,
    generation: record.generation,
    openUntil: record.openUntil,
    retryAfterMs,
    counts,
    activeProbes,
    activeSlots,
    probeSuccesses: record.probeSuccesses,
    reopens: record.reopens,
    now,
    overrideUntil: record.override === null ? 0 : until,
    overrideReason: record.override === null ? null : (record.overrideReason ?? null),
    closedAt: record.closedAt ?? 0,
  };
  const throttle = record.throttle;
  return throttle === undefined
    ? taken
    : { ...taken, throttle: { rate: throttle.rate, reportedAt: throttle.at } };
}

/** Whether `value` is a record this schema version can use (stores reset anything else). */
export function isValidRecord(value: unknown): value is BreakerRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    r.schema === SCHEMA_VERSION &&
    (r.state === 'closed' || r.state === 'open' || r.state === 'half-open') &&
    (r.override === null ||
      r.override === 'forced-open' ||
      r.override === 'forced-closed' ||
      r.override === 'metrics-only') &&
    isCount(r.generation) &&
    r.generation >= 1 &&
    isCount(r.openedAt) &&
    isCount(r.openUntil) &&
    isCount(r.reopens) &&
    isCount(r.consecutiveFailures) &&
    isCount(r.probeSuccesses) &&
    Array.isArray(r.leases) &&
    r.leases.every(isLease) &&
    (r.slots === undefined || (Array.isArray(r.slots) && r.slots.every(isLease))) &&
    Array.isArray(r.buckets) &&
    r.buckets.every(
      (b: unknown) =>
        typeof b === 'object' &&
        b !== null &&
        Number.isInteger((b as Bucket).index) &&
        isCount((b as Bucket).successes) &&
        isCount((b as Bucket).failures) &&
        isCount((b as Bucket).slow) &&
        isCount((b as Bucket).ignored),
    ) &&
    (r.overrideUntil === undefined || isCount(r.overrideUntil)) &&
    (r.reporters === undefined ||
      (Array.isArray(r.reporters) &&
        r.reporters.length <= MAX_REPORTERS &&
        r.reporters.every(
          (x: unknown) =>
            typeof x === 'object' &&
            x !== null &&
            typeof (x as Reporter).id === 'string' &&
            Number.isInteger((x as Reporter).bucket),
        ))) &&
    (r.closedAt === undefined || isCount(r.closedAt)) &&
    (r.throttle === undefined || isThrottle(r.throttle)) &&
    (r.overrideReason === undefined ||
      (typeof r.overrideReason === 'string' && r.overrideReason.length <= MAX_REASON_LENGTH))
  );
}

function isThrottle(t: unknown): boolean {
  if (typeof t !== 'object' || t === null) return false;
  const { rate, at } = t as { rate?: unknown; at?: unknown };
  return typeof rate === 'number' && rate >= 0 && rate <= 1 && isCount(at);
}

function isLease(l: unknown): boolean {
  return (
    typeof l === 'object' &&
    l !== null &&
    typeof (l as { id?: unknown }).id === 'string' &&
    isCount((l as { expiresAt?: unknown }).expiresAt)
  );
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
