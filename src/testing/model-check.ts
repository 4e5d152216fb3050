import { it } from 'node:test';

import type { Clock } from '../core/clock.js';
import { consecutiveFailures, failureRate, failuresInWindow } from '../core/policy.js';
import * as reducer from '../core/reducer.js';
import { NO_RECORD } from '../core/reducer.js';
import type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  CircuitState,
  ForceOptions,
  Outcome,
  OutcomeBatch,
  Override,
  RejectReason,
  Snapshot,
  TripPolicy,
  UpdateResult,
} from '../core/types.js';
import type { CircuitBreaker, Permit } from '../breaker.js';
import { internal } from '../breaker.js';
import { isCircuitOpenError } from '../errors.js';
import { BreakerFactory } from '../factory.js';
import type { BreakerOptions } from '../options.js';
import { resolveOptions } from '../options.js';
import { StoreHealth } from '../store-health.js';
import type { Awaitable, ListPage, RecordedAcquire, Store } from '../store.js';
import { ManualClock } from './manual-clock.js';
import { seededRandom } from './seeded-random.js';

/**
 * A concurrent model check of a store and the breakers that share it: several clients (each its own
 * `BreakerFactory` on its own store connection) run seeded random histories of acquires, calls,
 * two-step permits settled in any order, operator overrides and resets, clock moves and injected
 * store faults (lost replies, failed writes, late replies), all against one breaker, some of them
 * (for a store that limits concurrency) under a concurrency limit of 2. Every step is
 * checked against a sequential reference: the reducer of `circuitry/core` applied to the same
 * operations in the order the store applied them. A violation names its seed and a shortened
 * history that still fails.
 *
 * Steps run one at a time and wait until every store call they started has settled (writes the
 * breaker does not make its caller wait for included), so the store applies outcomes in completion
 * order and the reference knows that order, but for `settle-cross` (two or three clients' writes
 * in flight at once), whose order the reference takes from the store's state: any order is right,
 * a state no order gives is a violation.
 */

/** What the model check needs of a store. */
export interface ModelCheckHarness {
  /**
   * A store for one client, on a connection of its own, sharing its data with every other store
   * this harness makes, whose time is `clock` (the store must read the time from it: a
   * `MemoryStore`'s `clock`, `RedisStore`/`PostgresStore`'s `timeOffsetMs: () => clock.now() -
   * Date.now()`, `DynamoDBStore`'s `clock`). Called once per client and once for an observer.
   */
  makeStore(clock: Clock): Store | Promise<Store>;
  /** Called when the run ends: close what `makeStore` opened. */
  close?(): void | Promise<void>;
}

/** The trip policies a history may run under. */
export type ModelCheckPolicy = 'consecutive-failures' | 'failures-in-window' | 'failure-rate';

/** Options of `runModelCheck` and `describeModelCheck` (`replayModelCheck` takes some of them). */
export interface ModelCheckOptions {
  /** The run's seed: the same seed runs the same histories. @defaultValue random */
  readonly seed?: number;
  /** Histories to run (the run also stops when `budgetMs` is spent). @defaultValue Infinity */
  readonly histories?: number;
  /** Wall-clock budget of the run. @defaultValue 10_000 (`describeModelCheck`: 6_000, or `CIRCUITRY_MODEL_CHECK_MS`) */
  readonly budgetMs?: number;
  /** Steps per history. @defaultValue 40 */
  readonly steps?: number;
  /** Clients (factories, each on its own store connection). @defaultValue 3 */
  readonly clients?: number;
  /**
   * The store faults to inject into writes: `lost-reply` (the write lands, its reply is lost, the
   * breaker writes the batch again: a store must count it once, by its `OutcomeBatch.id`),
   * `failed-write` (the write never reaches the store) and `late-reply` (it lands, the reply
   * comes after the breaker's timeout). `false` for none. A store that cannot lose a reply (one in
   * process) leaves out `lost-reply`. @defaultValue all three
   */
  readonly faults?: boolean | readonly Fault[];
  /** Trip policies to draw from. @defaultValue all three */
  readonly policies?: readonly ModelCheckPolicy[];
  /**
   * Half the histories run under a concurrency limit (`maxConcurrent: 2`): slots taken by
   * acquires, held by permits, given back by their outcomes (faults included) or expired.
   * @defaultValue whether the store says it limits concurrency (`Store.limitsConcurrency`)
   */
  readonly concurrencyLimit?: boolean;
  /**
   * Some histories (two in five) run with a quorum (`quorum: { minReporters: 2, minFraction: 0.5
   * }`): every client is a reporter, each failure is recorded with the reporter and quorum its
   * breaker sent, and a client whose failures trip the policy below the quorum must open on its
   * own (`'local-open'`, for its open period, with backoff) while the store stays closed.
   * @defaultValue whether the store has `heartbeat`
   */
  readonly quorum?: boolean;
  /**
   * Histories include `settle-cross` steps: permits of two or three clients settled in one
   * event-loop turn, whose writes the store applies in any order (not in histories with a quorum).
   * `'pairs'`: of two clients only (a store known to fail with three: `DynamoDBStore`, see
   * docs/dynamodb.md); false: none (those steps settle one permit).
   * @defaultValue true
   */
  readonly crossClient?: boolean | 'pairs';
  /** Shorten a failing history before reporting it. @defaultValue true */
  readonly shrink?: boolean;
  /** Progress lines (one per 50 histories, and the shrinking). @defaultValue none */
  readonly log?: (line: string) => void;
}

/** What a run did. */
export interface ModelCheckReport {
  /** The run's seed: pass it back as `seed` to run the same histories. */
  readonly seed: number;
  /** How many histories ran, all without a violation. */
  readonly histories: number;
  /** How many steps those histories had in all. */
  readonly steps: number;
  /** How many store faults those histories injected. */
  readonly faults: number;
  /** How many of those histories ran with a quorum, and how many local opens they checked. */
  readonly quorum: {
    /** Histories that ran with a quorum. */
    readonly histories: number;
    /** Local opens (a trip below the quorum) those histories checked. */
    readonly localOpens: number;
  };
}

