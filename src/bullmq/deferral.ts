/**
 * How much longer than its breaker's retry-after a job waits that its breaker will bring back
 * when it admits calls again (`withBreaker`): the delay only bounds the wait if that never comes
 * (the worker stopped). No BullMQ import here: the demo's simulated queue defers the same way.
 */
export const PARKED_DELAY_FACTOR = 4;

/**
 * When the `i`-th of `n` deferred jobs comes back into a recovery ramp with `rampMs` left:
 * `rampMs × √((i + ½) / n)`, denser late in the ramp as the share it admits (`√` of the time
 * elapsed) rises, so a job brought back is turned away ('recovering') a fifth of the time, not a
 * third as when spread evenly (and never the first, at the close, where the ramp admits none).
 */
export function rampSlot(rampMs: number, i: number, n: number): number {
  return rampMs <= 0 ? 0 : Math.floor(rampMs * Math.sqrt((i + 0.5) / n));
}
