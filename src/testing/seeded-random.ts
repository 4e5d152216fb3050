/**
 * A seeded source of numbers in [0, 1) (mulberry32): small, fast and good enough to spread
 * failures and jitter, and the same sequence for the same seed, so a test or a demo run repeats.
 * Pass it where circuitry takes a `random` (`FaultyStore`, `startFlakyServer`).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