/** One step of a history. `pick` chooses among the permits held at that moment (modulo their count). */
export type ModelStep =
  | {
      /** A client asks for a permit (`acquire`) and holds it. */
      readonly op: 'acquire';
      /** Which client (modulo the number of clients). */
      readonly client: number;
    }
  | {
      /** A held permit is settled. */
      readonly op: 'settle';
      /** Which held permit (modulo how many are held); nothing happens when none is. */
      readonly pick: number;
      /** How the permit is settled. */
      readonly outcome: Outcome;
      /** The store fault injected into the write of the outcome, or null. */
      readonly fault: Fault | null;
    }
  | {
      /**
       * A held permit is settled and, in the same event-loop turn (before an outcome its caller
       * does not wait for has left), its client asks for a permit again: the acquire carries the
       * outcome where the store can (`Store.recordThenAcquire`).
       */
      readonly op: 'settle-acquire';
      /** Which held permit (modulo how many are held); nothing happens when none is. */
      readonly pick: number;
      /** How the permit is settled. */
      readonly outcome: Outcome;
    }
  | {
      /**
       * Two permits a client holds fail in the same event-loop turn, so both writes are in flight
       * at once, each with a fault of its own (one may be re-sent after the other landed). Both
       * fail: in whichever order the store applies them, the reference's counts are the same.
       */
      readonly op: 'settle-pair';
      /** Which held permit (modulo how many are held); the other is the next one its client holds. */
      readonly pick: number;
      /** The store faults injected into the two writes, in settling order. */
      readonly faults: readonly [Fault | null, Fault | null];
    }
  | {
      /**
       * Permits of two or three different clients are settled in the same event-loop turn: their
       * writes are in flight at once on as many connections, and the store applies them in an
       * order the model check cannot see. The reference takes an order the store's state matches
       * (any of them); a store that matches none lost, doubled or misplaced an outcome.
       */
      readonly op: 'settle-cross';
      /**
       * Which held permit (modulo how many are held); each other one is the first held by a
       * client not picked yet.
       */
      readonly pick: number;
      /** How the permits are settled, in that order: two or three (as many as are found). */
      readonly outcomes: readonly Outcome[];
    }
  | {
      /** A client runs a call through `execute`. */
      readonly op: 'execute';
      /** Which client (modulo the number of clients). */
      readonly client: number;
      /** How the call ends. */
      readonly outcome: Outcome;
      /** The store fault injected into the write of the outcome, or null. */
      readonly fault: Fault | null;
    }
  | {
      /** The clock moves forward. */
      readonly op: 'advance';
      /** How far, in ms (not past the history's 40 s). */
      readonly ms: number;
    }
  | {
      /** An operator sets or clears an override, through a store of its own. */
      readonly op: 'force';
      /** The override, or null to clear it. */
      readonly override: Override | null;
      /** The override lapses after this many ms; absent: it stays. */
      readonly forMs?: number;
    }
  | {
      /** A client opens the breaker for a while (`openFor`). */
      readonly op: 'open-for';
      /** Which client (modulo the number of clients). */
      readonly client: number;
      /** For how long, in ms. */
      readonly ms: number;
    }
  | {
      /** An operator resets the breaker. */
      readonly op: 'reset';
    };

/** A store fault injected into the write of one outcome. */
export type Fault = 'lost-reply' | 'failed-write' | 'late-reply';

/** A history the store and its breakers disagreed with the reference on. */
export class ModelCheckViolation extends Error {
  /** The failing history's seed: `replayModelCheck(harness, seed)` runs it again. */
  readonly seed: number;
  /** The trip policy the history ran under. */
  readonly policy: ModelCheckPolicy;
  /** The concurrency limit the history ran under (0: none). */
  readonly maxConcurrent: number;
  /** Whether the history ran with a quorum. */
  readonly quorum: boolean;
  /** The failing history, shortened unless `shrink` was false. */
  readonly history: readonly ModelStep[];
  constructor(
    seed: number,
    policy: ModelCheckPolicy,
    history: readonly ModelStep[],
    failure: string,
    maxConcurrent = 0,
    quorum = false,
  ) {
    const limit = `${maxConcurrent > 0 ? `, maxConcurrent ${maxConcurrent}` : ''}${quorum ? ', quorum' : ''}`;
    super(
      `model check violation (seed ${seed}, ${policy}${limit}, ${history.length} steps; replay with --seed ${seed}):\n` +
        `${failure}\nhistory:\n${history.map((s, i) => `  ${i + 1}. ${describeStep(s)}`).join('\n')}`,
    );
    this.name = 'ModelCheckViolation';
    this.seed = seed;
    this.policy = policy;
    this.maxConcurrent = maxConcurrent;
    this.quorum = quorum;
    this.history = history;
  }
}

const OPEN_MS = 2_500;
// Every clock move is a whole number of seconds, and every boundary the store computes (buckets
// of 1 s, open periods of 2.5, 3.75, 5.625 and 6.5 s, probe leases of 3.5 s, concurrency slots of
// 4.5 s) sits at least 250 ms away from the times steps run at: a store whose time runs a few ms
// behind or ahead of the model's (a server's clock read a moment later) decides every comparison
// the same way.
const MODEL_OPTIONS: BreakerOptions = {
  openMs: OPEN_MS,
  backoff: { multiplier: 1.5, maxOpenMs: 6_500 },
  jitter: 0,
  halfOpenMaxCalls: 2,
  successThreshold: 2,
  probeLeaseMs: 3_500,
  maxStalenessMs: 0,
  flushIntervalMs: 0,
  storeTimeoutMs: 400,
  onStoreFailure: 'local',
  // The ramp is a random admission on top of the store's state (checked by its own tests).
  recovery: false,
};
// Histories stay well inside every store's garbage-collection TTL (window + open + lease + 60 s).
const MAX_HISTORY_MS = 40_000;
/** The concurrency limit of histories that run under one, and how long a slot lasts (see MODEL_OPTIONS). */
const MODEL_LIMIT = 2;
const MODEL_SLOT_LEASE_MS = 4_500;
/** The quorum of histories that run with one (see `ModelCheckOptions.quorum`). */
const MODEL_QUORUM = { minReporters: 2, minFraction: 0.5 };

function tripOf(policy: ModelCheckPolicy): TripPolicy {
  switch (policy) {
    case 'consecutive-failures':
      return consecutiveFailures(3);
    case 'failures-in-window':
      return failuresInWindow(3, 10_000);
    case 'failure-rate':
      return failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 });
  }
}

/** The error a step's call throws to be counted as ignored. */
const IGNORED = new Error('model check: ignored');
const FAILED = new Error('model check: failure');

/** Every order of `n` items (indices), the order given first. */
function orders(n: number): number[][] {
  if (n <= 1) return [Array.from({ length: n }, (_, i) => i)];
  const out: number[][] = [];
  for (const rest of orders(n - 1)) {
    for (let at = rest.length; at >= 0; at--) out.push([...rest.slice(0, at), n - 1, ...rest.slice(at)]);
  }
  return out;
}

