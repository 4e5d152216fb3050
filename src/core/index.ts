export type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  BreakerState,
  Bucket,
  CircuitState,
  Lease,
  Outcome,
  OutcomeBatch,
  Override,
  ProbeResult,
  RejectReason,
  Snapshot,
  ThrottlePolicy,
  Transition,
  TripPolicy,
  UpdateResult,
  WindowCounts,
} from './types.js';
export { SCHEMA_VERSION } from './types.js';
export type { Clock } from './clock.js';
export { systemClock } from './clock.js';
export {
  DEFAULT_WINDOW_MS,
  THROTTLE_DEFAULTS,
  adaptiveThrottle,
  consecutiveFailures,
  custom,
  failureRate,
  failuresInWindow,
  outcomesCanTrip,
  policyWindowMs,
  shouldTrip,
  throttleRejectionRate,
} from './policy.js';
export { BUCKETS_PER_WINDOW, bucketIndex, currentBucket, windowCounts, windowShape } from './window.js';
export {
  acquire,
  circuitState,
  emptyRecord,
  force,
  initialGeneration,
  isValidRecord,
  openPeriodMs,
  record,
  reset,
  snapshot,
} from './reducer.js';
