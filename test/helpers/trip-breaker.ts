// Another process tripping a breaker, as an application would: `trip-breaker.ts URL PREFIX NAME`.
import { Redis } from 'ioredis';

import { RedisStore } from '../../src/stores/redis/index.js';
import { trip } from './cli.js';

const [url, prefix, name] = process.argv.slice(2) as [string, string, string];
const client = new Redis(url);
try {
  await trip(new RedisStore({ client, prefix }), name);
  process.stdout.write('tripped\n');
} finally {
  client.disconnect();
}
