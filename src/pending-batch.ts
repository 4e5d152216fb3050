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

// Batch ids are `<writer>.<n>`: the writer's tag (a random prefix per process, then a count of
// writers in this process, so tags are unique across processes without a clock or a UUID per
// write), and the number of the batch among that writer's, in base 36 (`OutcomeBatch.idFloor`).
const PROCESS_TAG = Math.floor(Math.random() * 36 ** 8)
  .toString(36)
  .padStart(8, '0');
let writerCount = 0;

/** A new writer tag, unique in this process and (by its random prefix) across processes. */
export function nextWriterTag(): string {
  writerCount += 1;
  return `${PROCESS_TAG}${writerCount.toString(36)}`;
}

/** The number of a batch whose id is `<writer>.<n>` (n in base 36), or NaN for another id. */
export function batchNumber(id: string | undefined): number {
  if (id === undefined) return NaN;
  return parseInt(id.slice(id.lastIndexOf('.') + 1), 36);
}
