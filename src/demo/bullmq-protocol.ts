/**
 * What the parent and the worker processes of `circuitry demo --bullmq` say to each other, and
 * the retry policy both runs give BullMQ. Nothing here imports bullmq, so the parent loads it only
 * for `--bullmq`.
 */
import type { MetricsJson } from './metrics-server.js';
import type { Scenario } from './simulation.js';

/** A job's data: its tenant, and when it was enqueued (ms into the run, the parent's clock). */
export interface BullmqJobData {
  readonly tenant: number;
  readonly enqueuedAt: number;
}

/**
 * Attempts of a job whose own call fails: enough to outlast any outage of the demo, so every job
 * completes in the end (the simulated queue likewise puts a job back after its retries).
 */
export const MAX_ATTEMPTS = 1_000;

/** The longest wait between two attempts of a failing job. */
export const MAX_RETRY_DELAY_MS = 1_000;

/**
 * BullMQ's backoff before attempt `attemptsMade + 1`: doubling from `retryBackoffMs` (25, 50,
 * 100 ms, ... as the simulated workers retry), at most `MAX_RETRY_DELAY_MS`.
 */
export function retryDelayMs(scenario: Scenario, attemptsMade: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, scenario.retryBackoffMs * 2 ** Math.max(0, attemptsMade - 1));
}

export type BullmqToWorker =
  | {
      readonly t: 'config';
      readonly scenario: Scenario;
      readonly withBreakers: boolean;
      readonly redisUrl: string;
      /** BullMQ's key prefix (its keys are `<bullPrefix>:<queue>:...`). */
      readonly bullPrefix: string;
      /** The RedisStore's key prefix of the breakers. */
      readonly storePrefix: string;
      readonly queue: string;
      readonly index: number;
      readonly metrics: boolean;
    }
  | { readonly t: 'start'; readonly startWall: number }
  | { readonly t: 'metrics'; readonly id: number }
  | { readonly t: 'stop' };

export type BullmqFromWorker =
  | { readonly t: 'ready' }
  /** Calls that reached the failing downstream while it was down. */
  | { readonly t: 'wasted'; readonly calls: number }
  /** A breaker rejected the job (for `reason`) and `withBreaker` deferred it. */
  | { readonly t: 'deferred'; readonly id: string; readonly reason: string }
  | { readonly t: 'done'; readonly tenant: number; readonly enqueuedAt: number }
  | { readonly t: 'state'; readonly tenant: number; readonly to: string }
  | { readonly t: 'metrics'; readonly id: number; readonly metrics: MetricsJson }
  | { readonly t: 'error'; readonly message: string };
