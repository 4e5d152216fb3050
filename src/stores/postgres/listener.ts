import type { Client, ClientConfig, Pool } from 'pg';

import { quoteIdent } from './names.js';

export interface ListenOptions {
  readonly pool: Pool;
  /** Returns one row with `channel`: the table's `<table>_channel()`. */
  readonly channelSql: string;
  readonly connectTimeoutMs: number;
  readonly onPayload: (payload: string) => void;
  readonly onResync?: () => void;
  readonly signal?: AbortSignal;
}

type ClientClass = new (config: ClientConfig) => Client;

/** Ends a client now: `end()` alone waits for a server that may never answer. */
function destroy(client: Client): void {
  client.end().catch(() => undefined);
  (
    client as unknown as { connection?: { stream?: { destroy?: () => void } } }
  ).connection?.stream?.destroy?.();
}

/**
 * LISTEN on a connection of its own, made again with backoff whenever it fails or drops. Resolves
 * once listening, or once the first attempt failed or took longer than `connectTimeoutMs`; the
 * returned function ends it at once. See PostgresStore.subscribe.
 */
export async function listen(options: ListenOptions): Promise<() => Promise<void>> {
  const pool = options.pool as Pool & { Client?: ClientClass; options?: ClientConfig };
  // The class the pool itself uses (pg's Client, or a custom one the user gave the pool).
  const Client = pool.Client ?? (await import('pg')).default.Client;
  let closed = false;
  let current: Client | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;
  let listened = false;

  const resync = (): void => {
    if (!closed) options.onResync?.();
  };

  const retry = (): void => {
    if (closed) return;
    failures += 1;
    timer = setTimeout(() => void attempt(), Math.min(30_000, 100 * 2 ** Math.min(failures, 9)));
    timer.unref();
  };

  const attempt = async (): Promise<boolean> => {
    const client = new Client({
      ...pool.options,
      keepAlive: true,
      connectionTimeoutMillis: options.connectTimeoutMs,
    });
    current = client;
    let dropped = false;
    const drop = (): void => {
      if (dropped) return;
      dropped = true;
      if (current === client) current = null;
      destroy(client);
      retry();
    };
    client.on('error', drop);
    client.on('end', drop);
    try {
      await client.connect();
      const { rows } = await client.query<{ channel: string }>(options.channelSql);
      const channel = rows[0]?.channel;
      if (typeof channel !== 'string') throw new Error('no channel');
      client.on('notification', (message) => {
        if (message.channel === channel && message.payload !== undefined) options.onPayload(message.payload);
      });
      await client.query(`LISTEN ${quoteIdent(channel)}`);
    } catch {
      drop();
      return false;
    }
    if (closed) return false;
    // Back after a drop or a failed attempt: whatever was sent meanwhile was missed.
    if (listened || failures > 0) resync();
    listened = true;
    failures = 0;
    return true;
  };

  // Closing settles a first attempt still connecting (pg's connect() may wait for its own timeout).
  let wake = (): void => undefined;
  const woken = new Promise<void>((resolve) => (wake = resolve));
  const close = (): Promise<void> => {
    if (closed) return Promise.resolve();
    closed = true;
    wake();
    clearTimeout(timer);
    if (current !== null) destroy(current);
    current = null;
    return Promise.resolve();
  };
  options.signal?.addEventListener('abort', () => void close(), { once: true });
  if (options.signal?.aborted === true) return close;

  let bound: ReturnType<typeof setTimeout> | undefined;
  let settled = false;
  const first = attempt().then((ok) => {
    settled = true;
    return ok;
  });
  await Promise.race([
    first,
    woken,
    new Promise<void>((resolve) => {
      bound = setTimeout(resolve, options.connectTimeoutMs);
      bound.unref();
    }),
  ]);
  clearTimeout(bound);
  // Got through only after the bound: whatever was sent before it was missed.
  if (!settled && !closed) void first.then((ok) => ok && resync());
  return close;
}
