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

/**
 * The actions the page offers, and the override each sets (reset: see `resetBreaker`). A Map, not
 * an object: a name like `hasOwnProperty` or `constructor` must not be found on a prototype.
 */
const ACTIONS: ReadonlyMap<string, 'forced-open' | 'forced-closed' | 'metrics-only' | null | 'reset'> =
  new Map([
    ['open', 'forced-open'],
    ['close', 'forced-closed'],
    ['disable', 'forced-closed'],
    ['metrics-only', 'metrics-only'],
    ['clear', null],
    ['reset', 'reset'],
  ]);

/** Largest request body read (an action is a name and a word); a larger one is refused unread. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Longest breaker name an action accepts. */
const MAX_NAME_LENGTH = 2_048;

/** A request the server refuses with a 4xx status and a message; never a reason to fail. */
class RequestError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 413 | 415 | 421,
    message: string,
  ) {
    super(message);
  }
}

export interface DashboardServerOptions {
  readonly connection: StoreConnection;
  readonly view: FleetView;
  readonly host: string;
  readonly port: number;
  /** The control token; a new random one when not given. */
  readonly token?: string;
  /** Event streams (`/events`, one per open page) served at once; more are answered 503. @defaultValue 100 */
  readonly maxEventClients?: number;
  /**
   * Bytes an event stream may leave unsent (the reader is slower than the fleet changes) beyond
   * what its first snapshot left unsent; a stream past it is dropped, so a page that stopped
   * reading cannot grow this process's memory. @defaultValue 1 MiB
   */
  readonly maxUnsentBytes?: number;
}

export interface DashboardServer {
  readonly url: string;
  readonly token: string;
  /** Event streams open now. */
  readonly eventClients: number;
  close(): Promise<void>;
}

export const DEFAULT_MAX_EVENT_CLIENTS = 100;
const DEFAULT_MAX_UNSENT_BYTES = 1024 * 1024;

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

async function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new RequestError(413, `request body too large: at most ${limit} bytes, declared ${declared}`);
  }
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new RequestError(413, `request body too large: at most ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `{ name, action }` from a request body, or a 400 that says what was wrong. */
function parseAction(text: string): { name: string; action: string } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new RequestError(400, 'expected a JSON body { name, action }, got text that is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RequestError(
      400,
      `expected a JSON object { name, action }, got ${Array.isArray(body) ? 'an array' : String(body)}`,
    );
  }
  const { name, action } = body as { name?: unknown; action?: unknown };
  if (typeof action !== 'string' || !ACTIONS.has(action)) {
    throw new RequestError(
      400,
      `expected action to be one of ${[...ACTIONS.keys()].join(', ')}, got ${shown(action)}`,
    );
  }
  if (
    typeof name !== 'string' ||
    name === '' ||
    name.length > MAX_NAME_LENGTH ||
    Buffer.from(name, 'utf8').toString('utf8') !== name
  ) {
    throw new RequestError(
      400,
      `expected name to be a breaker name (a non-empty string of at most ${MAX_NAME_LENGTH} characters), got ${shown(name)}`,
    );
  }
  return { name, action };
}

/** A value for an error message, cut short. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? typeof value;
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

export async function startDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  const { connection, view } = options;
  const token = options.token ?? newToken();
  const maxEventClients = options.maxEventClients ?? DEFAULT_MAX_EVENT_CLIENTS;
  const maxUnsentBytes = options.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES;
  /** Each open stream, with how many bytes its snapshot left unsent (its allowance starts there). */
  const streams = new Map<ServerResponse, number>();
  let hostsAllowed: Set<string> | null = null;

  /** Writes to one stream; a stream whose unsent bytes passed its bound is dropped instead. */
  const write = (res: ServerResponse, text: string): void => {
    const allowance = streams.get(res);
    if (allowance === undefined) return;
    if (res.writableLength > allowance + maxUnsentBytes) {
      streams.delete(res);
      res.destroy();
      return;
    }
    res.write(text);
  };
  const frame = (event: string, data: unknown): string =>
    `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  const unsubscribe = view.subscribe((event: ViewEvent) => {
    if (streams.size === 0) return;
    const text = frame(event.type, event);
    for (const res of [...streams.keys()]) write(res, text);
  });
  const heartbeat = setInterval(() => {
    for (const res of [...streams.keys()]) write(res, ': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();

  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    if (streams.size >= maxEventClients) {
      res.setHeader('retry-after', '5');
      json(res, 503, {
        error: `${maxEventClients} live pages are open already (--max-event-clients); close one or try again later`,
      });
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write(
      frame('snapshot', {
        rows: [...view.rows.values()],
        timeline: view.timeline,
        store: connection.description,
        pushed: view.pushed,
        health: view.health,
      }),
    );
    streams.set(res, res.writableLength);
    req.on('close', () => streams.delete(res));
  };

  const act = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const header = req.headers.authorization;
    const given = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : null;
    if (given === null) {
      throw new RequestError(401, 'a token is needed: the one the dashboard printed when it started');
    }
    if (!tokenMatches(given, token)) throw new RequestError(403, 'wrong token');
    const { name, action } = parseAction(await readBody(req));
    const override = ACTIONS.get(action)!;
    let result: ActionResult;
    try {
      result =
        override === 'reset'
          ? await resetBreaker(connection, name)
          : await applyOverride(connection, name, action, override);
    } catch (error) {
      // Not found is the operator's answer; anything else is the store failing (503).
      const notFound = error instanceof CliError;
      json(res, notFound ? 404 : 503, { error: (error as Error).message });
      return;
    }
    await view.refreshOne(name);
    json(res, 200, result);
  };

  const ROUTES: ReadonlyMap<
    string,
    ReadonlyMap<string, (req: IncomingMessage, res: ServerResponse) => Promise<void> | void>
  > = new Map([
    ['/', new Map([['GET', (_req: IncomingMessage, res: ServerResponse) => page(res)]])],
    ['/events', new Map([['GET', stream]])],
    [
      '/api/breakers',
      new Map([
        ['GET', (_req: IncomingMessage, res: ServerResponse) => json(res, 200, [...view.rows.values()])],
      ]),
    ],
    ['/api/action', new Map([['POST', act]])],
  ]);

  const page = (res: ServerResponse): void => {
    const nonce = randomBytes(16).toString('base64');
    const html = renderPage({ nonce, store: connection.description });
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(html);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (hostsAllowed !== null && !hostsAllowed.has((req.headers.host ?? '').toLowerCase())) {
      throw new RequestError(421, 'unexpected Host header');
    }
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    } catch {
      throw new RequestError(400, `not a request path: ${shown(req.url)}`);
    }
    const methods = ROUTES.get(path);
    if (methods === undefined) throw new RequestError(404, 'not found');
    const route = methods.get(req.method ?? '');
    if (route === undefined) {
      res.setHeader('allow', [...methods.keys()].join(', '));
      throw new RequestError(
        405,
        `${shown(req.method)} is not allowed on ${path}; use ${[...methods.keys()].join(' or ')}`,
      );
    }
    await route(req, res);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.end();
        return;
      }
      const status = error instanceof RequestError ? error.status : 500;
      // A body left unread (too large, or refused before reading) is not waited for.
      if (!req.complete) res.setHeader('connection', 'close');
      json(res, status, { error: error instanceof Error ? error.message : String(error) });
    });
  });
  // A malformed request line or header: answer 400 and close, never throw.
  server.on('clientError', (_error, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
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
    get eventClients() {
      return streams.size;
    },
    close: async () => {
      clearInterval(heartbeat);
      unsubscribe();
      for (const res of streams.keys()) res.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
