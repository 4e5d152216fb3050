import type { Clock } from '../core/clock.js';
import * as reducer from '../core/reducer.js';
import type {
  AcquireResult,
  BreakerPolicy,
  ForceOptions,
  BreakerRecord,
  OutcomeBatch,
  Outcome,
  Override,
  Snapshot,
  Transition,
  UpdateResult,
} from '../core/types.js';
import type { ListPage, StateChangeMessage, Store } from '../store.js';
import type { RecordExaminer, RecordReport } from './record-report.js';
import { createTurnClock } from '../turn-clock.js';

/** Options of `MemoryStore`. */
export interface MemoryStoreOptions {
  /**
   * Where time comes from. @defaultValue the system clock, sampled at most once per 32 reads
   * within one turn of the event loop (see `createTurnClock`)
   */
  readonly clock?: Clock;
  /** Called when a stored record is not one this version can read, before it is reset. */
  readonly onCorruptRecord?: (key: string, value: unknown) => void;
}

const PAGE_SIZE = 100;

/**
 * How long a record must outlive its last use: the counting window, the longest open period
 * (or the one it is in, if a jitter function made it longer) and a probe lease or concurrency
 * slot. Dropping it later than that loses nothing the semantics keep; dropping it sooner could end
 * an open period early.
 */
function retentionMs(policy: BreakerPolicy, record: BreakerRecord, now: number): number {
  const longestOpen = Math.max(
    policy.maxOpenMs * (1 + policy.jitterRatio),
    Math.max(record.openUntil, record.overrideUntil ?? 0) - now,
  );
  return policy.windowMs + longestOpen + Math.max(policy.probeLeaseMs, policy.concurrencyLeaseMs);
}

/** A record with an override that has no time is never forgotten (a timed one lapses: it ages out). */
function pinned(record: BreakerRecord): boolean {
  return record.override !== null && (record.overrideUntil ?? 0) === 0;
}

/**
 * A map that forgets entries nobody touched for a while, without a timer and without work on
 * reads: entries live in a young and an old generation; each period the old one is dropped and
 * the young one becomes old, and touching an old entry moves it back to the young one. An entry is
 * dropped after between one and two periods without use; the period is the longest retention any
 * write asked for. So a store with 100,000 tenants that went quiet gives their memory back.
 * A pinned entry lives apart from both generations and is never dropped (see `pin`).
 */
class AgingMap<V> {
  #young = new Map<string, V>();
  #old = new Map<string, V>();
  readonly #pinned = new Map<string, V>();
  #periodMs = 0;
  #rotateAt = 0;
  /**
   * Rises whenever an entry may have been dropped or replaced (a rotation, a set, a clear): a
   * value read at the same epoch is still the one stored (see `RecordSlot`).
   */
  epoch = 0;

