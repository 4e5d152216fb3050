import { DelayedError, Worker } from 'bullmq';
import type { Job, Processor } from 'bullmq';

import { CircuitBreaker } from '../breaker.js';
import { isCircuitOpenError, type CircuitOpenError } from '../errors.js';
import type { Disposer } from '../listeners.js';
import { ProberRule, rampSlot } from './deferral.js';
import { TooManyDeferralsError } from './errors.js';
import { resolveWithBreakerOptions, type GuardingBreaker, type WithBreakerOptions } from './options.js';
import { anySignal, closingSignal, workerOf, type WorkerHandle } from './signals.js';

/**
 * How often a job being processed was deferred before this run: the starts that consumed no
 * attempt (deferrals, and put-backs on shutdown or after a stall). BullMQ counts every start in
 * `attemptsStarted` and every finished attempt, completed or failed, in `attemptsMade`; a
 * deferral (`moveToDelayed` from the processor) ends a start without finishing an attempt.
 * Nothing is written to the job, so its data and progress stay yours. For a finished job the
 * deferrals are `attemptsStarted - attemptsMade`.
 */
export function deferralsOf(job: Pick<Job, 'attemptsStarted' | 'attemptsMade'>): number {
  return Math.max(0, (job.attemptsStarted ?? 0) - (job.attemptsMade ?? 0) - 1);
}

/** Past this many deferred jobs waiting in one worker, more are not brought back early. */
const MAX_TRACKED = 10_000;

/**
 * The jobs this worker deferred, by the breaker that turned them away: when that breaker admits
 * calls again in this process (its close, however this process learnt it: its own probe, a push,
 * an answer; a reset or an operator's close too), they come back at once, or spread over what is
 * left of its recovery ramp, instead of waiting out the delay they were given.
 */
class DeferredJobs {
  readonly #byBreaker = new Map<CircuitBreaker, { jobs: Map<string, Job>; stop: Disposer }>();
  /** Weak: the factory may drop a breaker that no job of this worker waits on any more. */
  readonly #probers = new ProberRule<CircuitBreaker>(new WeakMap());
  #size = 0;