/** Settles a held permit as `outcome` says. */
function settlePermit(permit: Permit, outcome: Outcome): Promise<void> {
  return outcome === 'success'
    ? permit.success()
    : outcome === 'failure'
      ? permit.failure()
      : permit.ignore();
}

/** A step in words, as a violation's message lists it. */
export function describeStep(step: ModelStep): string {
  switch (step.op) {
    case 'acquire':
      return `client ${step.client} acquires a permit`;
    case 'settle':
      return `permit #${step.pick} settles: ${step.outcome}${step.fault === null ? '' : ` (${step.fault})`}`;
    case 'settle-acquire':
      return `permit #${step.pick} settles: ${step.outcome}, and its client acquires again at once`;
    case 'settle-pair':
      return `permit #${step.pick} and the next of its client's fail in one turn${step.faults.some((f) => f !== null) ? ` (${step.faults.map((f) => f ?? 'no fault').join(', ')})` : ''}`;
    case 'settle-cross':
      return `permit #${step.pick} settles: ${step.outcomes[0]}, and in the same turn the first permit of ${step.outcomes.length === 2 ? 'another client' : 'each of two other clients'}: ${step.outcomes.slice(1).join(', ')}`;
    case 'execute':
      return `client ${step.client} executes: ${step.outcome}${step.fault === null ? '' : ` (${step.fault})`}`;
    case 'advance':
      return `the clock moves ${step.ms} ms`;
    case 'force':
      return `an operator ${step.override === null ? 'clears the override' : `forces ${step.override}`}${step.forMs === undefined ? '' : ` for ${step.forMs} ms`}`;
    case 'open-for':
      return `client ${step.client} opens the breaker for ${step.ms} ms (openFor)`;
    case 'reset':
      return 'an operator resets the breaker';
  }
}

/** Makes a random history. */
export function randomHistory(
  random: () => number,
  steps: number,
  clients: number,
  faults: readonly Fault[],
  crossClient: boolean | 'pairs' = true,
): ModelStep[] {
  const history: ModelStep[] = [];
  const outcome = (): Outcome => {
    const r = random();
    return r < 0.5 ? 'failure' : r < 0.9 ? 'success' : 'ignored';
  };
  const fault = (): Fault | null => {
    if (faults.length === 0 || random() >= 0.08) return null;
    const r = random();
    const kind: Fault = r < 0.45 ? 'lost-reply' : r < 0.9 ? 'failed-write' : 'late-reply';
    return faults.includes(kind) ? kind : faults[0]!;
  };
  for (let i = 0; i < steps; i++) {
    const r = random();
    const client = Math.floor(random() * clients);
    if (r < 0.25) history.push({ op: 'acquire', client });
    else if (r < 0.31)
      history.push({ op: 'settle', pick: Math.floor(random() * 8), outcome: outcome(), fault: fault() });
    else if (r < 0.38) {
      if (crossClient !== false) {
        const pick = Math.floor(random() * 8);
        // One in three of them three clients' (when three hold permits). Drawn whatever
        // `crossClient` says, so a seed gives the same history but for the third permit.
        const outcomes = random() < 1 / 3 ? [outcome(), outcome(), outcome()] : [outcome(), outcome()];
        history.push({
          op: 'settle-cross',
          pick,
          outcomes: crossClient === 'pairs' ? outcomes.slice(0, 2) : outcomes,
        });
      } else history.push({ op: 'settle', pick: Math.floor(random() * 8), outcome: outcome(), fault: null });
    } else if (r < 0.42) {
      // Faults are likelier here: what the step is for is a re-send beside another write.
      const pairFault = (): Fault | null => (random() < 0.3 ? (fault() ?? faults[0] ?? null) : null);
      history.push({ op: 'settle-pair', pick: Math.floor(random() * 8), faults: [pairFault(), pairFault()] });
    } else if (r < 0.5)
      history.push({ op: 'settle-acquire', pick: Math.floor(random() * 8), outcome: outcome() });
    else if (r < 0.75) history.push({ op: 'execute', client, outcome: outcome(), fault: fault() });
    else if (r < 0.91) history.push({ op: 'advance', ms: random() < 0.7 ? 1_000 : 2_000 });
    else if (r < 0.95) {
      const o = random();
      const override = o < 0.35 ? null : o < 0.6 ? 'forced-open' : o < 0.8 ? 'forced-closed' : 'metrics-only';
      // Some overrides lapse (times that sit between the steps' whole seconds: see MODEL_OPTIONS).
      history.push(
        override !== null && random() < 0.4
          ? { op: 'force', override, forMs: random() < 0.5 ? 2_500 : 3_500 }
          : { op: 'force', override },
      );
    } else if (r < 0.98) history.push({ op: 'open-for', client, ms: random() < 0.5 ? 2_500 : 4_500 });
    else history.push({ op: 'reset' });
  }
  return history;
}

/**
 * `history` with client 0 sick: it makes half the other clients' calls through `execute` too, and
 * its calls fail three times in four; the other clients' never fail (a failure of theirs is
 * ignored, and so is half their successes, so they seldom end client 0's runs), and 70 % of the
 * failures of settled permits (any client's) are ignored.
 */
function sickenOne(history: readonly ModelStep[], clients: number, random: () => number): ModelStep[] {
  return history.map((step): ModelStep => {
    if (step.op === 'execute') {
      if (step.client % clients === 0) {
        return step.outcome === 'failure' || random() < 0.5 ? step : { ...step, outcome: 'failure' };
      }
      if (random() < 0.5) return { ...step, client: 0, outcome: 'failure' };
      return step.outcome === 'failure' || (step.outcome === 'success' && random() < 0.5)
        ? { ...step, outcome: 'ignored' }
        : step;
    }
    if (step.op === 'settle' && step.outcome === 'failure' && random() < 0.7)
      return { ...step, outcome: 'ignored' };
    // Under a quorum, which of two failures in one turn answers below it first (and opens its
    // client on its own) is not modelled: one settles.
    if (step.op === 'settle-pair')
      return { op: 'settle', pick: step.pick, outcome: 'failure', fault: step.faults[0] };
    // Nor which of two clients' failures in one turn answers first: one settles.
    if (step.op === 'settle-cross')
      return { op: 'settle', pick: step.pick, outcome: step.outcomes[0]!, fault: null };
    return step;
  });
}

/**
 * What a breaker under a quorum adds to a batch it sends (`OutcomeBatch.quorum`, `reporter`), with
 * the batch's id (the reducer ignores it).
 */