  get(key: string): V | undefined {
    const value = this.#young.get(key);
    if (value !== undefined) return value;
    if (this.#pinned.size > 0) {
      const pinned = this.#pinned.get(key);
      if (pinned !== undefined) return pinned;
    }
    if (this.#old.size === 0) return undefined;
    const aged = this.#old.get(key);
    if (aged !== undefined) {
      this.#old.delete(key);
      this.#young.set(key, aged);
    }
    return aged;
  }

  has(key: string): boolean {
    return this.#young.has(key) || this.#pinned.has(key) || this.#old.has(key);
  }

  set(key: string, value: V): void {
    this.epoch += 1;
    this.#young.set(key, value);
    if (this.#pinned.size > 0) this.#pinned.delete(key);
    if (this.#old.size > 0) this.#old.delete(key);
  }

  /**
   * Pins the entry at `key` (it is never dropped) or unpins it (it ages from now on, like one
   * just used). Does nothing when there is no entry.
   */
  pin(key: string, pinned: boolean): void {
    if (pinned) {
      const value = this.get(key);
      if (value === undefined) return;
      this.#young.delete(key);
      this.#pinned.set(key, value);
    } else {
      const value = this.#pinned.get(key);
      if (value === undefined) return;
      this.#pinned.delete(key);
      this.#young.set(key, value);
    }
  }

  keys(): string[] {
    return [...this.#young.keys(), ...this.#pinned.keys(), ...this.#old.keys()];
  }

  get size(): number {
    return this.#young.size + this.#pinned.size + this.#old.size;
  }

  clear(): void {
    this.epoch += 1;
    this.#young.clear();
    this.#pinned.clear();
    this.#old.clear();
  }

  /** Called on writes with the store's time and how long the written entry must be kept. */
  age(now: number, retentionMs: number): void {
    if (retentionMs > this.#periodMs) {
      this.#periodMs = retentionMs;
      // A longer period only ever postpones the next rotation.
      this.#rotateAt = Math.max(this.#rotateAt, now + retentionMs);
    }
    if (now < this.#rotateAt) return;
    this.epoch += 1;
    this.#old = this.#young;
    this.#young = new Map();
    this.#rotateAt = now + this.#periodMs;
  }
}

/**
 * The breaker's allocation-free path for the closed state, used only with a `MemoryStore`: it
 * runs the same reducer transitions as `acquire` and `record` for one call, without building the
 * result objects a store that crosses a network needs. Not public API.
 */
export const inProcess = Symbol('circuitry.inProcess');

/** Marks a `MemoryStore` made with a clock of its own (see `resolveOptions`). Not public API. */
export const ownClock = Symbol('circuitry.ownClock');

/**
 * The breaker's allocation-free path for the closed state (see `inProcess`). Not public API.
 * @internal
 */
export interface InProcessPath {
  /** A slot for one breaker's record, for the calls below. */
  slot(key: string): RecordSlot;
  /** The generation of a closed breaker with no override (the call is admitted), else 0. */
  admitClosed(slot: RecordSlot): number;
  /** `reducer.recordClosedOutcome` on the stored record, publishing a transition it makes. */
  recordClosed(
    slot: RecordSlot,
    policy: BreakerPolicy,
    generation: number,
    outcome: Outcome,
    slow: boolean,
    random: number,
    jitterMs: number,
  ): Transition | null | undefined;
}

/**
 * One breaker's record as the in-process path last found it, so a breaker called again finds it
 * without a lookup in the store's map (one per call, on a map of every tenant, costs a cache miss
 * or two). Valid while the map's epoch has not moved; a rotation moves it, so a record in use is
 * looked up (and kept young) once per rotation period. Not public API.
 * @internal
 */
export interface RecordSlot {
  readonly key: string;
  record: BreakerRecord | undefined;
  epoch: number;
}

/**
 * The reference store: state in this process, answered synchronously by the reducer itself.
 * Breakers in one process that share a MemoryStore share state; other processes do not.
 */
export class MemoryStore implements Store, RecordExaminer {
  readonly #records = new AgingMap<BreakerRecord>();
  readonly #listeners = new Set<(message: StateChangeMessage) => void>();
  /** Active reporters (`heartbeat`): id to when it stops counting, in the store's time. */
  readonly #reporters = new Map<string, number>();
  readonly #clock: Clock;
  readonly #onCorruptRecord: ((key: string, value: unknown) => void) | undefined;
  readonly #unverified = new Set<string>();
  #leaseCounter = 0;
  /** Enforces `maxConcurrent` (see `Store.limitsConcurrency`). */
  readonly limitsConcurrency = true;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? createTurnClock();
    this[ownClock] = options.clock !== undefined;
    this.#onCorruptRecord = options.onCorruptRecord;
  }

  /**
   * Whether this store was given a clock (else it reads the system's). Not public API.
   * @internal
   */
  readonly [ownClock]: boolean;

  acquire(key: string, policy: BreakerPolicy): AcquireResult {
    const now = this.#clock.now();
    const record = this.#load(key, now);
    this.#records.age(now, retentionMs(policy, record, now));
    // A closed breaker hands out no lease (nor a slot without a limit): do not build an id for
    // nothing on the hot path.
    const leaseId =
      record.state === 'closed' && policy.maxConcurrent === 0
        ? ''
        : `${record.generation}:${++this.#leaseCounter}`;
    const result = reducer.acquire(record, policy, now, leaseId);
    this.#publish(key, result.transition, record, now);
    return result;
  }

  record(key: string, policy: BreakerPolicy, batch: OutcomeBatch): UpdateResult {
    const now = this.#clock.now();
    if (reducer.releasesOnly(batch) && !this.#records.has(key)) {
      // Slots to give back, and nothing held: no record made for it.
      const fresh = reducer.emptyRecord(reducer.initialGeneration(now));
      return { snapshot: reducer.snapshot(fresh, policy, now), transition: null, stale: false };
    }
    const record = this.#load(key, now);
    const result = reducer.record(record, policy, now, batch);
    this.#records.age(now, retentionMs(policy, record, now));
    this.#publish(key, result.transition, record, now);
    return result;
  }

  /** The breaker's snapshot, or null when nothing (or nothing readable) is stored. Writes nothing. */
  inspect(key: string, policy: BreakerPolicy): Snapshot | null {
    const report = this.examine(key, policy);
    return report.kind === 'record' ? report.snapshot : null;
  }

  /** Marks `reporter` active for `ttlMs` and answers how many are active now (`Store.heartbeat`). */
  heartbeat(reporter: string, ttlMs: number): number {
    const now = this.#clock.now();
    const reporters = this.#reporters;
    reporters.set(reporter, now + ttlMs);
    let active = 0;
    for (const [id, until] of reporters) {
      if (until > now) active += 1;
      else reporters.delete(id);
    }
    return active;
  }

  /** What is stored for `key` (`RecordExaminer`); a record that does not parse is left as it is. */
  examine(key: string, policy: BreakerPolicy): RecordReport {
    const existing = this.#records.get(key);
    if (existing === undefined) return { kind: 'none' };
    if (this.#unverified.has(key)) {
      if (!reducer.isValidRecord(existing)) {
        return { kind: 'corrupt', reason: 'the stored value is not a breaker record this version can read' };
      }
      // Bookkeeping only (the record is not touched): a valid raw record is verified once, and
      // one with an override is never forgotten, as `#load` does.
      this.#unverified.delete(key);
      this.#records.pin(key, pinned(existing));
    }
    return { kind: 'record', snapshot: reducer.snapshot(existing, policy, this.#clock.now()) };
  }

  force(key: string, policy: BreakerPolicy, override: Override | null, options?: ForceOptions): UpdateResult {
    const now = this.#clock.now();
    const record = this.#load(key, now);
    const result = reducer.force(record, policy, now, override, options);
    this.#records.age(now, retentionMs(policy, record, now));
    // An override is an operator's decision: no amount of idleness may forget it (RedisStore
    // PERSISTs such a record for the same reason).
    this.#records.pin(key, pinned(record));
    this.#publish(key, result.transition, record, now);
    return result;
  }

  reset(key: string, policy: BreakerPolicy): UpdateResult {
    const now = this.#clock.now();
    if (!this.#records.has(key)) {
      // Nothing to forget, and no record made for it: a tenant that never failed stays free.
      const fresh = reducer.emptyRecord(reducer.initialGeneration(now));
      return { snapshot: reducer.snapshot(fresh, policy, now), transition: null, stale: false };
    }
    const record = this.#load(key, now);
    const result = reducer.reset(record, policy, now);
    this.#records.age(now, retentionMs(policy, record, now));
    this.#publish(key, result.transition, record, now);
    return result;
  }

  list(prefix: string, cursor: string | null = null): ListPage {
    const keys = this.#records
      .keys()
      .filter((key) => key.startsWith(prefix))
      .sort();
    const start = cursor === null ? 0 : Number(cursor);
    const page = keys.slice(start, start + PAGE_SIZE);
    const next = start + PAGE_SIZE;
    return { keys: page, cursor: next < keys.length ? String(next) : null };
  }

  subscribe(listener: (message: StateChangeMessage) => void): Promise<() => Promise<void>> {
    this.#listeners.add(listener);
    return Promise.resolve(() => {
      this.#listeners.delete(listener);
      return Promise.resolve();
    });
  }

  /** Drops every record (tests). */
  clear(): void {
    this.#records.clear();
  }

  /** How many breakers the store holds now (idle ones are dropped after their retention). */
  get size(): number {
    return this.#records.size;
  }

  /**
   * Stores `value` as the raw record for `key`, bypassing the reducer: for tests that prove a
   * corrupted or foreign record is reset rather than trusted.
   */
  writeRawForTesting(key: string, value: unknown): void {
    this.#records.set(key, value as BreakerRecord);
    this.#unverified.add(key);
  }

  /**
   * The breaker's allocation-free closed path (see `inProcess`). Not public API.
   * @internal
   */
  readonly [inProcess]: InProcessPath = {
    slot: (key) => ({ key, record: undefined, epoch: -1 }),
    admitClosed: (slot) => {
      const record = this.#find(slot);
      return record !== undefined && record.state === 'closed' && record.override === null
        ? record.generation
        : 0;
    },
    recordClosed: (slot, policy, generation, outcome, slow, random, jitterMs) => {
      const record = this.#find(slot);
      if (record === undefined) return undefined;
      const now = this.#clock.now();
      const moved = reducer.recordClosedOutcome(
        record,
        policy,
        now,
        generation,
        outcome,
        slow,
        random,
        jitterMs,
      );
      if (moved) this.#publish(slot.key, moved, record, now);
      if (moved !== undefined) this.#records.age(now, retentionMs(policy, record, now));
      return moved;
    },
  };

  /** The record in `slot`, looked up again when the map may have changed; none for a raw write. */
  #find(slot: RecordSlot): BreakerRecord | undefined {
    if (this.#unverified.size !== 0) return undefined;
    const records = this.#records;
    if (slot.epoch === records.epoch) return slot.record;
    slot.epoch = records.epoch;
    return (slot.record = records.get(slot.key));
  }

  #load(key: string, now: number): BreakerRecord {
    const existing = this.#records.get(key);
    // Records the reducer wrote are valid by construction; only raw writes are checked.
    if (this.#unverified.size > 0 && this.#unverified.delete(key)) {
      if (reducer.isValidRecord(existing)) {
        this.#records.pin(key, pinned(existing));
        return existing;
      }
      this.#onCorruptRecord?.(key, existing);
    } else if (existing !== undefined) {
      return existing;
    }
    const fresh = reducer.emptyRecord(reducer.initialGeneration(now));
    this.#records.set(key, fresh);
    return fresh;
  }

  #publish(key: string, transition: Transition | null, record: BreakerRecord, now: number): void {
    if (transition === null || this.#listeners.size === 0) return;
    const message: StateChangeMessage = {
      ...transition,
      key,
      openUntil: record.openUntil,
      now,
      override: record.override,
    };
    for (const listener of this.#listeners) listener(message);
  }
}
