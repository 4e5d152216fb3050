// One soak worker: callers loop on one breaker until told to finish, then make sure what the
// outages kept reaches Redis, and report what they executed.
import { Redis } from 'ioredis';

import { BreakerFactory, failureRate, isCircuitOpenError } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

const [url, prefix, callers] = process.argv.slice(2) as [string, string, string];
const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
client.on('error', () => undefined);
const redisStore = new RedisStore({ client, prefix });
const debug = { stale: 0, staleOutcomes: 0, recordRejected: 0 };
const store = process.env.SOAK_DEBUG
  ? {
      acquire: redisStore.acquire.bind(redisStore),
      inspect: redisStore.inspect.bind(redisStore),
      force: redisStore.force.bind(redisStore),
      list: redisStore.list.bind(redisStore),
      subscribe: redisStore.subscribe.bind(redisStore),
      record: async (...args: Parameters<RedisStore['record']>) => {
        try {
          const r = await redisStore.record(...args);
          if (r.stale) {
            debug.stale += 1;
            debug.staleOutcomes += args[2].successes + args[2].failures;
          }
          return r;
        } catch (e) {
          debug.recordRejected += 1;
          throw e;
        }
      },
    }
  : redisStore;
const factory = new BreakerFactory({
  store,
  storeTimeoutMs: 100,
  // Never trips: a failure rate counts every outcome (a count policy would skip successes with
  // nothing to reset), and a billion calls are needed first. None may be lost or rejected.
  trip: failureRate(1, { minimumCalls: 1_000_000_000, windowMs: 3_600_000 }),
});
const breaker = factory.breakerFor('soak');
const tally = { value: 0, boom: 0, rejected: 0, wrong: 0, busyAtEnd: false };
const storeErrors: Record<string, number> = {};
breaker.onStoreError((e) => {
  const key = `${e.operation}: ${String((e.error as Error).message).slice(0, 50)}`;
  storeErrors[key] = (storeErrors[key] ?? 0) + 1;
});
let running = true;
const boom = new Error('boom');

async function caller(): Promise<void> {
  while (running) {
    const fails = Math.random() < 0.1;
    try {
      await breaker.execute(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1 + Math.random() * 3));
        if (fails) throw boom;
        return 1;
      });
      if (fails) tally.wrong += 1;
      else tally.value += 1;
    } catch (error) {
      if (error === boom) tally.boom += 1;
      else if (isCircuitOpenError(error)) tally.rejected += 1;
      else tally.wrong += 1;
    }
  }
}

// First contact (an admission the store answered) before the callers start: the parent waits for
// every worker's before killing Redis. The call counts like any other.
await breaker.execute(() => Promise.resolve(1));
tally.value += 1;
process.send!({ ready: true });
const loops = Array.from({ length: Number(callers) }, () => caller());
process.on('message', (message: { cmd: string }) => {
  if (message.cmd !== 'finish') return;
  running = false;
  void (async () => {
    await Promise.all(loops);
    // Until the store answers again, keep flushing what the outages kept.
    for (let i = 0; i < 100 && (await breaker.state().then((s) => s.now === 0 || !ready())); i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    for (let i = 0; i < 20; i++) {
      await breaker.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const report = await factory.close();
    // What close() could not write: held outcomes are lost outcomes.
    tally.busyAtEnd = !report.complete || report.unwritten.length > 0;
    if (process.env.SOAK_DEBUG) console.error(JSON.stringify({ storeErrors, debug }));
    process.send!({ tally });
    client.disconnect();
  })();
});

function ready(): boolean {
  return client.status === 'ready';
}