type Stamp = Pick<OutcomeBatch, 'quorum' | 'reporter' | 'id'>;

/**
 * Wraps one client's store: counts the calls in flight (so a step can wait for all of them, those
 * the breaker does not wait for included), injects the fault a step asks for into the next
 * `record`, and leaves out `subscribe` (pushes arrive whenever they like; the model check wants
 * every client to learn the state from the store's answers, at known moments).
 */
class ModelStore implements Store {
  readonly inner: Store;
  fault: Fault | null = null;
  /** The id of the batch of the last `record` call, faulted or not. */
  lastRecordId: string | undefined = undefined;
  #inFlight = new Set<Promise<unknown>>();
  readonly timing: Store['timing'];
  readonly limitsConcurrency: Store['limitsConcurrency'];
  readonly ordered: Store['ordered'];
  readonly reset?: (key: string, policy: BreakerPolicy) => Promise<UpdateResult>;
  readonly heartbeat?: (reporter: string, ttlMs: number) => Promise<number>;
  readonly recordThenAcquire?: (
    key: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
  ) => Promise<RecordedAcquire>;
  /**
   * Quorum (and reporter, of failures) of the batches that reached the store (`record`), in order,
   * with their ids (a re-send repeats one).
   */
  readonly stamps: Stamp[] = [];
  readonly #lateMs: number;

  constructor(inner: Store, lateMs: number) {
    this.inner = inner;
    this.#lateMs = lateMs;
    this.timing = inner.timing;
    this.limitsConcurrency = inner.limitsConcurrency;
    // A fault delays a reply, never the call itself: the order calls land in is the inner store's.
    this.ordered = inner.ordered;
    const reset = inner.reset?.bind(inner);
    if (reset !== undefined) this.reset = (key, policy) => this.#track(Promise.resolve(reset(key, policy)));
    const carry = inner.recordThenAcquire?.bind(inner);
    if (carry !== undefined) {
      // A carried batch is a record like any other: stamped, and given the step's fault.
      this.recordThenAcquire = (key, policy, batch) => {
        const acquired: { result: Promise<AcquireResult> | null } = { result: null };
        const update = this.record(key, policy, batch, (k, p, b) => {
          const answer = Promise.resolve(carry(k, p, b));
          acquired.result = answer.then((a) => a.acquire);
          return answer.then((a) => a.update);
        });
        return Promise.all([
          update,
          acquired.result ?? Promise.reject(new Error('model check: injected write failure')),
        ]).then(([u, a]) => ({ update: u, acquire: a }));
      };
    }
    const heartbeat = inner.heartbeat?.bind(inner);
    if (heartbeat !== undefined) {
      this.heartbeat = (reporter, ttlMs) => this.#track(Promise.resolve(heartbeat(reporter, ttlMs)));
    }
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const done = (): void => {
      this.#inFlight.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  async idle(): Promise<void> {
    // An outcome waiting to be carried on an acquire leaves at the end of the turn: let it.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  acquire(key: string, policy: BreakerPolicy): Promise<AcquireResult> {
    return this.#track(Promise.resolve(this.inner.acquire(key, policy)));
  }

  record(
    key: string,
    policy: BreakerPolicy,
    batch: OutcomeBatch,
    send: (key: string, policy: BreakerPolicy, batch: OutcomeBatch) => Awaitable<UpdateResult> = (k, p, b) =>
      this.inner.record(k, p, b),
  ): Promise<UpdateResult> {
    const fault = this.fault;
    this.fault = null;
    this.lastRecordId = batch.id;
    if (fault !== 'failed-write' && batch.quorum !== undefined) {
      this.stamps.push({
        quorum: batch.quorum,
        ...(batch.reporter === undefined ? {} : { reporter: batch.reporter }),
        ...(batch.id === undefined ? {} : { id: batch.id }),
      });
    }
    if (fault === null) return this.#track(Promise.resolve(send(key, policy, batch)));
    const lateMs = this.#lateMs;
    return this.#track(
      (async () => {
        if (fault === 'failed-write') throw new Error('model check: injected write failure');
        const result = await send(key, policy, batch);
        if (fault === 'lost-reply') throw new Error('model check: injected lost reply');
        await new Promise((resolve) => setTimeout(resolve, lateMs));
        return result;
      })(),
    );
  }

  inspect(key: string, policy: BreakerPolicy): Promise<Snapshot | null> {
    return this.#track(Promise.resolve(this.inner.inspect(key, policy)));
  }

  force(
    key: string,
    policy: BreakerPolicy,
    override: Override | null,
    options?: ForceOptions,
  ): Promise<UpdateResult> {
    return this.#track(Promise.resolve(this.inner.force(key, policy, override, options)));
  }

  list(prefix: string, cursor?: string | null): Promise<ListPage> {
    return Promise.resolve(this.inner.list(prefix, cursor));
  }
}

/**
 * The sequential reference: the reducer, with a record made when the store would make one (a store
 * that admits a breaker without a record, `NO_RECORD`, makes it for the first outcome that changes
 * what the policy reads; one that makes it on `acquire` is "eager", and so is every store under a
 * concurrency limit: a slot is kept in the record).
 */
class Reference {
  record: BreakerRecord | null = null;
  #leases = 0;
  constructor(
    readonly policy: BreakerPolicy,
    readonly eager: boolean,
  ) {}

  /** A copy that goes its own way from here (the same record and lease numbers). */
  clone(): Reference {
    const copy = new Reference(this.policy, this.eager);
    copy.record = this.record === null ? null : structuredClone(this.record);
    copy.#leases = this.#leases;
    return copy;
  }

