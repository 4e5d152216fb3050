/**
 * How much longer than its breaker's retry-after a job waits that its breaker will bring back
 * when it admits calls again (`withBreaker`): the delay only bounds the wait if that never comes
 * (the worker stopped). No BullMQ import here: the demo's simulated queue defers the same way.
 */
export const PARKED_DELAY_FACTOR = 4;

/** When each breaker's prober comes back, by key: a `WeakMap` of breakers, a `Map` of tenants. */
export interface DueTimes<Key> {
  get(key: Key): number | undefined;
  set(key: Key, at: number): unknown;
}

/**
 * The delay of the jobs one worker defers while their breaker is open: the first (while none is
 * due back) keeps the breaker's `delayMs`, so it comes back when the breaker probes (the
 * prober); the others are parked for `PARKED_DELAY_FACTOR` times as long, to be brought back
 * when the breaker admits calls again. So a job is not deferred again at each probe of a long
 * outage. `withBreaker` and the demo's simulated queue both defer by this rule.
 */
export class ProberRule<Key> {
  readonly #due: DueTimes<Key>;

  constructor(due: DueTimes<Key>) {
    this.#due = due;
  }

  delayWhileOpen(key: Key, delayMs: number, now: number): number {
    const due = this.#due.get(key);
    if (due !== undefined && due > now) return delayMs * PARKED_DELAY_FACTOR;
    this.#due.set(key, now + delayMs);
    return delayMs;
  }
}

/**
 * When the `i`-th of `n` deferred jobs comes back into a recovery ramp with `rampMs` left:
 * `rampMs × √((i + ½) / n)`, denser late in the ramp as the share it admits (`√` of the time
 * elapsed) rises, so a job brought back is turned away ('recovering') a fifth of the time, not a
 * third as when spread evenly (and never the first, at the close, where the ramp admits none).
 */
export function rampSlot(rampMs: number, i: number, n: number): number {
  return rampMs <= 0 ? 0 : Math.floor(rampMs * Math.sqrt((i + 0.5) / n));
}
