// The signals a job's work listens to: BullMQ's own (worker.cancelJob), and the worker closing.
import { setMaxListeners } from 'node:events';

/** What of a BullMQ Worker this module uses, checked by shape (two copies of bullmq may meet). */
export interface WorkerHandle {
  readonly closing: Promise<void> | undefined;
  once(event: 'closing', listener: () => void): unknown;
  emit(event: 'error', error: Error): boolean;
  rateLimit(expireTimeMs: number): Promise<void>;
}

/**
 * BullMQ calls the processor as a method of the worker (`this.processFn(job, token, signal)`), so
 * `this` in a non-arrow processor is the worker. Anything else (a direct call in a test) is none.
 */
export function workerOf(self: unknown): WorkerHandle | undefined {
  if (typeof self !== 'object' || self === null) return undefined;
  const w = self as Record<string, unknown>;
  return typeof w.once === 'function' && typeof w.emit === 'function' && typeof w.rateLimit === 'function'
    ? (self as WorkerHandle)
    : undefined;
}

/** Why the work's signal aborted when its worker closed. */
export class WorkerClosingError extends Error {
  constructor() {
    super('The BullMQ worker is closing');
    this.name = 'WorkerClosingError';
  }
}

const closingSignals = new WeakMap<WorkerHandle, AbortSignal>();

/** A signal that aborts when `worker` starts closing: one per worker, one listener on it. */
export function closingSignal(worker: WorkerHandle): AbortSignal {
  let signal = closingSignals.get(worker);
  if (signal === undefined) {
    const controller = new AbortController();
    signal = controller.signal;
    // Every running job listens to it (and stops listening when it ends): a worker with a
    // concurrency above 10 is not a leak, so no MaxListenersExceededWarning.
    setMaxListeners(0, signal);
    closingSignals.set(worker, signal);
    if (worker.closing !== undefined) controller.abort(new WorkerClosingError());
    else worker.once('closing', () => controller.abort(new WorkerClosingError()));
  }
  return signal;
}

/**
 * One signal that aborts when any of `sources` does, and a `dispose` that removes its listeners
 * (not `AbortSignal.any`: its listeners on a long-lived source such as a worker's closing signal
 * are only dropped by garbage collection, which Node 20 is known to do late).
 */
export function anySignal(sources: ReadonlyArray<AbortSignal | undefined>): {
  readonly signal: AbortSignal | undefined;
  dispose(): void;
} {
  const present = sources.filter((s): s is AbortSignal => s !== undefined);
  if (present.length <= 1) return { signal: present[0], dispose: () => {} };
  const controller = new AbortController();
  const aborted = present.find((s) => s.aborted);
  if (aborted !== undefined) {
    controller.abort(aborted.reason);
    return { signal: controller.signal, dispose: () => {} };
  }
  const onAbort = (event: Event): void => {
    controller.abort((event.target as AbortSignal).reason);
    dispose();
  };
  const dispose = (): void => {
    for (const s of present) s.removeEventListener('abort', onAbort);
  };
  for (const s of present) s.addEventListener('abort', onAbort, { once: true });
  return { signal: controller.signal, dispose };
}