  #make(now: number): BreakerRecord {
    this.record ??= reducer.emptyRecord(reducer.initialGeneration(now));
    return this.record;
  }

  acquire(now: number): AcquireResult {
    if (this.record === null && !this.eager) {
      return {
        admitted: true,
        reason: null,
        retryAfterMs: 0,
        generation: NO_RECORD,
        lease: null,
        state: 'closed',
        override: null,
        openUntil: 0,
        now,
        transition: null,
      };
    }
    return reducer.acquire(this.#make(now), this.policy, now, `lease-${++this.#leases}`);
  }

  settle(
    now: number,
    generation: number,
    lease: string | null,
    slot: string | null,
    outcome: Outcome,
    stamp?: Stamp,
  ): UpdateResult | null {
    const counted: OutcomeBatch =
      lease === null
        ? {
            generation,
            successes: outcome === 'success' ? 1 : 0,
            failures: outcome === 'failure' ? 1 : 0,
            trailingFailures: outcome === 'failure' ? 1 : 0,
            slow: 0,
            ignored: outcome === 'ignored' ? 1 : 0,
            probes: [],
            random: 0,
          }
        : {
            generation,
            successes: 0,
            failures: 0,
            trailingFailures: 0,
            slow: 0,
            ignored: 0,
            probes: [{ lease, outcome }],
            random: 0,
          };
    const limited: OutcomeBatch = slot === null ? counted : { ...counted, slots: [slot] };
    const batch: OutcomeBatch = stamp === undefined ? limited : { ...limited, ...stamp };
    if (this.record === null) {
      // No record: only an outcome that changes what the policy reads makes one.
      const counts = this.policy.trip.kind === 'failure-rate' || batch.failures > 0;
      if (!counts) return null;
    }
    return reducer.record(this.#make(now), this.policy, now, batch);
  }

  force(now: number, override: Override | null, options?: ForceOptions): UpdateResult {
    return reducer.force(this.#make(now), this.policy, now, override, options);
  }

  reset(now: number): UpdateResult | null {
    if (this.record === null) return null;
    return reducer.reset(this.record, this.policy, now);
  }

  snapshot(now: number): Snapshot {
    return reducer.snapshot(
      this.record ?? reducer.emptyRecord(reducer.initialGeneration(now)),
      this.policy,
      now,
    );
  }
}

interface HeldPermit {
  readonly client: number;
  readonly permit: Permit;
  readonly generation: number;
  readonly lease: string | null;
  /** The reference's slot for it. */
  readonly slot: string | null;
}

interface Client {
  readonly store: ModelStore;
  readonly factory: BreakerFactory;
  readonly breaker: CircuitBreaker;
  readonly transitions: Move[];
  /** Under a quorum: until when the reference has this client open on its own (0: it is not). */
  localUntil: number;
  /** Its local opens in a row (backoff); a success ends them. */
  localReopens: number;
}

/** Runs histories until the budget or the count is spent; throws `ModelCheckViolation` on the first failure. */
export async function runModelCheck(
  harness: ModelCheckHarness,
  options: ModelCheckOptions = {},
): Promise<ModelCheckReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const budgetMs = options.budgetMs ?? 10_000;
  const maxHistories = options.histories ?? Infinity;
  const stepsPerHistory = options.steps ?? 40;
  const clientCount = options.clients ?? 3;
  const faults: readonly Fault[] =
    options.faults === false
      ? []
      : options.faults === true || options.faults === undefined
        ? ['lost-reply', 'failed-write', 'late-reply']
        : options.faults;
  const policies = options.policies ?? ['consecutive-failures', 'failures-in-window', 'failure-rate'];
  const log = options.log ?? (() => undefined);
  // Mid-second, so the model's times sit in the middle of the store's 1 s buckets.
  const clock = new ManualClock(Math.floor(Date.now() / 1_000) * 1_000 + 500);
  const stores: ModelStore[] = [];
  for (let i = 0; i < clientCount; i++) stores.push(new ModelStore(await harness.makeStore(clock), 500));
  const observer = await harness.makeStore(clock);
  const limits = options.concurrencyLimit ?? observer.limitsConcurrency === true;
  const quorums = options.quorum ?? typeof observer.heartbeat === 'function';
  const runner = new HistoryRunner(stores, observer, clock);
  const started = performance.now();
  let histories = 0;
  let steps = 0;
  let faulted = 0;
  let quorumHistories = 0;
  try {
    while (histories < maxHistories && performance.now() - started < budgetMs) {
      const historySeed = (seed + histories * 7_919) >>> 0;
      const random = seededRandom(historySeed);
      const policy = policies[Math.floor(random() * policies.length)]!;
      const limit = limits && random() < 0.5 ? MODEL_LIMIT : 0;
      const drawn = randomHistory(random, stepsPerHistory, clientCount, faults, options.crossClient ?? true);
      const variant: Variant = { policy, limit, quorum: quorums && random() < 0.4 };
      // Under a quorum, client 0 is the sick one: most failures come from it alone, so they
      // often trip the policy below the quorum.
      const history = variant.quorum ? sickenOne(drawn, clientCount, random) : drawn;
      const failure = await runner.run(variant, history);
      if (failure !== null) {
        const shortest = options.shrink === false ? history : await shrink(runner, variant, history, log);
        const final = (await runner.run(variant, shortest)) ?? failure;
        throw new ModelCheckViolation(historySeed, policy, shortest, final, limit, variant.quorum);
      }
      histories += 1;
      steps += history.length;
      faulted += history.filter((s) => 'fault' in s && s.fault !== null).length;
      if (variant.quorum) quorumHistories += 1;
      if (histories % 50 === 0) log(`${histories} histories, ${steps} steps, ${faulted} faults`);
    }
  } finally {
    await harness.close?.();
  }
  return {
    seed,
    histories,
    steps,
    faults: faulted,
    quorum: { histories: quorumHistories, localOpens: runner.localOpens },
  };
}

/** Replays one history (`seed` and its policy) and throws on a violation: `--seed` of the report. */
export async function replayModelCheck(
  harness: ModelCheckHarness,
  seed: number,
  options: Pick<
    ModelCheckOptions,
    'steps' | 'clients' | 'faults' | 'policies' | 'concurrencyLimit' | 'crossClient' | 'shrink' | 'log'
  > = {},
): Promise<ModelCheckReport> {
  return runModelCheck(harness, { ...options, seed, histories: 1, budgetMs: Infinity });
}

/** Drops steps while the history still fails: first halves, then single steps. */
async function shrink(
  runner: HistoryRunner,
  variant: Variant,
  history: readonly ModelStep[],
  log: (line: string) => void,
): Promise<readonly ModelStep[]> {
  let current = history;
  for (let chunk = Math.floor(current.length / 2); chunk >= 1; chunk = Math.floor(chunk / 2)) {
    for (let at = current.length - chunk; at >= 0; at -= chunk) {
      const candidate = [...current.slice(0, at), ...current.slice(at + chunk)];
      if (candidate.length === 0) continue;
      if ((await runner.run(variant, candidate)) !== null) {
        current = candidate;
        at = Math.min(at, current.length);
      }
    }
  }
  log(`shrunk the failing history from ${history.length} to ${current.length} steps`);
  return current;
}

let runs = 0;

/** What a history runs under: its trip policy, concurrency limit (0: none) and whether a quorum. */
interface Variant {
  readonly policy: ModelCheckPolicy;
  readonly limit: number;
  readonly quorum: boolean;
}

class HistoryRunner {
  readonly #stores: readonly ModelStore[];
  readonly #observer: Store;
  readonly #clock: ManualClock;
  #eager: boolean | null = null;
  /** Local opens (below a quorum) the histories that passed checked. */
  localOpens = 0;

  constructor(stores: readonly ModelStore[], observer: Store, clock: ManualClock) {
    this.#stores = stores;
    this.#observer = observer;
    this.#clock = clock;
  }

  /** Runs one history on a breaker of its own, under `variant`; returns what went wrong, or null. */
  async run(variant: Variant, history: readonly ModelStep[]): Promise<string | null> {
    const { policy: policyName, limit } = variant;
    const clock = this.#clock;
    // A new second, mid-bucket, for every history: buckets and open periods start afresh.
    clock.set(Math.ceil(clock.now() / 1_000) * 1_000 + 500);
    const started = clock.now();
    const name = `model-check:${process.pid}:${++runs}`;
    const options: BreakerOptions = {
      ...MODEL_OPTIONS,
      trip: tripOf(policyName),
      clock,
      ...(limit > 0 ? { maxConcurrent: limit, concurrencyLeaseMs: MODEL_SLOT_LEASE_MS } : {}),
      ...(variant.quorum ? { quorum: MODEL_QUORUM } : {}),
    };
    const policy = resolveOptions(options).policy;
    const clients: Client[] = this.#stores.map((store) => {
      store.fault = null;
      const factory = new BreakerFactory({
        ...options,
        store,
        isFailure: (error) => (error === IGNORED ? 'ignore' : true),
      });
      const breaker = factory.breakerFor(name);
      const transitions: Move[] = [];
      breaker.onStateChange((event) =>
        transitions.push({ from: event.from, to: event.to, local: event.local === true }),
      );
      return { store, factory, breaker, transitions, localUntil: 0, localReopens: 0 };
    });
    const held: HeldPermit[] = [];
    let reference: Reference | null = null;
    const observer = this.#observer;
    const idle = async (): Promise<void> => {
      for (const c of clients) await c.store.idle();
    };
    let failure: string | null = null;
    let opened = 0;
    const fail = (at: number, what: string): void => {
      failure ??= `step ${at + 1}: ${what}`;
    };
    try {
      for (let i = 0; i < history.length && failure === null; i++) {
        const step = history[i]!;
        for (const c of clients) {
          c.transitions.length = 0;
          c.store.stamps.length = 0;
        }
        const expected: Move[] = [];
        let lostTransitions = false;
        const now = clock.now();
        const ref = (reference ??= await this.#reference(policy, name));
        const note = (
          result: { transition: { from: CircuitState; to: CircuitState } | null } | null,
        ): void => {
          if (result?.transition != null)
            expected.push({ from: result.transition.from, to: result.transition.to, local: false });
        };
        // Under a quorum, a failure that trips the policy below it opens its client on its own
        // (unless its reply was lost: then the client may never have heard of it).
        const settled = (
          client: Client,
          result: UpdateResult | null,
          outcome: Outcome,
          fault: Fault | null,
        ) => {
          note(result);
          if (outcome === 'success') client.localReopens = 0;
          if (result?.belowQuorum !== true || client.localUntil !== 0) return;
          const heard = client.transitions.some((t) => t.local && t.to === 'open');
          if (fault === 'lost-reply' && !heard) return;
          client.localUntil = now + Math.max(1, reducer.openPeriodMs(policy, client.localReopens, 0, 0));
          client.localReopens += 1;
          expected.push({ from: 'closed', to: 'open', local: true });
          opened += 1;
        };
        switch (step.op) {
          case 'acquire':
          case 'execute': {
            const client = clients[step.client % clients.length]!;
            if (client.localUntil !== 0 && now >= client.localUntil) {
              client.localUntil = 0;
              expected.push({ from: 'open', to: 'closed', local: true });
            }
            // Open on its own: the client rejects without asking the store.
            const want = client.localUntil !== 0 ? LOCAL_OPEN : ref.acquire(now);
            note(want);
            if (step.op === 'acquire') {
              let permit: Permit | null = null;
              let rejected: RejectReason | null = null;
              try {
                permit = await client.breaker.acquire();
              } catch (error) {
                if (!isCircuitOpenError(error)) throw error;
                rejected = error.reason;
              }
              await idle();
              const got = admissionMismatch(want, permit, rejected);
              if (got !== null) fail(i, got);
              else if (permit !== null) {
                held.push({
                  client: step.client,
                  permit,
                  generation: want.generation,
                  lease: want.lease,
                  slot: want.slot ?? null,
                });
              }
            } else {
              const fault = step.fault;
              if (fault !== null && want.admitted) client.store.fault = fault;
              let rejected: RejectReason | null = null;
              const call = { ran: false };
              try {
                await client.breaker.execute(() => {
                  call.ran = true;
                  if (step.outcome === 'success') return 'ok';
                  throw step.outcome === 'failure' ? FAILED : IGNORED;
                });
              } catch (error) {
                if (isCircuitOpenError(error)) rejected = error.reason;
                else if (error !== FAILED && error !== IGNORED) throw error;
              }
              const ran = call.ran;
              if (!ran && rejected === null)
                throw new Error('model check: a call neither ran nor was rejected');
              const mismatch = admissionMismatch(want, ran ? { probe: want.lease !== null } : null, rejected);
              if (mismatch !== null) {
                client.store.fault = null;
                fail(i, mismatch);
                break;
              }
              if (!ran) break;
              lostTransitions = await this.#heal(client, fault);
              const stamp = client.store.stamps[0];
              const result = ref.settle(
                now,
                want.generation,
                want.lease,
                want.slot ?? null,
                step.outcome,
                stamp,
              );
              settled(client, result, step.outcome, fault);
            }
            break;
          }
          case 'settle': {
            if (held.length === 0) break;
            const [one] = held.splice(step.pick % held.length, 1);
            const client = clients[one!.client % clients.length]!;
            if (step.fault !== null) client.store.fault = step.fault;
            const permit = one!.permit;
            await settlePermit(permit, step.outcome);
            lostTransitions = await this.#heal(client, step.fault);
            const stamp = client.store.stamps[0];
            const result = ref.settle(now, one!.generation, one!.lease, one!.slot, step.outcome, stamp);
            settled(client, result, step.outcome, step.fault);
            break;
          }
          case 'settle-pair': {
            if (held.length === 0) break;
            const [one] = held.splice(step.pick % held.length, 1);
            const at = held.findIndex((h) => h.client === one!.client);
            if (at === -1) {
              held.push(one!); // the client holds one permit: nothing happens
              break;
            }
            const [other] = held.splice(at, 1);
            const client = clients[one!.client % clients.length]!;
            const settling: Promise<void>[] = [];
            // The id of each permit's batch (none when its outcome was not written: a stale one).
            const ids: Array<string | undefined> = [];
            for (const [k, h] of [one!, other!].entries()) {
              client.store.fault = step.faults[k]!;
              client.store.lastRecordId = undefined;
              settling.push(settlePermit(h.permit, 'failure'));
              ids.push(client.store.lastRecordId);
              // A failure's write leaves in the turn it ended in: the fault went with it.
              if (client.store.fault !== null)
                throw new Error('model check: a failure was not written at once');
            }
            await Promise.all(settling);
            const fault =
              step.faults.find((f) => f === 'lost-reply') ?? step.faults.find((f) => f !== null) ?? null;
            lostTransitions = await this.#heal(client, fault);
            // Each batch's stamp is that of its first send that landed (a failed write sent none).
            const stampOf = (id: string | undefined): Stamp | undefined =>
              id === undefined ? undefined : client.store.stamps.find((stamp) => stamp.id === id);
            for (const [k, h] of [one!, other!].entries()) {
              const stamp = stampOf(ids[k]);
              const result = ref.settle(now, h.generation, h.lease, h.slot, 'failure', stamp);
              settled(client, result, 'failure', step.faults[k]!);
            }
            break;
          }
          case 'settle-cross': {
            if (held.length === 0) break;
            const picked = [step.pick % held.length];
            for (let k = 1; k < step.outcomes.length; k++) {
              const next = held.findIndex(
                (h, at) => !picked.some((p) => held[p]!.client === h.client || p === at),
              );
              if (next !== -1) picked.push(next);
            }
            if (picked.length < 2) break; // one client holds every permit: nothing happens
            const group = picked.map((at) => held[at]!);
            for (const at of [...picked].sort((a, b) => b - a)) held.splice(at, 1);
            await Promise.all(group.map((h, k) => settlePermit(h.permit, step.outcomes[k]!)));
            await idle();
            // The store applied them in some order: the reference takes one whose state (and
            // transitions) the store shows. Without a quorum, a batch's stamp adds only its id,
            // which the reducer ignores.
            const reported = clients.flatMap((c) => c.transitions);
            const why: string[] = [];
            for (const order of orders(group.length)) {
              const candidate = ref.clone();
              const moves: Move[] = [];
              for (const k of order) {
                const h = group[k]!;
                const result = candidate.settle(now, h.generation, h.lease, h.slot, step.outcomes[k]!);
                if (result?.transition != null)
                  moves.push({ from: result.transition.from, to: result.transition.to, local: false });
              }
              const mismatch = await this.#compare(candidate, name, policy, clock.now());
              if (mismatch === null && sameTransitions(moves, reported)) {
                reference = candidate;
                expected.push(...moves);
                why.length = 0;
                break;
              }
              why.push(
                `in the order ${order.map((k) => k + 1).join(', ')}, ${mismatch ?? `transitions reported ${JSON.stringify(reported)}, the reference made ${JSON.stringify(moves)}`}`,
              );
            }
            if (why.length > 0) fail(i, `in no order of the ${group.length}: ${why.join('; ')}`);
            break;
          }
          case 'settle-acquire': {
            if (held.length === 0) break;
            const [one] = held.splice(step.pick % held.length, 1);
            const client = clients[one!.client % clients.length]!;
            const permit = one!.permit;
            await settlePermit(permit, step.outcome);
            // No wait for the store: the acquire starts in the turn the outcome ended in.
            let next: Permit | null = null;
            let rejected: RejectReason | null = null;
            const acquiring = client.breaker.acquire().then(
              (p) => {
                next = p;
              },
              (error: unknown) => {
                if (!isCircuitOpenError(error)) throw error;
                rejected = error.reason;
              },
            );
            const stamp = client.store.stamps[0];
            settled(
              client,
              ref.settle(now, one!.generation, one!.lease, one!.slot, step.outcome, stamp),
              step.outcome,
              null,
            );
            if (client.localUntil !== 0 && now >= client.localUntil) {
              client.localUntil = 0;
              expected.push({ from: 'open', to: 'closed', local: true });
            }
            const want = client.localUntil !== 0 ? LOCAL_OPEN : ref.acquire(now);
            note(want);
            await acquiring;
            await idle();
            const got = admissionMismatch(want, next, rejected);
            if (got !== null) fail(i, got);
            else if (next !== null) {
              held.push({
                client: one!.client,
                permit: next,
                generation: want.generation,
                lease: want.lease,
                slot: want.slot ?? null,
              });
            }
            break;
          }
          case 'advance':
            if (now + step.ms - started <= MAX_HISTORY_MS) clock.advance(step.ms);
            break;
          case 'open-for': {
            // A client (what a Retry-After does): the store's push is not raced, as for operators.
            const client = clients[step.client % clients.length]!;
            await client.breaker.openFor(step.ms);
            note(ref.force(now, 'forced-open', { forMs: step.ms, yieldToOperator: true }));
            await idle();
            for (const c of clients) await c.breaker.state();
            await idle();
            break;
          }
          case 'force':
          case 'reset': {
            // An operator, through a store of its own. Every client then reads the state, as it
            // would from the store's push: the model check does not race pushes against steps.
            if (step.op === 'force') {
              const timed = step.forMs === undefined ? undefined : { forMs: step.forMs };
              await observer.force(name, policy, step.override, timed);
              ref.force(now, step.override, timed);
            } else {
              await observer.reset?.(name, policy);
              ref.reset(now);
            }
            for (const c of clients) await c.breaker.state();
            await idle();
            break;
          }
        }
        if (failure !== null) break;
        const mismatch = await this.#compare(reference, name, policy, clock.now());
        if (mismatch !== null) fail(i, mismatch);
        const reported = clients.flatMap((c) => c.transitions);
        if (!sameTransitions(expected, reported) && !(lostTransitions && isSubset(reported, expected))) {
          fail(
            i,
            `transitions reported ${JSON.stringify(reported)}, the reference made ${JSON.stringify(expected)}`,
          );
        }
      }
      if (failure === null) {
        this.localOpens += opened;
        // Whatever is still held is settled (ignored), and every factory closes with nothing unwritten.
        for (const one of held.splice(0)) await one.permit.ignore();
        await idle();
      }
    } finally {
      for (const c of clients) {
        const report = await c.factory.close({ timeoutMs: 3_000 });
        if (!report.complete && failure === null) {
          failure = `close() left outcomes unwritten: ${JSON.stringify(report.unwritten)}`;
        }
      }
    }
    return failure;
  }

  /**
   * The reference for a new breaker. Whether the store makes a record on `acquire` is learnt once,
   * from the first breaker: it decides whether a reset before any outcome fences calls in flight.
   */
  async #reference(policy: BreakerPolicy, name: string): Promise<Reference> {
    if (this.#eager === null) {
      // Learnt without a limit: under one, every store makes the record on acquire.
      const unlimited: BreakerPolicy = { ...policy, maxConcurrent: 0 };
      const probeName = `${name}:eager`;
      await this.#stores[0]!.acquire(probeName, unlimited);
      this.#eager = (await this.#observer.inspect(probeName, unlimited)) !== null;
    }
    return new Reference(policy, this.#eager || policy.maxConcurrent > 0);
  }

  /**
   * After a step whose write was faulted: waits for a late reply, has the breaker write again what
   * it kept (what `close()` and the store's recovery do), and marks the store healthy again, as
   * the next call that succeeded would. Returns whether the write's reply never came (then the
   * transition it made, if any, is reported by nobody).
   */
  async #heal(client: Client, fault: Fault | null): Promise<boolean> {
    await client.store.idle();
    client.store.fault = null;
    if (fault === null) return false;
    await client.breaker[internal].drain(performance.now() + 3_000);
    await client.store.idle();
    StoreHealth.of(client.store).succeeded();
    return fault === 'lost-reply';
  }

  async #compare(ref: Reference, name: string, policy: BreakerPolicy, now: number): Promise<string | null> {
    const want = ref.snapshot(now);
    const stored = await this.#observer.inspect(name, policy);
    const got = stored ?? reducer.snapshot(reducer.emptyRecord(reducer.initialGeneration(now)), policy, now);
    const fields: Array<[string, unknown, unknown]> = [
      ['state', got.circuitState, want.circuitState],
      ['consecutive failures', got.counts.consecutiveFailures, want.counts.consecutiveFailures],
      ['failures in the window', got.counts.failures, want.counts.failures],
      ['active probes', got.activeProbes, want.activeProbes],
      ['calls holding a concurrency slot', got.activeSlots, want.activeSlots],
      ['probe successes', got.probeSuccesses, want.probeSuccesses],
      ['reopens', got.reopens, want.reopens],
      // The anchor of the recovery ramp: the store's time of a close, a few ms from the model's.
      ['time of the last close', Math.abs(got.closedAt - want.closedAt) < 250, true],
    ];
    if (policy.trip.kind === 'failure-rate') {
      fields.push(['successes in the window', got.counts.successes, want.counts.successes]);
    }
    const wrong = fields.filter(([, a, b]) => a !== b);
    if (wrong.length === 0) return null;
    return `the store holds ${wrong.map(([what, a, b]) => `${what} ${String(a)} (reference: ${String(b)})`).join(', ')}`;
  }
}

