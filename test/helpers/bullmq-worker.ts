// A worker process for the BullMQ multi-process test: one BullMQ Worker running `withBreaker`
// with per-tenant breakers in a shared RedisStore, driven by the parent over IPC. It reports every
// dependency call, deferral, completion, failure and state change it sees.
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { withBreaker } from '../../src/bullmq/index.js';
import { BreakerFactory, consecutiveFailures } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

/** What the parent sends. */
export type WorkerCommand =
  | {
      readonly cmd: 'start';
      readonly queue: string;
      /** Key prefix of this run's breakers. */
      readonly prefix: string;
      readonly failingTenant: string | null;
      /** Epoch ms until which the failing tenant's dependency fails every call. */
      readonly downUntil: number;
      readonly workMs: number;
      readonly concurrency: number;
    }
  /** Closes the worker as soon as a job of it is running. */
  | { readonly cmd: 'close' }
  | { readonly cmd: 'end' }
  | { readonly cmd: 'exit' };

/** What a worker reports, by kind. */
export interface Reports {
  readonly ready: true;
  readonly started: true;
  /** BullMQ started a job (asked for its breaker). */
  readonly start: { readonly id: string };
  /** A call to the tenant's dependency, when it starts; `ok: false` while the dependency is down. */
  readonly call: { readonly id: string; readonly tenant: string; readonly ok: boolean; readonly t: number };
  readonly deferred: { readonly id: string; readonly attemptsMade: number; readonly reason: string };
  /** A call whose signal aborted (the worker closed) before it ended. */
  readonly interrupted: { readonly id: string; readonly ok: boolean };
  readonly completed: {
    readonly id: string;
    readonly tenant: string;
    readonly latencyMs: number;
    readonly attemptsMade: number;
    readonly attemptsStarted: number;
  };
  readonly failed: { readonly id: string; readonly name: string; readonly message: string };
  readonly transition: {
    readonly name: string;
    readonly from: string;
    readonly to: string;
    readonly t: number;
  };
  readonly closed: { readonly inFlight: number };
  readonly ended: true;
}

/** One report: an object with one key of `Reports`. */
export type WorkerReport = { [K in keyof Reports]: { readonly [P in K]: Reports[P] } }[keyof Reports];

interface Data {
  readonly tenantId: string;
}

const port = Number(process.argv[2]);
const send = (report: WorkerReport): void => {
  process.send!(report);
};
// BullMQ's connection must not give up on a blocking command; the store's is an ordinary client.
const connection = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null });
const storeClient = new Redis({ port, host: '127.0.0.1' });

let worker: Worker<Data> | undefined;
let factory: BreakerFactory<Data> | undefined;
let inFlight = 0;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      },
      { once: true },
    );
  });
}

function start(run: Extract<WorkerCommand, { cmd: 'start' }>): void {
  const runFactory = new BreakerFactory<Data>({
    store: new RedisStore({ client: storeClient, prefix: run.prefix }),
    storeTimeoutMs: 5_000,
    name: (base, context) => `${base}/${context?.tenantId}`,
    trip: consecutiveFailures(3),
    openMs: 250,
    backoff: { multiplier: 2, maxOpenMs: 1_000 },
    onStateChange: (name, _context, from, to) => send({ transition: { name, from, to, t: Date.now() } }),
  });
  factory = runFactory;
  const w = new Worker<Data>(
    run.queue,
    withBreaker<Data>({
      breaker: (job) => {
        send({ start: { id: job.id! } });
        return runFactory.breakerFor('sync', { tenantId: job.data.tenantId });
      },
      process: async (job, signal) => {
        inFlight += 1;
        try {
          const id = job.id!;
          const tenant = job.data.tenantId;
          const ok = tenant !== run.failingTenant || Date.now() >= run.downUntil;
          send({ call: { id, tenant, ok, t: Date.now() } });
          try {
            await sleep(run.workMs, signal);
          } catch (error) {
            send({ interrupted: { id, ok } });
            throw error;
          }
          if (!ok) throw new Error(`the dependency of ${tenant} is down`);
          return 'synced';
        } finally {
          inFlight -= 1;
        }
      },
      onDeferred: (job, error) =>
        send({ deferred: { id: job.id!, attemptsMade: job.attemptsMade, reason: error.reason } }),
    }),
    { connection, concurrency: run.concurrency },
  );
  w.on('completed', (job) =>
    send({
      completed: {
        id: job.id!,
        tenant: job.data.tenantId,
        latencyMs: Date.now() - job.timestamp,
        attemptsMade: job.attemptsMade,
        attemptsStarted: job.attemptsStarted,
      },
    }),
  );
  w.on('failed', (job, error) =>
    send({ failed: { id: job?.id ?? '?', name: error.name, message: error.message } }),
  );
  w.on('error', (error) => console.error('worker error', error));
  worker = w;
}

process.on('message', (command: WorkerCommand) => {
  void (async () => {
    switch (command.cmd) {
      case 'start':
        start(command);
        await worker!.waitUntilReady();
        send({ started: true });
        break;
      case 'close': {
        // Close while a job runs, the case that matters (waits up to 5 s for one).
        const deadline = Date.now() + 5_000;
        while (inFlight === 0 && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 5));
        const busy = inFlight;
        await worker?.close();
        send({ closed: { inFlight: busy } });
        break;
      }
      case 'end':
        await worker?.close();
        await factory?.close();
        worker = undefined;
        factory = undefined;
        send({ ended: true });
        break;
      case 'exit':
        connection.disconnect();
        storeClient.disconnect();
        process.disconnect();
        break;
    }
  })();
});

send({ ready: true });
