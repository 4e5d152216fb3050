import type {
  AcquireResult,
  BreakerPolicy,
  ForceOptions,
  OutcomeBatch,
  Override,
  Snapshot,
  Transition,
  UpdateResult,
} from './core/types.js';

export type {
  AcquireResult,
  BreakerPolicy,
  ForceOptions,
  OutcomeBatch,
  Override,
  ProbeResult,
  Snapshot,
  Transition,
  UpdateResult,
} from './core/types.js';

/** A value, or a promise of it: an in-process store answers synchronously and saves a tick. */
export type Awaitable<T> = T | PromiseLike<T>;

/** A state change a store pushes to every subscriber (Redis pub/sub, Postgres NOTIFY). */
export interface StateChangeMessage extends Transition {
  /** The name of the breaker that changed (the key it passes to the store). */
  readonly key: string;
  /** When the new state admits calls again (open), in the store's clock; 0 otherwise. */
  readonly openUntil: number;
  /** The store's time when the change happened. */
  readonly now: number;
  /** The override after the change, when the store sends it (a metrics-only breaker never rejects). */
  readonly override?: Override | null;
}

/**
 * How long calls to a store usually take, so the breaker's default timeouts fit it. A store that
 * declares none gets 5,000 ms for first contact and 200–2,000 ms per call.
 */
export interface StoreTiming {
  /** Bound of a process's first calls, which include connecting (TCP, TLS, credentials). */
  readonly connectTimeoutMs: number;
  /** Floor of the adaptive per-call timeout. */
  readonly minCallTimeoutMs: number;
  /** Ceiling of the adaptive per-call timeout. */
  readonly maxCallTimeoutMs: number;
}

/** Options of `Store.subscribe`. */
export interface SubscribeOptions {
  /**
   * Called when pushes may have been missed (the subscription dropped and came back, or took a
   * while to start): every breaker should re-read the state it relies on.
   */
  readonly onResync?: () => void;
  /** Aborting it unsubscribes, like the returned function, even before `subscribe` resolved. */
  readonly signal?: AbortSignal;
}

/** What `Store.recordThenAcquire` answers: each half as `record` and `acquire` would. */
export interface RecordedAcquire {
  /** The record's answer. */
  readonly update: UpdateResult;
  /** The acquire's answer, made after the record. */
  readonly acquire: AcquireResult;
}

/** One page of `Store.list`. */
export interface ListPage {
  /** The breaker names on this page that start with the prefix. */
  readonly keys: readonly string[];
  /** Pass back to get the next page; null when there is none. */
  readonly cursor: string | null;
}

/**
 * Where breaker state lives. Every method is one atomic round trip (one Lua script, one
 * conditional write, one SQL statement) and runs the reducer of `circuitry/core` semantics.
 * The breaker talks to stores only through this interface; `describeStoreConformance` from
 * `circuitry/testing` checks an implementation against it.
 *
 * A store takes the time from its own clock (Redis: the server's `TIME`), never from the caller.
 */