/** What the reference says of a call by a client open on its own. */
const LOCAL_OPEN: AcquireResult = {
  admitted: false,
  reason: 'local-open',
  retryAfterMs: 0,
  generation: 0,
  lease: null,
  state: 'closed',
  override: null,
  openUntil: 0,
  now: 0,
  transition: null,
};

function admissionMismatch(
  want: AcquireResult,
  permit: Pick<Permit, 'probe'> | null,
  rejected: RejectReason | null,
): string | null {
  if (want.admitted && permit === null) {
    return `the call was rejected (${String(rejected)}); the reference admits it${want.lease === null ? '' : ' as a probe'}`;
  }
  if (!want.admitted && permit !== null) {
    return `the call was admitted${permit.probe ? ' as a probe' : ''}; the reference rejects it (${String(want.reason)})`;
  }
  if (!want.admitted && rejected !== want.reason) {
    return `the call was rejected (${String(rejected)}); the reference rejects it (${String(want.reason)})`;
  }
  if (permit !== null && permit.probe !== (want.lease !== null)) {
    return `the call was admitted ${permit.probe ? 'as a probe' : 'not as a probe'}; the reference says the opposite`;
  }
  return null;
}

/** A state change reported (or expected); `local`: of one client alone, below a quorum. */
type Move = { from: CircuitState; to: CircuitState; local: boolean };

