import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A real HTTP server on a free local port that answers `/status/<code>` with that status (and,
 * with `?retryAfter=<value>`, that `Retry-After`), never answers `/hang`, and counts requests,
 * connections and closed connections, so tests observe what reached the wire.
 */
export interface TestServer {
  readonly origin: string;
  /** Requests that reached the server. */
  requests: number;
  /** TCP connections accepted. */
  connections: number;
  /** Connections closed (by either side). */
  closed: number;
  /** Requests that arrived with each `x-tenant` header. */
  readonly byTenant: Map<string, number>;
  /** Resolves when a `/hang` request's connection closes. */
  hangClosed(): Promise<void>;
  close(): Promise<void>;
}

export async function startServer(
  handler?: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const hangWaiters: Array<() => void> = [];
  const server = createServer((req, res) => {
    state.requests += 1;
    const tenant = req.headers['x-tenant'];
    if (typeof tenant === 'string') state.byTenant.set(tenant, (state.byTenant.get(tenant) ?? 0) + 1);
    if (handler?.(req, res) === true) return;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/hang') {
      req.socket.once('close', () => hangWaiters.splice(0).forEach((wake) => wake()));
      return;
    }
    const match = /^\/status\/(\d{3})$/.exec(url.pathname);
    const status = match === null ? 200 : Number(match[1]);
    const headers: Record<string, string> = { 'content-type': 'text/plain' };
    const retryAfter = url.searchParams.get('retryAfter');
    if (retryAfter !== null) headers['retry-after'] = retryAfter;
    res.writeHead(status, headers);
    res.end(status === 204 || status === 304 ? undefined : `status ${status}`);
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: Socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.once('close', () => {
      state.closed += 1;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const state: TestServer = {
    origin: `http://127.0.0.1:${port}`,
    requests: 0,
    connections: 0,
    closed: 0,
    byTenant: new Map(),
    hangClosed: () => new Promise<void>((resolve) => hangWaiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return state;
}

/** Rejects after `ms` unless `promise` settles first: bounds a wait a broken build would make endless. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

/** The statuses of the classification table, and how each counts by default. */
export const STATUS_TABLE: ReadonlyArray<readonly [number, 'failure' | 'success']> = [
  [200, 'success'],
  [201, 'success'],
  [204, 'success'],
  [301, 'success'],
  [400, 'success'],
  [401, 'success'],
  [404, 'success'],
  [409, 'success'],
  [408, 'failure'],
  [429, 'failure'],
  [500, 'failure'],
  [501, 'success'],
  [502, 'failure'],
  [503, 'failure'],
  [504, 'failure'],
];
