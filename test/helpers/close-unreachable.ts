// A worker whose Redis is unreachable: it makes calls (the fallback serves them), then closes the
// factory and its own client, prints what close() reported and how long it took, and must then
// exit by itself: nothing of the package may keep the event loop alive.
import { Redis } from 'ioredis';

import { BreakerFactory } from '../../src/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';

const [port, retries] = process.argv.slice(2) as [string, 'default' | 'null'];
const client = new Redis({
  port: Number(port),
  host: '127.0.0.1',
  ...(retries === 'null' ? { maxRetriesPerRequest: null } : {}),
});
client.on('error', () => undefined);
const factory = new BreakerFactory({ store: new RedisStore({ client }), connectTimeoutMs: 300 });
const breaker = factory.breakerFor('dep');
let values = 0;
for (let i = 0; i < 20; i++) values += await breaker.execute(() => Promise.resolve(1));
const started = performance.now();
const report = await factory.close({ timeoutMs: 1_000 });
const closeMs = performance.now() - started;
client.disconnect();
process.stdout.write(`${JSON.stringify({ values, closeMs, report })}\n`);