export interface Store {
  /** Admit a call (with its generation, and a probe lease in half-open) or reject it. */
  acquire(key: string, policy: BreakerPolicy): Awaitable<AcquireResult>;
  /** Record the outcomes of calls admitted under `batch.generation`. */
  record(key: string, policy: BreakerPolicy, batch: OutcomeBatch): Awaitable<UpdateResult>;
  /**
   * `record(key, policy, batch)` then `acquire(key, policy)`, the acquire after the record has
   * landed: what a breaker sends when a call starts while the outcome of a call that just ended
   * (one its caller does not wait for) has not left yet, so the two reach the store in the order
   * they happened and, where the store can, cost one round trip instead of two. Each half answers
   * exactly what the method alone would (the record's batch id deduplicated as usual; a record that
   * fails fails the whole call, acquiring nothing). Optional: a breaker on a store without it sends
   * the two apart. Every store circuitry ships has it (`RedisStore`: one script; `PostgresStore`
   * and `DynamoDBStore`: one read when the breaker has no record and the batch only resets a run,
   * else the two calls in order); the conformance suite checks it.
   */
  recordThenAcquire?(key: string, policy: BreakerPolicy, batch: OutcomeBatch): Awaitable<RecordedAcquire>;
  /** The breaker's state, or null when the store holds nothing for `key`. Changes nothing. */
  inspect(key: string, policy: BreakerPolicy): Awaitable<Snapshot | null>;
  /**
   * Set (or, with null, clear) an operator override; `options.forMs` makes it lapse after that
   * long of the store's time (a timed `forced-open` lapses to half-open, any other to the
   * computed state), `reason` says why, and `yieldToOperator` (what `openFor` uses) leaves an
   * override without a time alone and never shortens a timed forced-open. A store written
   * before timed overrides ignores `options`: the conformance suite says so.
   */
  force(
    key: string,
    policy: BreakerPolicy,
    override: Override | null,
    options?: ForceOptions,
  ): Awaitable<UpdateResult>;
  /**
   * Start the breaker afresh, for an operator (`npx circuitry reset`): state closed; window
   * counts, consecutive failures, backoff, half-open probe leases and probe successes forgotten;
   * a new generation, strictly greater than the old one, so outcomes of calls admitted before the
   * reset are stale. The operator override is kept (clearing it is `force(key, policy, null)`).
   * When the state callers see changes (open or half-open to closed) the result carries the
   * transition and the store pushes it to subscribers like any other; a closed breaker only
   * forgets its counts, which is no transition.
   *
   * A key the store holds nothing for has nothing to forget: nothing is written (`inspect` stays
   * null) and the result is the snapshot of a fresh closed breaker at the store's time (the
   * record `acquire` or `force` would start from), with no transition and `stale` false.
   *
   * Optional so that stores written before it keep compiling; every store circuitry ships has it.
   * The operator tools fall back to changing the override and setting it back (a new generation,
   * counts kept) for a store without it.
   */
  reset?(key: string, policy: BreakerPolicy): Awaitable<UpdateResult>;
  /** Keys that start with `prefix`, a page at a time, for operators and tools. */
  list(prefix: string, cursor?: string | null): Awaitable<ListPage>;
  /**
   * Push state changes made by any process to `listener`. Resolves once subscribed, or once the
   * first attempt failed (the store keeps retrying with backoff and calls `onResync` when it gets
   * through); the returned function unsubscribes and closes whatever the store opened for it, and
   * settles promptly even when the store is unreachable. Stores that cannot push leave this out
   * and are polled.
   */
  subscribe?(
    listener: (message: StateChangeMessage) => void,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>>;
  /**
   * True when the calls one process makes reach the store, and are applied, in the order it makes
   * them (one connection answered in order, as `RedisStore`'s). A breaker on a store that does not
   * say so sends its next `acquire` only after a write it did not wait for has landed, when that
   * write can change the answer (a concurrency slot given back, a success under a failure rate):
   * a call that starts after another ended must find the store as that one left it. @defaultValue false
   */
  readonly ordered?: boolean;
  /** Latency bounds for the breaker's default timeouts. @defaultValue 5,000 ms first contact, 200–2,000 ms per call */
  readonly timing?: StoreTiming;
  /**
   * True when the store enforces `policy.maxConcurrent` atomically: `acquire` takes a concurrency
   * slot with the admission (`AcquireResult.slot`), or rejects with `concurrency-limit` when they
   * are all taken; `record` gives back the slots of `OutcomeBatch.slots` whatever the batch's
   * generation; a slot expires after `policy.concurrencyLeaseMs`. A breaker with `maxConcurrent`
   * refuses a store that does not say so. Every store circuitry ships does;
   * `describeStoreConformance(..., { concurrencyLimit: true })` checks it.
   */
  readonly limitsConcurrency?: boolean;
  /**
   * Quorum support (breaker option `quorum`): `record` remembers who reported failures in the
   * window (`OutcomeBatch.reporter`) and opens only when `OutcomeBatch.quorum` of them did
   * (`UpdateResult.belowQuorum` otherwise); `heartbeat` marks a reporter active for `ttlMs` of the
   * store's time and answers how many are active now, itself included. A breaker with `quorum`
   * refuses a store without it. Every store circuitry ships has it;
   * `describeStoreConformance(..., { quorum: true })` checks it.
   */
  heartbeat?(reporter: string, ttlMs: number): Awaitable<number>;
}
