import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import * as reducer from '../core/reducer.js';
import type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  OutcomeBatch,
  Override,
  Snapshot,
  Transition,
  UpdateResult,
} from '../core/types.js';
import type { ListPage, StateChangeMessage, Store } from '../store.js';

export interface MemoryStoreOptions {
  /** Where time comes from. @defaultValue the system clock */
  readonly clock?: Clock;
  /** Called when a stored record is not one this version can read, before it is reset. */
  readonly onCorruptRecord?: (key: string, value: unknown) => void;
}

const PAGE_SIZE = 100;

/**
 * The reference store: state in this process, answered synchronously by the reducer itself.
 * Breakers in one process that share a MemoryStore share state; other processes do not.
 */
export class MemoryStore implements Store {
  readonly #records = new Map<string, BreakerRecord>();
  readonly #listeners = new Set<(message: StateChangeMessage) => void>();
  readonly #clock: Clock;
  readonly #onCorruptRecord: ((key: string, value: unknown) => void) | undefined;
  readonly #unverified = new Set<string>();
  #leaseCounter = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#onCorruptRecord = options.onCorruptRecord;
  }

  acquire(key: string, policy: BreakerPolicy): AcquireResult {
    const now = this.#clock.now();
    const record = this.#load(key);
    const result = reducer.acquire(record, policy, now, `${record.generation}:${++this.#leaseCounter}`);
    this.#publish(key, result.transition, record, now);
    return result;
  }

  record(key: string, policy: BreakerPolicy, batch: OutcomeBatch): UpdateResult {
    const now = this.#clock.now();
    const record = this.#load(key);
    const result = reducer.record(record, policy, now, batch);
    this.#publish(key, result.transition, record, now);
    return result;
  }

  inspect(key: string, policy: BreakerPolicy): Snapshot | null {
    if (!this.#records.has(key)) return null;
    return reducer.snapshot(this.#load(key), policy, this.#clock.now());
  }

  force(key: string, policy: BreakerPolicy, override: Override | null): UpdateResult {
    const now = this.#clock.now();
    const record = this.#load(key);
    const result = reducer.force(record, policy, now, override);
    this.#publish(key, result.transition, record, now);
    return result;
  }

  list(prefix: string, cursor: string | null = null): ListPage {
    const keys = [...this.#records.keys()].filter((key) => key.startsWith(prefix)).sort();
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

  /**
   * Stores `value` as the raw record for `key`, bypassing the reducer: for tests that prove a
   * corrupted or foreign record is reset rather than trusted.
   */
  writeRawForTesting(key: string, value: unknown): void {
    this.#records.set(key, value as BreakerRecord);
    this.#unverified.add(key);
  }

  #load(key: string): BreakerRecord {
    const existing = this.#records.get(key);
    // Records the reducer wrote are valid by construction; only raw writes are checked.
    if (this.#unverified.size > 0 && this.#unverified.delete(key) && !reducer.isValidRecord(existing)) {
      this.#onCorruptRecord?.(key, existing);
    } else if (existing !== undefined) {
      return existing;
    }
    const fresh = reducer.emptyRecord();
    this.#records.set(key, fresh);
    return fresh;
  }

  #publish(key: string, transition: Transition | null, record: BreakerRecord, now: number): void {
    if (transition === null || this.#listeners.size === 0) return;
    const message: StateChangeMessage = { ...transition, key, openUntil: record.openUntil, now };
    for (const listener of this.#listeners) listener(message);
  }
}
