// A worker process for the fleet Retry-After test: its own RedisStore factory and breakerFetch,
// calling one URL in a loop when asked and reporting what each call got, with the time.
import { Redis } from 'ioredis';

import { BreakerFactory, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { breakerFetch } from '../../src/fetch/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

/** A call: when it began, what it got, the rejection's retryAfterMs, and when it ended. */
export type Attempt = readonly [
  at: number,
  got: number | 'rejected' | 'error',
  retryAfterMs: number,
  end: number,
];

const [redisUrl, prefix, origin] = process.argv.slice(2) as [string, string, string];
const client = new Redis(redisUrl);
const factory = new BreakerFactory({
  store: new RedisStore({ client, prefix }),
  trip: consecutiveFailures(1_000),
  halfOpenMaxCalls: 4,
  successThreshold: 1,
  jitter: 0,
});
const fetch = breakerFetch(factory);

async function attempt(path: string): Promise<Attempt> {
  const at = Date.now();
  try {
    // The server reads when the call began: a call admitted before the open reached this
    // process may arrive late on a loaded machine, which says nothing about the breaker.
    const response = await fetch(`${origin}${path}?at=${at}`);
    await response.text();
    return [at, response.status, 0, Date.now()];
  } catch (error) {
    return isCircuitOpenError(error)
      ? [at, 'rejected', error.retryAfterMs, Date.now()]
      : [at, 'error', 0, Date.now()];
  }
}

process.on('message', (message: { cmd: 'run'; until: number; intervalMs: number } | { cmd: 'stop' }) => {
  void (async () => {
    if (message.cmd === 'stop') {
      await factory.close({ timeoutMs: 2_000 });
      client.disconnect();
      process.exit(0);
    }
    const attempts: Attempt[] = [];
    while (Date.now() < message.until) {
      attempts.push(await attempt('/api'));
      await new Promise((resolve) => setTimeout(resolve, message.intervalMs));
    }
    process.send!({ attempts });
  })();
});

// Warm up: a connection to the server, the store's scripts and its push subscription.
void attempt('/warm-up').then(() => process.send!({ ready: true }));
