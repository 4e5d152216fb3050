// A worker process for the multi-process tests: one BreakerFactory on a RedisStore, driven by
// the parent over IPC. Reports every state change its own store operations made.
import { Redis } from 'ioredis';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

interface Run {
  readonly cmd: 'run';
  readonly name: string;
  readonly callers: number;
  readonly callsPerCaller: number;
  /** Which calls fail: every nth (0: none), or every call ('all'). */
  readonly failEvery: number | 'all';
  readonly fnDelayMs: number;
}

const [url, prefix, options] = process.argv.slice(2) as [string, string, string];
const client = new Redis(url);
const settings = JSON.parse(options) as {
  threshold: number;
  openMs: number;
  halfOpenMaxCalls: number;
  maxStalenessMs?: number;
  flushIntervalMs?: number;
};
const factory = new BreakerFactory({
  store: new RedisStore({ client, prefix }),
  storeTimeoutMs: 5_000,
  jitter: 0,
  trip: consecutiveFailures(settings.threshold),
  openMs: settings.openMs,
  halfOpenMaxCalls: settings.halfOpenMaxCalls,
  maxStalenessMs: settings.maxStalenessMs ?? 0,
  flushIntervalMs: settings.flushIntervalMs ?? 0,
  onStateChange: (name, _context, from, to) => process.send!({ transition: { name, from, to } }),
});

process.on('message', (message: Run | { cmd: 'exit' }) => {
  if (message.cmd === 'exit') {
    void factory.close().finally(() => {
      client.disconnect();
      process.exit(0);
    });
    return;
  }
  void run(message).then((result) => process.send!({ result }));
});

async function run(r: Run) {
  const breaker = factory.breakerFor(r.name);
  let fnCalls = 0;
  const tally = { value: 0, boom: 0, rejected: 0, other: 0 };
  let n = 0;
  await Promise.all(
    Array.from({ length: r.callers }, async () => {
      for (let i = 0; i < r.callsPerCaller; i++) {
        const fail = r.failEvery === 'all' || (r.failEvery > 0 && ++n % r.failEvery === 0);
        try {
          await breaker.execute(async () => {
            fnCalls += 1;
            if (r.fnDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, r.fnDelayMs));
            if (fail) throw new Error('boom');
            return 1;
          });
          tally.value += 1;
        } catch (error) {
          if (isCircuitOpenError(error)) tally.rejected += 1;
          else if ((error as Error).message === 'boom') tally.boom += 1;
          else tally.other += 1;
        }
      }
    }),
  );
  return { fnCalls, ...tally };
}

process.send!({ ready: true });
