import type { Outcome, OutcomeBatch } from './core/types.js';

/** Closed-state outcomes of one generation, counted in this process and not yet written. */
export interface PendingBatch {
  generation: number;
  successes: number;
  failures: number;
  trailingFailures: number;
  slow: number;
  ignored: number;
}

export const NO_PROBES: OutcomeBatch['probes'] = Object.freeze([]);

export function emptyBatch(generation: number): PendingBatch {
  return { generation, successes: 0, failures: 0, trailingFailures: 0, slow: 0, ignored: 0 };
}

export function addOutcome(batch: PendingBatch, outcome: Outcome, slow: boolean): void {
  if (outcome === 'success') {
    batch.successes += 1;
    batch.trailingFailures = 0;
  } else if (outcome === 'failure') {
    batch.failures += 1;
    batch.trailingFailures += 1;
  } else {
    batch.ignored += 1;
  }
  if (slow) batch.slow += 1;
}

/** Adds `batch`'s counts to `into` (the same generation), keeping the run of trailing failures right. */
export function mergeInto(into: PendingBatch, batch: Omit<PendingBatch, 'generation'>): void {
  into.trailingFailures =
    batch.successes > 0 ? batch.trailingFailures : into.trailingFailures + batch.failures;
  into.successes += batch.successes;
  into.failures += batch.failures;
  into.slow += batch.slow;
  into.ignored += batch.ignored;
}

export function isEmptyBatch(batch: Omit<PendingBatch, 'generation'>): boolean {
  return batch.successes + batch.failures + batch.slow + batch.ignored === 0;
}

// Batch ids: a random prefix per process and a counter, so ids are unique across processes
// without a clock or a UUID per write.
const PROCESS_TAG = Math.floor(Math.random() * 36 ** 8)
  .toString(36)
  .padStart(8, '0');
let batchCounter = 0;

export function nextBatchId(): string {
  batchCounter += 1;
  return `${PROCESS_TAG}.${batchCounter.toString(36)}`;
}
