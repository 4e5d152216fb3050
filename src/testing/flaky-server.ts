import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { IntermittentFailer } from './intermittent-failer.js';
import type { IntermittentFailerOptions } from './intermittent-failer.js';
import { seededRandom } from './seeded-random.js';

/** How a {@link FlakyServer} fails; change it while it runs with `configure`. */
export interface FlakyBehaviour {
  /**
   * The share of requests that fail, from 0 to 1, drawn from a generator seeded with `seed` (so a
   * run is reproducible). Ignored when `pattern` is given. @defaultValue 0
   */
  readonly failureRate?: number;
  /**
   * Seed of the `failureRate` draws. `configure` without a seed keeps drawing from the same
   * sequence, so a new phase does not replay the first draws. @defaultValue 1
   */
  readonly seed?: number;
  /**
   * A deterministic pattern instead of a rate: `'sssff'`, booleans, or the options of an
   * {@link IntermittentFailer} (`{ successes: 3, failures: 2 }`, `{ pattern: 'ffff', then: 'succeed' }`).
   */
  readonly pattern?: string | readonly boolean[] | IntermittentFailerOptions;
  /** The status of a failed request. @defaultValue 503 */
  readonly failStatus?: number;
  /** Delay before a successful response. @defaultValue 0 */
  readonly latencyMs?: number;
  /** Delay before a failed response (a timing-out dependency is slow to fail). @defaultValue `latencyMs` */
  readonly failLatencyMs?: number;
}

export interface FlakyServerOptions extends FlakyBehaviour {
  /** The port to listen on; 0 picks a free one (read it from `port` or `url`). @defaultValue 0 */
  readonly port?: number;
  /** @defaultValue '127.0.0.1' */
  readonly host?: string;
}

/** Counts of what a {@link FlakyServer} answered (requests to `/__stats` are not counted). */
export interface FlakyServerStats {
  /** Requests answered or being answered. */
  readonly requests: number;
  /** Requests that got (or will get) a 200. */
  readonly successes: number;
  /** Requests that got (or will get) `failStatus`. */
  readonly failures: number;
}

/** A running flaky HTTP service. */
export interface FlakyServer {
  /** `http://host:port`, without a trailing slash. */
  readonly url: string;
  /** The port it listens on (the one picked, when `port` was 0). */
  readonly port: number;
  /** What it answered so far. Also served as JSON at `GET /__stats`. */
  stats(): FlakyServerStats;
  /** Changes how it fails from the next request on (a pattern starts from its first step). */
  configure(behaviour: FlakyBehaviour): void;
  /** Stops listening, drops open connections and pending responses. */
  close(): Promise<void>;
}

function invalid(name: string, expected: string, value: unknown): TypeError {
  return new TypeError(`Expected \`${name}\` to be ${expected}, got \`${String(value)}\` (${typeof value})`);
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalid(name, 'a non-negative finite number', value);
  }
  return value;
}

function seedOf(behaviour: FlakyBehaviour, fallback: number): number {
  const seed = behaviour.seed ?? fallback;
  if (!Number.isInteger(seed)) throw invalid('seed', 'an integer', seed);
  return seed;
}

interface Resolved {
  readonly decide: () => boolean;
  readonly failStatus: number;
  readonly latencyMs: number;
  readonly failLatencyMs: number;
}

function resolve(behaviour: FlakyBehaviour, random: () => number): Resolved {
  let decide: () => boolean;
  if (behaviour.pattern !== undefined) {
    const pattern = behaviour.pattern;
    const failer = new IntermittentFailer(
      typeof pattern === 'string' || Array.isArray(pattern)
        ? { pattern: pattern as string | readonly boolean[] }
        : (pattern as IntermittentFailerOptions),
    );
    decide = () => failer.next();
  } else {
    const rate = nonNegative('failureRate', behaviour.failureRate, 0);
    if (rate > 1) throw invalid('failureRate', 'a number from 0 to 1', rate);
    decide = () => random() >= rate;
  }
  const failStatus = behaviour.failStatus ?? 503;
  if (!Number.isInteger(failStatus) || failStatus < 400 || failStatus > 599) {
    throw invalid('failStatus', 'an HTTP error status (400-599)', failStatus);
  }
  const latencyMs = nonNegative('latencyMs', behaviour.latencyMs, 0);
  return {
    decide,
    failStatus,
    latencyMs,
    failLatencyMs: nonNegative('failLatencyMs', behaviour.failLatencyMs, latencyMs),
  };
}

/**
 * Starts a small HTTP service that fails on purpose — at a rate, or in a deterministic pattern —
 * for integration and load tests of code that calls a flaky dependency. Every path except
 * `/__stats` is decided: a success answers `200 {"ok":true,"request":n}`, a failure answers
 * `failStatus` with `{"ok":false,"request":n}`.
 *
 * @example
 * ```ts
 * const server = await startFlakyServer({ pattern: { successes: 4, failures: 1 } });
 * const response = await fetch(`${server.url}/charge`); // 200, 200, 200, 200, 503, 200, ...
 * server.configure({ failureRate: 1 }); // now down
 * await server.close();
 * ```
 */
export async function startFlakyServer(options: FlakyServerOptions = {}): Promise<FlakyServer> {
  let random = seededRandom(seedOf(options, 1));
  let behaviour = resolve(options, random);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw invalid('port', 'a port number', port);
  const host = options.host ?? '127.0.0.1';
  let requests = 0;
  let failures = 0;
  const pending = new Set<NodeJS.Timeout>();
  const stats = (): FlakyServerStats => ({ requests, successes: requests - failures, failures });

  const answer = (response: ServerResponse, status: number, body: unknown, delayMs: number): void => {
    const send = (): void => {
      response.writeHead(status, { 'content-type': 'application/json', connection: 'keep-alive' });
      response.end(`${JSON.stringify(body)}\n`);
    };
    if (delayMs <= 0) return send();
    const timer = setTimeout(() => {
      pending.delete(timer);
      send();
    }, delayMs);
    pending.add(timer);
  };

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    request.resume(); // bodies are ignored, but must be read for keep-alive
    if (request.url === '/__stats') return answer(response, 200, stats(), 0);
    requests += 1;
    const n = requests;
    const current = behaviour;
    if (current.decide()) return answer(response, 200, { ok: true, request: n }, current.latencyMs);
    failures += 1;
    answer(response, current.failStatus, { ok: false, request: n }, current.failLatencyMs);
  });
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      done();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${shownHost}:${address.port}`,
    port: address.port,
    stats,
    configure(next: FlakyBehaviour) {
      const generator = next.seed === undefined ? random : seededRandom(seedOf(next, 1));
      behaviour = resolve(next, generator);
      random = generator;
    },
    close() {
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      return new Promise<void>((done, fail) => {
        server.close((error) => (error === undefined ? done() : fail(error)));
        server.closeAllConnections();
      });
    },
  };
}
