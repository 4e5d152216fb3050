import type { BreakerPolicy } from '../core/types.js';

/**
 * The policy as plain values for a server-side port of the reducer (Redis Lua, Postgres
 * PL/pgSQL): the trip kind, then threshold, ratio, minimumCalls, windowMs, bucketMs, bucketCount,
 * openMs, backoffMultiplier, maxOpenMs, jitterRatio, halfOpenMaxCalls, successThreshold,
 * probeLeaseMs, maxConcurrent, concurrencyLeaseMs. Built once per policy object.
 */
const cache = new WeakMap<BreakerPolicy, readonly [string, readonly number[]]>();

export function policyFields(policy: BreakerPolicy): readonly [string, readonly number[]] {
  let fields = cache.get(policy);
  if (fields === undefined) {
    const trip = policy.trip;
    fields = [
      trip.kind,
      [
        'threshold' in trip ? trip.threshold : 0,
        trip.kind === 'failure-rate' ? trip.ratio : 0,
        trip.kind === 'failure-rate' ? trip.minimumCalls : 0,
        policy.windowMs,
        policy.bucketMs,
        policy.bucketCount,
        policy.openMs,
        policy.backoffMultiplier,
        policy.maxOpenMs,
        policy.jitterRatio,
        policy.halfOpenMaxCalls,
        policy.successThreshold,
        policy.probeLeaseMs,
        policy.maxConcurrent,
        policy.concurrencyLeaseMs,
      ],
    ];
    cache.set(policy, fields);
  }
  return fields;
}
