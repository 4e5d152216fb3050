import type { Clock } from '../core/clock.js';

/** A clock that moves only when told to: for reducer, breaker and store tests. */
export class ManualClock implements Clock {
  #now: number;

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** Moves the time forward by `ms`; a negative or non-finite `ms` throws a `RangeError`. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`Expected a non-negative ms, got ${ms}`);
    this.#now += ms;
  }

  /** Sets the time to `now`, forward or back. */
  set(now: number): void {
    this.#now = now;
  }
}
