import { CircuitryError } from '../errors.js';
import type { CircuitOpenError } from '../errors.js';

/**
 * A job met an open breaker once more after `maxDeferrals` deferrals, so it was not deferred
 * again: the processor throws this instead, and BullMQ handles it as any failure of the job (it
 * consumes an attempt; with the default `attempts: 1` the job fails). `cause` is the rejection.
 */
export class TooManyDeferralsError extends CircuitryError {
  /** Always `'TOO_MANY_DEFERRALS'`. */
  declare readonly code: 'TOO_MANY_DEFERRALS';
  /** The id of the job. */
  readonly jobId: string | undefined;
  /** How often the job had been deferred (started without consuming an attempt) before, in all its attempts. */
  readonly deferrals: number;
  /** The `maxDeferrals` option in force (per attempt). */
  readonly maxDeferrals: number;

  constructor(jobId: string | undefined, deferrals: number, maxDeferrals: number, cause: CircuitOpenError) {
    super(
      'TOO_MANY_DEFERRALS',
      `Job ${jobId ?? '(no id)'} was rejected by circuit breaker "${cause.breakerName}" (${cause.reason}) ` +
        `after ${deferrals} deferrals (maxDeferrals: ${maxDeferrals} per attempt); not deferring it again`,
      { cause },
    );
    this.name = 'TooManyDeferralsError';
    this.jobId = jobId;
    this.deferrals = deferrals;
    this.maxDeferrals = maxDeferrals;
  }
}

/** Whether `error` is a `TooManyDeferralsError` (from any copy of circuitry: checks the `code`). */
export function isTooManyDeferralsError(error: unknown): error is TooManyDeferralsError {
  return (
    typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'TOO_MANY_DEFERRALS'
  );
}
