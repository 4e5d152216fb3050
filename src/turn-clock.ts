import type { Clock } from './core/clock.js';

/** Reads served from one `Date.now()` before the clock is read again, within one turn. */
const READS_PER_SAMPLE = 32;

/**
 * The system clock, read cheaply. `Date.now()` costs tens of nanoseconds on virtual machines,
 * which is a visible share of an in-process store's hot path, so a sample is reused for up to
 * 32 reads within one turn of the event loop; a `setImmediate` (one per busy turn, none while
 * idle) ends the reuse. Time read here lags the wall clock by at most the synchronous work done
 * between 32 reads in one turn: microseconds in practice, and never across I/O or timers.
 *
 * Used only where the system clock is the default (the `MemoryStore` without a `clock`, the
 * local-first view's staleness check of a breaker without one, metrics); an injected clock is
 * always read exactly.
 */
export function createTurnClock(): Clock {
  let sample = 0;
  let reads = READS_PER_SAMPLE;
  let scheduled = false;
  const expire = (): void => {
    scheduled = false;
    reads = READS_PER_SAMPLE;
  };
  return {
    now(): number {
      if (reads < READS_PER_SAMPLE) {
        reads += 1;
        return sample;
      }
      sample = Date.now();
      reads = 1;
      if (!scheduled) {
        scheduled = true;
        setImmediate(expire).unref();
      }
      return sample;
    },
  };
}
