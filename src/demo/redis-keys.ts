/**
 * The demo's cleanup: every key a demo run wrote to the user's Redis (breakers under
 * `circuitry-demo:<pid>:<time>:`, or BullMQ's queues and breakers under
 * `circuitry-demo-bullmq:<pid>:<time>:`) is removed when it ends, also on Ctrl-C.
 */
import { Redis } from 'ioredis';

/** Removes every key under `prefix` (SCAN, then UNLINK); how many. */
export async function removeKeys(redisUrl: string, prefix: string): Promise<number> {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 3_000 });
  client.on('error', () => undefined);
  // Glob characters in the prefix are matched literally.
  const pattern = `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) removed += await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return removed;
}
