/**
 * The dashboard's HTTP server (`node:http`, nothing else): the page, a Server-Sent Events stream
 * of the fleet view, and the override actions, which need the token (compared in constant time).
 * Requests whose Host is not this server's are refused, so a web page elsewhere cannot reach a
 * dashboard on localhost by DNS rebinding.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { ActionResult } from '../commands.js';
import { applyOverride, resetBreaker } from '../commands.js';
import type { StoreConnection } from '../store-connection.js';
import { CliError } from '../usage.js';
import type { FleetView, ViewEvent } from './fleet-view.js';
import { renderPage } from './page.js';

/** The actions the page offers, and the override each sets (reset: see `resetBreaker`). */
const ACTIONS: Record<string, 'forced-open' | 'forced-closed' | 'metrics-only' | null | 'reset'> = {
  open: 'forced-open',
  close: 'forced-closed',
  disable: 'forced-closed',
  'metrics-only': 'metrics-only',
  clear: null,
  reset: 'reset',
};

export interface DashboardServerOptions {
  readonly connection: StoreConnection;
  readonly view: FleetView;
  readonly host: string;
  readonly port: number;
  /** The control token; a new random one when not given. */
  readonly token?: string;
}

export interface DashboardServer {
  readonly url: string;
  readonly token: string;
  close(): Promise<void>;
}

export function newToken(): string {
  return randomBytes(18).toString('base64url');
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Constant time whatever the lengths: the digests are compared, never the strings. */
export function tokenMatches(given: string, token: string): boolean {
  return timingSafeEqual(digest(given), digest(token));
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  const { connection, view } = options;
  const token = options.token ?? newToken();
  const streams = new Set<ServerResponse>();
  let hostsAllowed: Set<string> | null = null;

  const send = (res: ServerResponse, event: string, data: unknown): void => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const unsubscribe = view.subscribe((event: ViewEvent) => {
    for (const res of streams) send(res, event.type, event);
  });
  const heartbeat = setInterval(() => {
    for (const res of streams) res.write(': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();

  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    send(res, 'snapshot', {
      rows: [...view.rows.values()],
      timeline: view.timeline,
      store: connection.description,
      pushed: view.pushed,
      health: view.health,
    });
    streams.add(res);
    req.on('close', () => streams.delete(res));
  };

  const act = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const header = req.headers.authorization;
    const given = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : null;
    if (given === null) {
      json(res, 401, { error: 'a token is needed: the one the dashboard printed when it started' });
      return;
    }
    if (!tokenMatches(given, token)) {
      json(res, 403, { error: 'wrong token' });
      return;
    }
    let body: { name?: unknown; action?: unknown };
    try {
      body = JSON.parse(await readBody(req)) as typeof body;
    } catch {
      json(res, 400, { error: 'expected a JSON body { name, action }' });
      return;
    }
    const { name, action } = body;
    if (typeof name !== 'string' || name === '' || typeof action !== 'string' || !(action in ACTIONS)) {
      json(res, 400, {
        error: `expected { name, action } with action one of ${Object.keys(ACTIONS).join(', ')}`,
      });
      return;
    }
    const override = ACTIONS[action]!;
    let result: ActionResult;
    try {
      result =
        override === 'reset'
          ? await resetBreaker(connection, name)
          : await applyOverride(connection, name, action, override);
    } catch (error) {
      const notFound = error instanceof CliError;
      json(res, notFound ? 404 : 503, { error: (error as Error).message });
      return;
    }
    await view.refreshOne(name);
    json(res, 200, result);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (hostsAllowed !== null && !hostsAllowed.has((req.headers.host ?? '').toLowerCase())) {
      json(res, 421, { error: 'unexpected Host header' });
      return;
    }
    const path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    if (req.method === 'GET' && path === '/') {
      const nonce = randomBytes(16).toString('base64');
      const page = renderPage({ nonce, store: connection.description });
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(page);
    } else if (req.method === 'GET' && path === '/events') {
      stream(req, res);
    } else if (req.method === 'GET' && path === '/api/breakers') {
      json(res, 200, [...view.rows.values()]);
    } else if (req.method === 'POST' && path === '/api/action') {
      await act(req, res);
    } else {
      json(res, 404, { error: 'not found' });
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { error: (error as Error).message });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  if (LOOPBACK.has(options.host)) {
    hostsAllowed = new Set(
      ['127.0.0.1', 'localhost', '[::1]', shownHost].map((h) => `${h.toLowerCase()}:${port}`),
    );
  }
  return {
    url: `http://${shownHost}:${port}/`,
    token,
    close: async () => {
      clearInterval(heartbeat);
      unsubscribe();
      for (const res of streams) res.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
