import { randomBytes } from 'node:crypto';

import { isPromiseLike } from './coordination.js';
import type { BreakerPolicy, OutcomeBatch } from './core/types.js';
import type { QuorumOptions } from './options.js';
import type { Store } from './store.js';

/**
 * One reporter for a quorum (`quorum`): a factory (or a breaker made with `new`), known to the
 * store by an incarnation id. It tells the store it is active with one heartbeat per half window
 * while its breakers write, for the whole store (never per breaker, never per success), and
 * keeps the count of active reporters the store answers.
 */
export class Reporter {
  /** The incarnation id: random per factory, so a restarted process is a new reporter. */
  readonly id = randomBytes(6).toString('base64url');
  readonly #store: Store;
  /**
   * The most active reporters answered within the last window, and when it was last answered:
   * a count that drops is believed only a window later, when every reporter that still writes has
   * beaten again. A store that lost its reporters (a Redis restart without persistence) answers
   * this process alone; the others beat again within a beat interval.
   */
  #peak = 0; // until the store answered a heartbeat
  #peakAt = -Infinity;
  #beatAt = -Infinity;
  /** When the last heartbeat the store answered was sent. */
  #countedAt = -Infinity;
  /** When the current run of failing writes began (the first after a quiet beat interval). */
  #failingSince = -Infinity;
  #failedAt = -Infinity;
  #beating = false;

  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * `batch` as the store should get it: failures (or a trip request) name this reporter and
   * the quorum needed now; successes under a failure rate (which can complete its
   * `minimumCalls`) carry `minReporters`. Heartbeats first, when the last one is half a window old.
   */
  stamp(batch: OutcomeBatch, rule: Readonly<Required<QuorumOptions>>, policy: BreakerPolicy): OutcomeBatch {
    const now = performance.now();
    const windowMs = policy.windowMs;
    const failing = batch.failures > 0 || batch.trip === true;
    const beatEveryMs = Math.min(windowMs / 2, MAX_BEAT_MS);
    if (failing) {
      // Failures after a quiet beat interval begin a new run of them.
      if (now - this.#failedAt >= beatEveryMs) this.#failingSince = now;
      this.#failedAt = now;
    }
    // Whether the count was asked since this run of failures began: one from before may miss
    // reporters that started since (a fleet that starts together).
    const current = this.#countedAt >= this.#failingSince;
    // Active while it writes: a beat every half window (at most every 10 s), and, while it
    // fails, a count asked since it began failing and refreshed every 250 ms, for the failures
    // that may trip the policy.
    const age = now - this.#beatAt;
    if (!this.#beating && (age >= beatEveryMs || (failing && (!current || age >= FRESH_MS)))) {
      this.#beat(now, windowMs);
    }
    // A success that completes a failure rate's minimumCalls may trip it: it asks for the most a
    // quorum can ask (its count may be from before the failing processes started; the next
    // failure, with a count asked since, opens the breaker if the quorum is smaller).
    if (!failing) {
      if (batch.successes === 0 || policy.trip.kind !== 'failure-rate') return batch;
      return withFields(batch, { quorum: rule.minReporters });
    }
    // Until the store has answered a count asked since this run of failures began, the most a
    // quorum can ask: a process that fails must not open the breaker for everyone on a count
    // that missed the others (nor before its first heartbeat is answered).
    const quorum = current ? requiredReporters(rule, this.#peak) : rule.minReporters;
    return withFields(batch, { reporter: this.id, quorum });
  }

  #beat(now: number, windowMs: number): void {
    this.#beatAt = now;
    this.#beating = true;
    const done = (active: number): void => {
      if (Number.isSafeInteger(active) && active >= 1) {
        this.#countedAt = now;
        if (active >= this.#peak || now - this.#peakAt >= windowMs) {
          this.#peak = active;
          this.#peakAt = now;
        }
      }
      this.#beating = false;
    };
    try {
      const answer = this.#store.heartbeat!(this.id, windowMs);
      if (isPromiseLike(answer)) {
        Promise.resolve(answer).then(done, () => {
          this.#beating = false;
        });
      } else {
        done(answer);
      }
    } catch {
      this.#beating = false;
    }
  }
}

/** The longest a reporter goes between heartbeats while it writes. */
const MAX_BEAT_MS = 10_000;
/** How old a count of active reporters a failing reporter relies on, at most. */
const FRESH_MS = 250;

/** `max(1, min(minReporters, ceil(minFraction × active)))`: distinct reporters a shared open needs. */
export function requiredReporters(rule: Readonly<Required<QuorumOptions>>, active: number): number {
  return Math.max(1, Math.min(rule.minReporters, Math.ceil(rule.minFraction * active)));
}

/**
 * `batch` with `fields` added. Not `{ ...batch, ...fields }`: a spread that adds keys takes a slow
 * path on Node 20 (2-3 µs a call here; 25 ns on Node 22 and 24), and this runs on every stamped
 * write.
 */
function withFields(batch: OutcomeBatch, fields: Partial<OutcomeBatch>): OutcomeBatch {
  return Object.assign({}, batch, fields);
}
