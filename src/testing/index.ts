export { ManualClock } from './manual-clock.js';
export { CORRUPTION_KINDS, describeStoreConformance, outcomes, policyOf } from './conformance.js';
export type { ConformanceHarness, ConformanceOptions, CorruptionKind } from './conformance.js';
export {
  ModelCheckViolation,
  describeModelCheck,
  describeStep,
  randomHistory,
  replayModelCheck,
  runModelCheck,
} from './model-check.js';
export type {
  Fault,
  ModelCheckHarness,
  ModelCheckOptions,
  ModelCheckPolicy,
  ModelCheckReport,
  ModelStep,
} from './model-check.js';
export { FaultyStore, InjectedStoreFault } from './faulty-store.js';
export type { FaultMode, FaultyStoreOptions, Method as FaultyStoreMethod } from './faulty-store.js';
export { IntermittentFailer, IntermittentFailure } from './intermittent-failer.js';
export type { IntermittentFailerOptions } from './intermittent-failer.js';
export { startFlakyServer } from './flaky-server.js';
export type { FlakyBehaviour, FlakyServer, FlakyServerOptions, FlakyServerStats } from './flaky-server.js';
export { seededRandom } from './seeded-random.js';
