import type { Bucket, BreakerRecord, WindowCounts } from './types.js';

/**
 * Epoch-aligned bucket arithmetic. A window of `bucketCount` buckets of `bucketMs` each; bucket
 * `i` covers `[i * bucketMs, (i + 1) * bucketMs)`. The ring keeps one slot per bucket, reused
 * when its index falls out of the window, so memory and work per call are O(bucketCount).
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

/** The slot for `now`, emptied first if it holds an older bucket. */
export function currentBucket(buckets: Bucket[], now: number, bucketMs: number, bucketCount: number): Bucket {
  const index = bucketIndex(now, bucketMs);
  const slot = ((index % bucketCount) + bucketCount) % bucketCount;
  let bucket = buckets[slot];
  if (bucket === undefined) {
    // Fill the ring lazily so a breaker that never counts never allocates buckets.
    for (let i = buckets.length; i < bucketCount; i++) {
      buckets.push({ index: -1, successes: 0, failures: 0, slow: 0, ignored: 0 });
    }
    bucket = buckets[slot]!;
  }
  if (bucket.index !== index) {
    bucket.index = index;
    bucket.successes = 0;
    bucket.failures = 0;
    bucket.slow = 0;
    bucket.ignored = 0;
  }
  return bucket;
}

/** Sums the buckets still inside the window ending at `now`. */
export function windowCounts(
  record: Pick<BreakerRecord, 'buckets' | 'consecutiveFailures'>,
  now: number,
  bucketMs: number,
  bucketCount: number,
): WindowCounts {
  const newest = bucketIndex(now, bucketMs);
  const oldest = newest - bucketCount + 1;
  let successes = 0;
  let failures = 0;
  let slow = 0;
  let ignored = 0;
  for (const bucket of record.buckets) {
    if (bucket.index >= oldest && bucket.index <= newest) {
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
