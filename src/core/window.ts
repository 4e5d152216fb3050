import type { Bucket, BreakerRecord, WindowCounts } from './types.js';

/**
 * Epoch-aligned bucket arithmetic. A window of `bucketCount` buckets of `bucketMs` each; bucket
 * `i` covers `[i * bucketMs, (i + 1) * bucketMs)`. A record keeps at most `bucketCount` buckets,
 * so memory and work per call are O(bucketCount).
 */

/** How many buckets a window is cut into. */
export const BUCKETS_PER_WINDOW = 10;

/** The bucket width and count for a window of `windowMs`. */
export function windowShape(windowMs: number): { bucketMs: number; bucketCount: number } {
  const bucketMs = Math.max(1, Math.ceil(windowMs / BUCKETS_PER_WINDOW));
  return { bucketMs, bucketCount: Math.ceil(windowMs / bucketMs) };
}

export function bucketIndex(now: number, bucketMs: number): number {
  return Math.floor(now / bucketMs);
}

/**
 * The bucket that counts outcomes at `now`. `buckets` holds only buckets that counted something,
 * oldest first, at most `bucketCount` of them: a breaker that saw one call holds one bucket. A
 * bucket that fell out of the window is reused for the new one. If the clock stepped back (a
 * store's clock may), outcomes count in the newest bucket: never in a slot that would wipe newer
 * counts.
 */
export function currentBucket(buckets: Bucket[], now: number, bucketMs: number, bucketCount: number): Bucket {
  const index = bucketIndex(now, bucketMs);
  const newest = buckets[buckets.length - 1];
  if (newest !== undefined && newest.index >= index) return newest;
  const oldest = index - bucketCount + 1;
  let reused: Bucket | undefined;
  while (buckets.length > 0 && (buckets[0]!.index < oldest || buckets.length >= bucketCount)) {
    reused = buckets.shift();
  }
  if (reused === undefined) {
    reused = { index, successes: 0, failures: 0, slow: 0, ignored: 0 };
  } else {
    reused.index = index;
    reused.successes = 0;
    reused.failures = 0;
    reused.slow = 0;
    reused.ignored = 0;
  }
  buckets.push(reused);
  return reused;
}

/**
 * Sums the buckets still inside the window ending at `now`, or at the newest bucket if that is
 * later: outcomes counted while the clock is behind went into the newest bucket (`currentBucket`),
 * and must be seen, or a store whose clock stepped back would never trip.
 */
export function windowCounts(
  record: Pick<BreakerRecord, 'buckets' | 'consecutiveFailures'>,
  now: number,
  bucketMs: number,
  bucketCount: number,
): WindowCounts {
  const buckets = record.buckets;
  const latest = buckets.length === 0 ? -Infinity : buckets[buckets.length - 1]!.index;
  const oldest = Math.max(bucketIndex(now, bucketMs), latest) - bucketCount + 1;
  let successes = 0;
  let failures = 0;
  let slow = 0;
  let ignored = 0;
  for (const bucket of buckets) {
    if (bucket.index >= oldest) {
      successes += bucket.successes;
      failures += bucket.failures;
      slow += bucket.slow;
      ignored += bucket.ignored;
    }
  }
  const total = successes + failures;
  return {
    successes,
    failures,
    slow,
    ignored,
    total,
    failureRate: total === 0 ? 0 : failures / total,
    consecutiveFailures: record.consecutiveFailures,
  };
}