function key(t: Move): string {
  return `${t.from}>${t.to}${t.local ? ' (local)' : ''}`;
}

function sameTransitions(a: readonly Move[], b: readonly Move[]): boolean {
  return a.length === b.length && isSubset(a, b);
}

/** Whether every transition of `a` is in `b` (as a multiset). */
function isSubset(a: readonly Move[], b: readonly Move[]): boolean {
  const left = b.map(key);
  for (const t of a) {
    const at = left.indexOf(key(t));
    if (at === -1) return false;
    left.splice(at, 1);
  }
  return true;
}

/**
 * Registers the model check as one `node:test` test. Its budget comes from `options.budgetMs`, or
 * the environment's `CIRCUITRY_MODEL_CHECK_MS`, and its seed from `CIRCUITRY_MODEL_CHECK_SEED`
 * (to replay a failure). A violation fails the test with the seed and the shortened history.
 */
export function describeModelCheck(
  name: string,
  makeHarness: () => ModelCheckHarness | Promise<ModelCheckHarness>,
  options: ModelCheckOptions = {},
): void {
  const env = typeof process === 'undefined' ? {} : process.env;
  const budgetMs = options.budgetMs ?? (Number(env.CIRCUITRY_MODEL_CHECK_MS) || 6_000);
  const seed =
    options.seed ??
    (env.CIRCUITRY_MODEL_CHECK_SEED === undefined ? undefined : Number(env.CIRCUITRY_MODEL_CHECK_SEED));
  it(
    `${name}: model check (concurrent clients against a sequential reference)`,
    { timeout: budgetMs + 120_000 },
    async (t) => {
      const report = await runModelCheck(await makeHarness(), {
        ...options,
        budgetMs,
        ...(seed === undefined ? {} : { seed }),
      });
      t.diagnostic(
        `seed ${report.seed}: ${report.histories} histories, ${report.steps} steps, ${report.faults} faults, ` +
          `${report.quorum.histories} with a quorum (${report.quorum.localOpens} local opens)`,
      );
      if (report.histories === 0) throw new Error('the model check ran no history within its budget');
    },
  );
}
