export { ManualClock } from './manual-clock.js';
export { CORRUPTION_KINDS, describeStoreConformance, outcomes, policyOf } from './conformance.js';
export type { ConformanceHarness, ConformanceOptions, CorruptionKind } from './conformance.js';
