export { CircuitBreaker } from './breaker.js';
export type {
  AdmittingEvent,
  ExecuteOptions,
  FailureEvent,
  OverrideOptions,
  Permit,
  RejectEvent,
  StateChangeEvent,
  StoreErrorEvent,
  SuccessEvent,
} from './breaker.js';
export { BreakerFactory } from './factory.js';
export { healthHandler, healthOf } from './health-handler.js';
export type { BreakerStatus, HealthBody, HealthHandlerOptions } from './health-handler.js';
export type { MetricState } from './metrics-export.js';
export type { BreakerHealth, CloseOptions, CloseReport, FactoryOptions, HealthReport } from './factory.js';
export type { StoreOperation, UnwrittenOutcomes } from './coordination.js';
export type {
  BackoffOptions,
  BreakerOptions,
  FailureClassifier,
  EscalateOptions,
  QuorumOptions,
  RecoveryOptions,
  Logger,
  StoreFailurePolicy,
} from './options.js';
export type { Disposer } from './listeners.js';
export {
  CallTimeoutError,
  CircuitOpenError,
  CircuitryError,
  ExpectedError,
  InvalidOptionError,
  StoreError,
  isCallTimeoutError,
  isCircuitOpenError,
  isExpectedError,
  isStoreError,
} from './errors.js';
export {
  adaptiveThrottle,
  consecutiveFailures,
  custom,
  failureRate,
  failuresInWindow,
  throttleRejectionRate,
} from './core/policy.js';
export { MAX_REASON_LENGTH, NO_RECORD } from './core/reducer.js';
export type { Clock } from './core/clock.js';
export type {
  AcquireResult,
  BreakerPolicy,
  BreakerRecord,
  BreakerState,
  Bucket,
  CircuitState,
  ForceOptions,
  Lease,
  Outcome,
  OutcomeBatch,
  Override,
  ProbeResult,
  RejectReason,
  Reporter,
  Snapshot,
  Transition,
  ThrottlePolicy,
  TripPolicy,
  UpdateResult,
  WindowCounts,
} from './core/types.js';
export type {
  Awaitable,
  ListPage,
  RecordedAcquire,
  StateChangeMessage,
  Store,
  StoreTiming,
  SubscribeOptions,
} from './store.js';
export type { RecordExaminer, RecordReport } from './stores/record-report.js';
export { MemoryStore } from './stores/memory.js';
export type { MemoryStoreOptions } from './stores/memory.js';
