import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { Queue, Worker } from 'bullmq';
import type { Job, Processor, WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';

import {
  deferralsOf,
  isTooManyDeferralsError,
  TooManyDeferralsError,
  withBreaker,
} from '../../src/bullmq/index.js';
import type { WithBreakerOptions } from '../../src/bullmq/index.js';
import {
  BreakerFactory,
  CircuitOpenError,
  consecutiveFailures,
  InvalidOptionError,
  isCallTimeoutError,
  isCircuitOpenError,
} from '../../src/index.js';
import type { CircuitBreaker } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { useRedisServer } from '../helpers/redis-server.js';

// withBreaker with real BullMQ workers in this process, against a redis-server of the test's own.
// Breakers are forced open, so every rejection is deterministic.

interface Data {
  readonly tenantId: string;
}

/** What `onDeferred` was told of one deferral, with the attempts the job had made then. */
interface Deferral {
  readonly error: CircuitOpenError;
  readonly delayMs: number;
  readonly attemptsMade: number;
}

async function until<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A queue and workers of a test's own, closed at the end. */
class Harness {
  readonly name = `q-${randomUUID()}`;
  readonly queue: Queue<Data>;
  readonly workers: Worker<Data>[] = [];
  readonly connection: Redis;
  readonly failed: Array<{ job: Job<Data> | undefined; error: Error }> = [];
  readonly completed: Array<Job<Data>> = [];
  readonly errors: Error[] = [];
  /** The deferrals of the workers made by `withBreaker`, in order. */
  readonly deferred: Deferral[] = [];

  constructor(server: RedisServer) {
    this.connection = server.client({ maxRetriesPerRequest: null });
    this.queue = new Queue<Data>(this.name, { connection: this.connection });
  }

  worker(processor: Processor<Data>, options: Partial<WorkerOptions> = {}): Worker<Data> {
    const worker = new Worker<Data>(this.name, processor, {
      connection: this.connection,
      concurrency: 1,
      ...options,
    });
    worker.on('failed', (job, error) => this.failed.push({ job, error }));
    worker.on('completed', (job) => this.completed.push(job));
    worker.on('error', (error) => this.errors.push(error));
    this.workers.push(worker);
    return worker;
  }

  /** A worker running `withBreaker(options)`, whose `onDeferred` records into `deferred`. */
  withBreaker(
    options: Omit<WithBreakerOptions<Data>, 'onDeferred'>,
    workerOptions: Partial<WorkerOptions> = {},
  ): Worker<Data> {
    const onDeferred = (job: Job<Data>, error: CircuitOpenError, delayMs: number): void =>
      void this.deferred.push({ error, delayMs, attemptsMade: job.attemptsMade });
    return this.worker(withBreaker<Data>({ ...options, onDeferred }), workerOptions);
  }

  /** The delay of each deferral, in order. */
  get delays(): number[] {
    return this.deferred.map((d) => d.delayMs);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.queue.close();
    this.connection.disconnect();
  }
}

function factory(options: ConstructorParameters<typeof BreakerFactory<Data>>[0] = {}): BreakerFactory<Data> {
  return new BreakerFactory<Data>({
    name: (base, context) => `${base}/${context?.tenantId}`,
    jitter: 0,
    ...options,
  });
}

async function forcedOpen(openMs: number): Promise<CircuitBreaker<Data>> {
  const breaker = factory({ openMs }).breakerFor('sync', { tenantId: 'acme' });
  await breaker.force('forced-open');
  return breaker;
}

describe('withBreaker (circuitry/bullmq)', { timeout: 60_000 }, () => {
  let server: RedisServer;
  useRedisServer((s) => {
    server = s;
  });

  it('rejects malformed options with an InvalidOptionError naming the option', () => {
    const breaker = factory().breakerFor('sync', { tenantId: 't' });
    const ok: WithBreakerOptions<Data> = { breaker, process: async () => 1 };
    const bad: Array<[string, unknown]> = [
      ['breaker', { ...ok, breaker: 42 }],
      ['process', { ...ok, process: 'run' }],
      ['defer', { ...ok, defer: ['closed'] }],
      ['defer', { ...ok, defer: 'open' }],
      ['maxDeferrals', { ...ok, maxDeferrals: -1 }],
      ['maxDeferrals', { ...ok, maxDeferrals: 1.5 }],
      ['minDelayMs', { ...ok, minDelayMs: Number.NaN }],
      ['halfOpenDelayMs', { ...ok, halfOpenDelayMs: -5 }],
      ['jitter', { ...ok, jitter: -0.1 }],
      ['onDeferred', { ...ok, onDeferred: true }],
      ['rateLimitQueue', { ...ok, rateLimitQueue: 'yes' }],
      ['abortOnClose', { ...ok, abortOnClose: 1 }],
      ['retryAfter', { ...ok, retryAfter: 5 }],
      ['withBreaker options', null],
    ];
    for (const [option, options] of bad) {
      assert.throws(
        () => withBreaker(options as WithBreakerOptions<Data>),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
    assert.throws(() => withBreaker({ ...ok, maxDeferrals: -1 }), {
      message: 'Expected `maxDeferrals` to be an integer >= 0 or Infinity, got `-1` (number)',
    });
    withBreaker({ ...ok, maxDeferrals: Infinity, jitter: () => 5, defer: ['open', 'half-open-full'] });
    // BullMQ hands a cancellation signal only to a processor that declares three parameters.
    assert.equal(withBreaker(ok).length, 3);
  });

  it('defers a rejected job by retryAfterMs plus jitter without consuming an attempt, then runs it', async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(400);
      let runs = 0;
      let seenDeferrals = -1;
      h.withBreaker({
        breaker: (job) => {
          assert.equal(job.data.tenantId, 'acme');
          return breaker;
        },
        process: async (job) => {
          runs += 1;
          seenDeferrals = deferralsOf(job);
          return 'synced';
        },
      });
      const added = await h.queue.add('sync', { tenantId: 'acme' });
      const first = await until(() => h.deferred[0], 'the first deferral');
      assert.ok(first.error instanceof CircuitOpenError);
      assert.equal(first.error.reason, 'forced-open');
      // retryAfterMs is openMs for a forced-open breaker; the default jitter adds up to 10%.
      assert.ok(first.delayMs >= 400 && first.delayMs <= 440, `delay ${first.delayMs}`);
      const job = (await h.queue.getJob(added.id!))!;
      assert.equal(await job.getState(), 'delayed');
      // BullMQ derives `delay` from the timestamp and its own clock read a moment later.
      assert.ok(Math.abs(job.delay - first.delayMs) <= 50, `delay ${job.delay} vs ${first.delayMs}`);
      assert.equal(job.attemptsMade, 0);
      assert.equal(runs, 0);

      await breaker.force(null);
      await until(() => h.completed[0], 'the job to complete');
      const done = (await h.queue.getJob(added.id!))!;
      assert.equal(done.returnvalue, 'synced');
      // BullMQ counts an attempt when it finishes, completed or failed: only the one that completed.
      assert.equal(done.attemptsMade, 1, 'deferrals consume no attempt');
      assert.equal(done.attemptsStarted, h.deferred.length + 1);
      assert.equal(seenDeferrals, h.deferred.length, 'deferralsOf(job) in the processor');
      assert.ok(h.deferred.every((d) => d.attemptsMade === 0));
      assert.equal(runs, 1);
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });

  it("defers a job whose work was rejected by a breaker inside it (an HTTP origin that is down); the job's breaker counts nothing", async () => {
    const h = new Harness(server);
    try {
      const jobBreaker = factory({ openMs: 60_000 }).breakerFor('sync', { tenantId: 'acme' });
      const inner = factory().breakerFor('http', { tenantId: 'origin' });
      await inner.openFor(300, { reason: 'Retry-After from the API' });
      let runs = 0;
      h.withBreaker({
        breaker: jobBreaker,
        process: async () => {
          runs += 1;
          return inner.execute(async () => 'called the API');
        },
      });
      await h.queue.add('sync', { tenantId: 'acme' });
      const first = await until(() => h.deferred[0], 'the first deferral');
      assert.equal(first.error.breakerName, 'http/origin');
      assert.equal(first.error.reason, 'forced-open');
      // The time left of the open, plus up to 10 % of jitter.
      assert.ok(first.delayMs > 0 && first.delayMs <= 330, `delay ${first.delayMs}`);
      await until(() => h.completed[0], 'the job to complete once the inner breaker lets it');
      assert.ok(runs >= 2);
      assert.deepEqual(h.failed, []);
      const counts = (await jobBreaker.state()).counts;
      assert.equal(counts.failures, 0, "the inner rejection is not the job's breaker's failure");
      assert.ok(counts.ignored >= 1);
    } finally {
      await h.close();
    }
  });

  it("defers a job rejected as 'half-open-full' by a probe's time, not the probe lease", async () => {
    const h = new Harness(server);
    try {
      const breaker = factory({ trip: consecutiveFailures(1), openMs: 50, halfOpenMaxCalls: 1 }).breakerFor(
        'sync',
        {
          tenantId: 'acme',
        },
      );
      await assert.rejects(breaker.execute(() => Promise.reject(new Error('down'))));
      await new Promise((resolve) => setTimeout(resolve, 60));
      let releaseProbe = (): void => {};
      let probes = 0;
      h.withBreaker(
        {
          breaker,
          // The first job is the probe and holds its lease until released (or the worker closes).
          process: (_job, signal) =>
            new Promise((resolve, reject) => {
              if (probes++ > 0) return resolve('ran');
              releaseProbe = () => resolve('probed');
              signal.addEventListener('abort', () => reject(signal.reason as Error));
            }),
          jitter: 0,
        },
        { concurrency: 2 },
      );
      await h.queue.add('sync', { tenantId: 'acme' });
      await h.queue.add('sync', { tenantId: 'acme' });
      const first = await until(() => h.deferred[0], 'the second job to be deferred', 3_000);
      assert.equal(first.error.reason, 'half-open-full');
      // The breaker's own hint (no probe seen yet: 1 s), not the 30 s until the probe lease expires.
      assert.ok(first.error.retryAfterMs <= 1_000, `retryAfterMs ${first.error.retryAfterMs}`);
      assert.ok(first.delayMs <= 1_000, `delayMs ${first.delayMs}`);
      releaseProbe();
      await until(() => h.completed[1], 'both jobs to complete');
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });

  it('fails a job with TooManyDeferralsError once it was deferred maxDeferrals times', async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(30);
      h.withBreaker({ breaker, process: async () => 'never', maxDeferrals: 2, minDelayMs: 10, jitter: 0 });
      const added = await h.queue.add('sync', { tenantId: 'acme' }, { attempts: 1 });
      const { error } = await until(() => h.failed[0], 'the job to fail');
      assert.ok(error instanceof TooManyDeferralsError);
      assert.ok(isTooManyDeferralsError(error));
      assert.equal(error.code, 'TOO_MANY_DEFERRALS');
      assert.equal(error.deferrals, 2);
      assert.equal(error.maxDeferrals, 2);
      assert.equal(error.jobId, added.id);
      assert.ok(isCircuitOpenError(error.cause));
      assert.equal(h.deferred.length, 2);
      const job = (await h.queue.getJob(added.id!))!;
      assert.equal(await job.getState(), 'failed');
      assert.equal(job.attemptsMade, 1);
      assert.match(job.failedReason, /after 2 deferrals \(maxDeferrals: 2 per attempt\)/);
    } finally {
      await h.close();
    }
  });

  it('gives each attempt maxDeferrals deferrals: a retry is deferred again, not failed at once', async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(30);
      h.withBreaker({ breaker, process: async () => 'never', maxDeferrals: 2, minDelayMs: 10, jitter: 0 });
      const added = await h.queue.add('sync', { tenantId: 'acme' }, { attempts: 3 });
      // The worker reports each failed attempt; the third is the last.
      const { error } = await until(() => h.failed[2], 'the third attempt to fail');
      assert.ok(error instanceof TooManyDeferralsError);
      assert.equal(error.deferrals, 6);
      assert.deepEqual(
        h.failed.map((f) => (f.error as TooManyDeferralsError).deferrals),
        [2, 4, 6],
      );
      // Two deferrals in each of the three attempts (by the attempts made before each).
      assert.deepEqual(
        h.deferred.map((d) => d.attemptsMade),
        [0, 0, 1, 1, 2, 2],
      );
      const job = (await h.queue.getJob(added.id!))!;
      assert.equal(job.attemptsMade, 3);
    } finally {
      await h.close();
    }
  });

  it('brings deferred jobs back when their breaker closes, not when their delay ends', async () => {
    const h = new Harness(server);
    try {
      // Deferred for the open period, 8 s; closed by an operator after the deferrals.
      const breaker = await forcedOpen(8_000);
      h.withBreaker({ breaker, process: async () => 'done', jitter: 0 }, { concurrency: 3 });
      await h.queue.addBulk([0, 1, 2].map(() => ({ name: 'sync', data: { tenantId: 'acme' } })));
      await until(() => h.deferred.length === 3, 'three deferrals');
      assert.ok(
        h.delays.every((ms) => ms >= 7_000),
        JSON.stringify(h.delays),
      );
      const closedAt = Date.now();
      await breaker.force(null);
      await until(() => h.completed.length === 3, 'the three jobs to complete', 5_000);
      const after = Date.now() - closedAt;
      assert.ok(after < 2_000, `completed ${after} ms after the close`);
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });

  it('while open, one job comes back when the breaker probes; the others wait for it to admit again', async () => {
    const h = new Harness(server);
    try {
      // Opened by a failure (not an operator): it probes after openMs, 2 s.
      const breaker = factory({ openMs: 2_000, trip: consecutiveFailures(1) }).breakerFor('sync', {
        tenantId: 'acme',
      });
      await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
      let calls = 0;
      h.withBreaker(
        {
          breaker,
          process: async () => {
            calls += 1;
            return 'done';
          },
          jitter: 0,
        },
        { concurrency: 1 },
      );
      await h.queue.addBulk([0, 1, 2, 3].map(() => ({ name: 'sync', data: { tenantId: 'acme' } })));
      await until(() => h.deferred.length === 4, 'four deferrals');
      const delays = h.delays;
      // The first keeps the breaker's retry-after (at most the open period): it brings the probe.
      assert.ok(delays[0]! <= 2_000, JSON.stringify(delays));
      // The others are brought back by the close: their delay, four times theirs, only bounds it.
      for (const ms of delays.slice(1)) assert.ok(ms > 4_000, JSON.stringify(delays));
      // The first comes back, probes, closes the breaker, and the others come back with it.
      await until(() => h.completed.length === 4, 'the four jobs to complete', 5_000);
      assert.equal(calls, 4);
      assert.equal(h.deferred.length, 4, 'none was deferred twice');
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });

  it('a close another process made (a push) brings them back too, spread over the recovery ramp', async () => {
    const h = new Harness(server);
    const prefix = `back-${randomUUID()}:`;
    const storeClient = server.client();
    const operatorClient = server.client();
    const workers = factory({
      store: new RedisStore({ client: storeClient, prefix }),
      openMs: 8_000,
      // Long enough that a push heard late (a busy machine) leaves most of it to spread over.
      recovery: { rampMs: 3_000 },
    });
    const operator = factory({ store: new RedisStore({ client: operatorClient, prefix }), openMs: 8_000 });
    try {
      const breaker = workers.breakerFor('sync', { tenantId: 'acme' });
      await operator.breakerFor('sync', { tenantId: 'acme' }).force('forced-open');
      // The worker's breaker learns it on its first call.
      const ran: number[] = [];
      h.withBreaker(
        {
          breaker,
          process: async () => {
            ran.push(Date.now());
            return 'done';
          },
          jitter: 0,
        },
        { concurrency: 4 },
      );
      await h.queue.addBulk([0, 1, 2, 3].map(() => ({ name: 'sync', data: { tenantId: 'acme' } })));
      await until(() => h.deferred.length === 4, 'four deferrals');
      const closedAt = Date.now();
      // An operator's reset, from a process of its own: the workers' breaker hears it by a push.
      await operator.breakerFor('sync', { tenantId: 'acme' }).force(null);
      await until(() => h.completed.length === 4, 'the four jobs to complete', 7_000);
      const spread = ran.map((t) => t - closedAt).sort((a, b) => a - b);
      // Well before the 8 s they were deferred for: within the ramp, and the push's delay.
      assert.ok(spread.at(-1)! < 5_000, `ran ${JSON.stringify(spread)} ms after the close`);
      // Not all at once: the ramp spreads them (and admits a growing share meanwhile).
      assert.ok(spread.at(-1)! - spread[0]! >= 300, `ran ${JSON.stringify(spread)} ms after the close`);
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
      await workers.close();
      await operator.close();
      storeClient.disconnect();
      operatorClient.disconnect();
    }
  });

  it('defers only the rejections `defer` selects; the others fail the attempt', async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(1_000);
      h.withBreaker({ breaker, process: async () => 'never', defer: ['open', 'half-open-full'] });
      await h.queue.add('sync', { tenantId: 'acme' });
      const { error, job } = await until(() => h.failed[0], 'the job to fail');
      assert.ok(isCircuitOpenError(error));
      assert.equal(error.reason, 'forced-open');
      assert.equal(job?.attemptsMade, 1);
      assert.equal(h.deferred.length, 0);
    } finally {
      await h.close();
    }
  });

  it("passes the work's own errors to BullMQ untouched, so attempts and backoff apply", async () => {
    const h = new Harness(server);
    try {
      const breaker = factory().breakerFor('sync', { tenantId: 'acme' });
      const thrown: Error[] = [];
      h.worker(
        withBreaker<Data>({
          breaker,
          process: async () => {
            const error = new Error('downstream said no');
            thrown.push(error);
            throw error;
          },
        }),
      );
      await h.queue.add('sync', { tenantId: 'acme' }, { attempts: 2, backoff: { type: 'fixed', delay: 50 } });
      await until(() => h.failed[1], 'both attempts to fail');
      assert.equal(h.failed[0]!.error, thrown[0]);
      assert.equal(h.failed[1]!.error, thrown[1]);
      assert.equal(h.failed[1]!.job?.attemptsMade, 2);
      assert.equal((await breaker.state()).counts.failures, 2);
    } finally {
      await h.close();
    }
  });

  it("aborts the work's signal on the breaker's timeoutMs", async () => {
    const h = new Harness(server);
    try {
      const breaker = factory({ timeoutMs: 100 }).breakerFor('sync', { tenantId: 'acme' });
      h.worker(
        withBreaker<Data>({
          breaker,
          process: (_job, signal) =>
            new Promise((_resolve, reject) =>
              signal.addEventListener('abort', () => reject(signal.reason as Error)),
            ),
        }),
      );
      await h.queue.add('sync', { tenantId: 'acme' });
      const { error } = await until(() => h.failed[0], 'the job to time out');
      assert.ok(isCallTimeoutError(error), String(error));
    } finally {
      await h.close();
    }
  });

  it('puts a job interrupted by worker.close() back in the queue without consuming an attempt', async () => {
    const h = new Harness(server);
    try {
      const breaker = factory().breakerFor('sync', { tenantId: 'acme' });
      let started = 0;
      const reasons: unknown[] = [];
      const processor = withBreaker<Data>({
        breaker,
        process: (job, signal) =>
          new Promise((resolve, reject) => {
            started += 1;
            // The first run waits for its signal; the second finishes.
            if (started > 1) return resolve(`done by run ${started}`);
            signal.addEventListener('abort', () => {
              reasons.push(signal.reason);
              reject(signal.reason as Error);
            });
          }),
      });
      const first = h.worker(processor);
      const added = await h.queue.add('sync', { tenantId: 'acme' });
      await until(() => started === 1, 'the first run to start');
      const closedAt = Date.now();
      await first.close();
      assert.ok(Date.now() - closedAt < 5_000, 'close does not wait for the work');
      assert.equal(reasons.length, 1);
      assert.match(String(reasons[0]), /closing/);
      const back = (await h.queue.getJob(added.id!))!;
      assert.ok(['delayed', 'waiting'].includes(await back.getState()), await back.getState());
      assert.equal(back.attemptsMade, 0);

      h.worker(processor);
      await until(() => h.completed[0], 'another worker to complete the job');
      const done = (await h.queue.getJob(added.id!))!;
      assert.equal(done.returnvalue, 'done by run 2');
      assert.equal(done.attemptsMade, 1, 'the interrupted run consumed no attempt');
      assert.equal(done.attemptsStarted, 2);
      assert.deepEqual(h.failed, []);
      // A shutdown says nothing about the dependency: the interrupted call counted as neither.
      const counts = (await breaker.state()).counts;
      assert.equal(counts.failures, 0);
    } finally {
      await h.close();
    }
  });

  it('with abortOnClose: false, close() lets the work finish', async () => {
    const h = new Harness(server);
    try {
      const breaker = factory().breakerFor('sync', { tenantId: 'acme' });
      let aborted = false;
      let started = false;
      let release = (): void => {};
      const worker = h.worker(
        withBreaker<Data>({
          breaker,
          abortOnClose: false,
          process: (_job, signal) =>
            new Promise((resolve) => {
              signal.addEventListener('abort', () => (aborted = true));
              release = () => resolve('finished');
              started = true;
            }),
        }),
      );
      await h.queue.add('sync', { tenantId: 'acme' });
      await until(() => started, 'the run to start');
      const closing = worker.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      await closing;
      assert.equal(aborted, false);
      assert.equal(h.completed[0]?.returnvalue, 'finished');
    } finally {
      await h.close();
    }
  });

  it('rateLimitQueue: rate-limits the queue for the delay and puts the job back to wait', async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(600);
      // BullMQ checks a manual rate limit only for workers with a `limiter`.
      h.withBreaker(
        { breaker, process: async () => 'synced', rateLimitQueue: true, jitter: 0 },
        { limiter: { max: 1_000, duration: 1_000 } },
      );
      const added = await h.queue.add('sync', { tenantId: 'acme' });
      await until(() => h.deferred[0], 'the queue to be rate-limited');
      assert.equal(h.deferred[0]!.delayMs, 600);
      const ttl = await h.queue.getRateLimitTtl();
      assert.ok(ttl > 300 && ttl <= 600, `rate limit ttl ${ttl}`);
      const job = (await h.queue.getJob(added.id!))!;
      assert.equal(await job.getState(), 'waiting');
      assert.equal(job.attemptsMade, 0);

      await breaker.force(null);
      await until(() => h.completed[0], 'the job to complete after the rate limit');
      const done = (await h.queue.getJob(added.id!))!;
      assert.equal(done.attemptsMade, 1, 'the rate-limited start consumed no attempt');
      assert.equal(done.attemptsStarted, h.deferred.length + 1);
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });

  it("reports an error thrown by onDeferred as the worker's 'error' event; the job stays deferred", async () => {
    const h = new Harness(server);
    try {
      const breaker = await forcedOpen(5_000);
      h.worker(
        withBreaker<Data>({
          breaker,
          process: async () => 'never',
          onDeferred: () => {
            throw new Error('hook failed');
          },
        }),
      );
      const added = await h.queue.add('sync', { tenantId: 'acme' });
      const error = await until(() => h.errors[0], "the worker's error event");
      assert.equal(error.message, 'hook failed');
      const job = (await h.queue.getJob(added.id!))!;
      assert.equal(await job.getState(), 'delayed');
      assert.deepEqual(h.failed, []);
    } finally {
      await h.close();
    }
  });
});
