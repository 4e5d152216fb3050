/** Where the breaker reads time. The reducer never reads a clock: it is handed `now`. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
