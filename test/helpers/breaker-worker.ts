// A worker process for the multi-process tests: one BreakerFactory on a shared store (Redis,
// DynamoDB or Postgres), driven by the parent over IPC. Reports every state change its own store operations
// made.
import type { RedisOptions } from 'ioredis';

import { BreakerFactory, consecutiveFailures, failureRate, isCircuitOpenError } from '../../src/index.js';
import { openStore } from './store-spec.js';
import type { StoreSpec } from './store-spec.js';

interface Run {
  readonly cmd: 'run';
  readonly name: string;
  readonly callers: number;
  readonly callsPerCaller: number;
  /** Which calls fail: every nth (0: none), or every call ('all'). */
  readonly failEvery: number | 'all';
  readonly fnDelayMs: number;
  /** Each call GETs this URL (after `fnDelayMs`), and fails if the answer is not 200. */
  readonly url?: string;
  /** Each call runs until the process dies: it holds whatever it took (a concurrency slot). No result is sent. */
  readonly hold?: boolean;
}

const [spec, options] = process.argv.slice(2).map((arg) => JSON.parse(arg) as unknown) as [StoreSpec, object];
const settings = options as {
  threshold: number;
  /**
   * 'count-all': a failure rate that needs `threshold` calls before it can trip, so every outcome
   * is written (a count policy skips successes with no run of failures to reset). Default: the
   * threshold as consecutive failures.
   */
  trip?: 'count-all';
  openMs: number;
  halfOpenMaxCalls: number;
  maxStalenessMs?: number;
  flushIntervalMs?: number;
  /** Build the client and the factory only when the first run arrives: a cold start, no warm-up. */
  cold?: boolean;
  /** Leave storeTimeoutMs and connectTimeoutMs at their defaults (else a generous 5 s). */
  defaultTimeouts?: boolean;
  /** ioredis options for the worker's own client. */
  redisOptions?: RedisOptions;
  maxConcurrent?: number;
  concurrencyLeaseMs?: number;
  timeoutMs?: number;
  queueMs?: number;
};

interface Setup {
  readonly factory: BreakerFactory;
  readonly disconnect: () => void;
}

function setUp(): Setup {
  const { store, disconnect } = openStore(spec, settings.redisOptions ?? {});
  const factory = new BreakerFactory({
    store,
    ...(settings.defaultTimeouts === true ? {} : { storeTimeoutMs: 5_000 }),
    jitter: 0,
    trip:
      settings.trip === 'count-all'
        ? failureRate(1, { minimumCalls: settings.threshold, windowMs: 600_000 })
        : consecutiveFailures(settings.threshold),
    openMs: settings.openMs,
    halfOpenMaxCalls: settings.halfOpenMaxCalls,
    maxStalenessMs: settings.maxStalenessMs ?? 0,
    flushIntervalMs: settings.flushIntervalMs ?? 0,
    ...(settings.maxConcurrent === undefined ? {} : { maxConcurrent: settings.maxConcurrent }),
    ...(settings.timeoutMs === undefined ? {} : { timeoutMs: settings.timeoutMs }),
    ...(settings.concurrencyLeaseMs === undefined ? {} : { concurrencyLeaseMs: settings.concurrencyLeaseMs }),
    ...(settings.queueMs === undefined ? {} : { queueMs: settings.queueMs }),
    onStateChange: (name, _context, from, to) => process.send!({ transition: { name, from, to } }),
  });
  return { factory, disconnect };
}

let setup: Setup | null = settings.cold === true ? null : setUp();

process.on('message', (message: Run | { cmd: 'exit' }) => {
  if (message.cmd === 'exit') {
    const done = setup;
    if (done === null) process.exit(0);
    void done.factory.close().then((report) => {
      process.send!({ closed: report }, () => {
        done.disconnect();
        process.exit(0);
      });
    });
    return;
  }
  setup ??= setUp();
  const running = run(setup.factory, message);
  if (message.hold !== true) void running.then((result) => process.send!({ result }));
});

async function run(factory: BreakerFactory, r: Run) {
  const breaker = factory.breakerFor(r.name);
  let fnCalls = 0;
  const tally = { value: 0, boom: 0, rejected: 0, other: 0, reasons: {} as Record<string, number> };
  let n = 0;
  await Promise.all(
    Array.from({ length: r.callers }, async () => {
      for (let i = 0; i < r.callsPerCaller; i++) {
        const fail = r.failEvery === 'all' || (r.failEvery > 0 && ++n % r.failEvery === 0);
        try {
          await breaker.execute(async () => {
            fnCalls += 1;
            if (r.hold === true) await new Promise(() => undefined);
            if (r.fnDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, r.fnDelayMs));
            if (r.url !== undefined) {
              const response = await fetch(r.url);
              await response.text();
              if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
            }
            if (fail) throw new Error('boom');
            return 1;
          });
          tally.value += 1;
        } catch (error) {
          if (isCircuitOpenError(error)) {
            tally.rejected += 1;
            tally.reasons[error.reason] = (tally.reasons[error.reason] ?? 0) + 1;
          } else if ((error as Error).message === 'boom') tally.boom += 1;
          else tally.other += 1;
        }
      }
    }),
  );
  // What the calls wrote without their callers waiting (a success, a slot given back) has landed
  // before the parent hears the run is over and reads the store.
  await breaker.flush();
  return { fnCalls, ...tally };
}

process.send!({ ready: true });