  /**
   * The delay of a job its own breaker turned away while open (`ProberRule`): the prober's comes
   * back when the breaker probes, the others when `#bringBack` returns them. Past `MAX_TRACKED`
   * nothing would bring them back, so every job keeps the breaker's delay.
   */
  delayWhileOpen(breaker: CircuitBreaker, delayMs: number, now: number): number {
    if (this.#size >= MAX_TRACKED) return delayMs;
    return this.#probers.delayWhileOpen(breaker, delayMs, now);
  }

  add(breaker: CircuitBreaker, job: Job): void {
    const id = job.id;
    if (id === undefined || this.#size >= MAX_TRACKED) return;
    let entry = this.#byBreaker.get(breaker);
    if (entry === undefined) {
      const stop = breaker.onAdmitting((event) => this.#bringBack(breaker, event.rampLeftMs));
      entry = { jobs: new Map(), stop };
      this.#byBreaker.set(breaker, entry);
    }
    if (!entry.jobs.has(id)) this.#size += 1;
    entry.jobs.set(id, job);
  }

  /** The job runs again: no longer waiting. */
  started(breaker: CircuitBreaker, job: Job): void {
    const entry = this.#byBreaker.get(breaker);
    if (entry === undefined || job.id === undefined || !entry.jobs.delete(job.id)) return;
    this.#size -= 1;
    if (entry.jobs.size === 0) this.#forget(breaker, entry);
  }

  #forget(breaker: CircuitBreaker, entry: { stop: Disposer }): void {
    this.#byBreaker.delete(breaker);
    entry.stop();
  }

  #bringBack(breaker: CircuitBreaker, rampLeftMs: number): void {
    const entry = this.#byBreaker.get(breaker);
    if (entry === undefined) return;
    this.#forget(breaker, entry);
    const jobs = [...entry.jobs.values()];
    this.#size -= jobs.length;
    // Spread over the ramp as it admits them (`rampSlot`), each promoted when its time comes:
    // changing every job's delay at once is a burst of commands on the queue's connection that
    // the other tenants' jobs wait behind. A worker that stops first leaves the rest to their
    // delay. A job that is no longer delayed (it started, or was removed) is left as it is.
    jobs.forEach((job, i) => {
      const delayMs = rampSlot(rampLeftMs, i, jobs.length);
      const promote = (): void => void job.promote().catch(() => undefined);
      if (delayMs === 0) promote();
      else setTimeout(promote, delayMs).unref();
    });
  }
}

/**
 * A BullMQ processor that runs `process` through the job's circuit breaker. When the breaker
 * rejects (`CircuitOpenError`), the job is deferred instead of failed: it goes back to the delayed
 * set for `retryAfterMs` plus jitter (`job.moveToDelayed` with the worker's token, then
 * `DelayedError`), so it consumes no attempt and keeps no worker busy. While the job's own
 * breaker is open, only the first job a worker defers (while none is due back) comes back when it
 * probes; the others wait four times as long, and are brought back when the breaker admits calls
 * again (spread over the recovery ramp). With `rateLimitQueue`, the
 * queue is rate-limited for that long instead and the job goes back to the wait list. The work's
 * own errors go to BullMQ untouched.
 *
 * ```ts
 * const worker = new Worker('sync', withBreaker({
 *   breaker: (job) => factory.breakerFor('sync', { tenantId: job.data.tenantId }),
 *   process: async (job, signal) => syncInvoices(job.data, signal),
 * }), { connection });
 * ```
 *
 * Pass the processor to a `Worker` as it is: it reads the worker from BullMQ's call (to abort on
 * close, rate-limit, and report hook errors), and declares BullMQ's third parameter so BullMQ
 * hands it a cancellation signal. Not for sandboxed (file) processors.
 */
export function withBreaker<DataType = unknown, ResultType = unknown, NameType extends string = string>(
  options: WithBreakerOptions<DataType, ResultType, NameType>,
): Processor<DataType, ResultType, NameType> {
  const o = resolveWithBreakerOptions(options);
  const waiting = new DeferredJobs();

  function delayFor(error: CircuitOpenError): number {
    const retryAfterMs =
      error.reason === 'half-open-full'
        ? Math.min(error.retryAfterMs, o.halfOpenDelayMs)
        : error.retryAfterMs;
    const base = Math.max(retryAfterMs, o.minDelayMs);
    return Math.ceil(base + o.jitter(base));
  }

  function notify(
    worker: WorkerHandle | undefined,
    job: Job<DataType, ResultType, NameType>,
    error: CircuitOpenError,
    delayMs: number,
  ): void {
    if (o.onDeferred === undefined) return;
    try {
      o.onDeferred(job, error, delayMs);
    } catch (hookError) {
      // The job is already deferred: a throw now would make BullMQ fail a job it no longer holds.
      worker?.emit('error', hookError instanceof Error ? hookError : new Error(String(hookError)));
    }
  }

  async function defer(
    worker: WorkerHandle | undefined,
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    error: CircuitOpenError,
    breaker: GuardingBreaker,
  ): Promise<never> {
    // `maxDeferrals` per attempt: each retry of a job that ran out of deferrals gets as many again
    // (else every retry would fail at once against a breaker that is still open).
    const deferrals = deferralsOf(job);
    if (deferrals >= o.maxDeferrals * ((job.attemptsMade ?? 0) + 1))
      throw new TooManyDeferralsError(job.id, deferrals, o.maxDeferrals, error);
    // Turned away by the job's own breaker: brought back when it admits calls again.
    const own =
      breaker instanceof CircuitBreaker &&
      error.breakerName === breaker.name &&
      !(o.rateLimitQueue && worker !== undefined);
    let delayMs = delayFor(error);
    if (own && (error.reason === 'open' || error.reason === 'forced-open')) {
      delayMs = waiting.delayWhileOpen(breaker, delayMs, Date.now());
    }
    if (o.rateLimitQueue && worker !== undefined) {
      await worker.rateLimit(delayMs);
      notify(worker, job, error, delayMs);
      throw Worker.RateLimitError();
    }
    await job.moveToDelayed(Date.now() + delayMs, token);
    if (own) waiting.add(breaker, job);
    notify(worker, job, error, delayMs);
    throw new DelayedError(
      `Deferred by circuit breaker "${error.breakerName}" (${error.reason}) for ${delayMs} ms`,
    );
  }

  // A non-arrow function, so BullMQ's call gives the worker as `this`; three declared parameters,
  // because BullMQ creates the job's AbortSignal only for a processor whose `length` is >= 3.
  return async function processWithBreaker(
    this: unknown,
    job: Job<DataType, ResultType, NameType>,
    token?: string,
    signal?: AbortSignal,
  ): Promise<ResultType> {
    const worker = workerOf(this);
    const closing = o.abortOnClose && worker !== undefined ? closingSignal(worker) : undefined;
    const linked = anySignal([signal, closing]);
    let breaker: GuardingBreaker | undefined;
    try {
      breaker = o.breakerOf(job);
      if (breaker instanceof CircuitBreaker) waiting.started(breaker, job);
      return await breaker.execute(
        (callSignal) => o.process(job, callSignal, token),
        linked.signal === undefined ? undefined : { signal: linked.signal },
      );
    } catch (error) {
      // The job's breaker rejected it, or a breaker inside the work did (an HTTP call through
      // circuitry/fetch to an origin that is down, or that asked for Retry-After): either way the
      // dependency is not there now, so the job is deferred for the rejection's retryAfterMs. (The
      // job's breaker counts an inner rejection as neither a success nor a failure.)
      if (isCircuitOpenError(error) && o.defer(error) && breaker !== undefined) {
        return await defer(worker, job, token, error, breaker);
      }
      if (closing?.aborted === true) {
        // Interrupted by shutdown: back to the queue, now, without consuming an attempt.
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError('Put back: the worker closed while the job ran');
      }
      throw error;
    } finally {
      linked.dispose();
    }
  };
}
