import { throttleRejectionRate } from './core/policy.js';
import type { ThrottlePolicy } from './core/types.js';

/** How many buckets a throttle's window is cut into. */
const BUCKETS = 10;

/**
 * One breaker's adaptive throttle in this process (`trip: adaptiveThrottle()`): the requests and
 * accepts of the last `windowMs`, in ten buckets aligned to the clock, and the draw that turns a
 * call away. Counted here, not in the store: a throttled call costs no round trip, and the rate
 * answers to what this process sees within a call.
 */
export class LocalThrottle {
  readonly #policy: ThrottlePolicy;
  readonly #bucketMs: number;
  /** Per bucket slot: which bucket it holds (index = floor(time / bucketMs)), requests, accepts. */
  readonly #index = new Float64Array(BUCKETS).fill(-1);
  readonly #requests = new Float64Array(BUCKETS);
  readonly #accepts = new Float64Array(BUCKETS);

  constructor(policy: ThrottlePolicy) {
    this.#policy = policy;
    this.#bucketMs = Math.max(1, Math.ceil(policy.windowMs / BUCKETS));
  }

  /** The slot of the bucket at `now`, emptied when it last held an older bucket. */
  #slot(now: number): number {
    const index = Math.floor(now / this.#bucketMs);
    const slot = ((index % BUCKETS) + BUCKETS) % BUCKETS;
    if (this.#index[slot] !== index) {
      this.#index[slot] = index;
      this.#requests[slot] = 0;
      this.#accepts[slot] = 0;
    }
    return slot;
  }

  /** Requests and accepts over the window ending at `now`. */
  counts(now: number): { requests: number; accepts: number } {
    const newest = Math.floor(now / this.#bucketMs);
    let requests = 0;
    let accepts = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const index = this.#index[slot] ?? -1;
      if (index > newest - BUCKETS && index <= newest) {
        requests += this.#requests[slot] ?? 0;
        accepts += this.#accepts[slot] ?? 0;
      }
    }
    return { requests, accepts };
  }

  /** The share of calls turned away now. */
  rejectionRate(now: number): number {
    const { requests, accepts } = this.counts(now);
    return throttleRejectionRate(this.#policy, requests, accepts);
  }

  /**
   * Counts a request and draws whether it goes through. Returns 0 when it does, else the
   * `retryAfterMs` for the call turned away: one to two buckets (a tenth to a fifth of the
   * window) at random, so deferred work comes back spread out, when the window has moved on.
   */
  request(now: number, random: number): number {
    const rate = this.rejectionRate(now);
    this.#requests[this.#slot(now)]! += 1;
    if (rate === 0 || random >= rate) return 0;
    return Math.max(1, Math.ceil(this.#bucketMs * (1 + Math.random())));
  }

  /** The dependency accepted a call (a success, or an outcome that counts as neither). */
  accept(now: number): void {
    this.#accepts[this.#slot(now)]! += 1;
  }
}
