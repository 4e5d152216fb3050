/**
 * The demo's check of the Redis its workers share, made before anything runs: an unreachable
 * `--redis` ends the demo within seconds with one line (exit 1), not with a worker's
 * "Connection is closed." after the processes started.
 */
import { DemoError } from './demo-error.js';

const CONNECT_TIMEOUT_MS = 3_000;

/** Connects to `url`, PINGs and disconnects; a `DemoError` (exit 1) naming the cause otherwise. */
export async function checkRedis(url: string): Promise<void> {
  const shown = maskPassword(url);
  let Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch {
    throw new DemoError(1, '--redis needs the ioredis package (npm install ioredis)');
  }
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // ioredis reports why (ECONNREFUSED, ENOTFOUND, ...) in 'error'; the promise only says the
  // connection closed.
  let cause: Error | undefined;
  client.on('error', (error: Error) => (cause ??= error));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)),
          CONNECT_TIMEOUT_MS + 500,
        );
      }),
    ]);
  } catch (error) {
    throw new DemoError(1, `cannot reach Redis at ${shown}: ${(cause ?? (error as Error)).message}`);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

export function maskPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
