import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  BreakerFactory,
  InvalidOptionError,
  MemoryStore,
  consecutiveFailures,
  isCallTimeoutError,
  isCircuitOpenError,
} from '../../src/index.js';
import type { BreakerOptions } from '../../src/index.js';
import { breakerFetch, isHttpStatusError } from '../../src/fetch/index.js';
import { plainOrigin } from '../../src/fetch/http-outcome.js';
import { freePort } from '../helpers/redis-server.js';
import { STATUS_TABLE, startServer, within } from './server.js';
import type { TestServer } from './server.js';

/** Per-call coordination on a MemoryStore: `state()` counts every call exactly. */
function factoryOf<Context = unknown>(options: BreakerOptions<Context> = {}): BreakerFactory<Context> {
  return new BreakerFactory<Context>({
    store: new MemoryStore(),
    trip: consecutiveFailures(1_000),
    ...options,
  });
}

describe('breakerFetch', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  it('counts each status as the classification table says, and returns the response', async () => {
    const factory = factoryOf();
    for (const [status, counted] of STATUS_TABLE) {
      const fetch = breakerFetch(factory, { base: `status-${status}` });
      const response = await fetch(`${server.origin}/status/${status}`);
      assert.equal(response.status, status, 'the caller gets the response, failure or not');
      if (status !== 204) assert.equal(await response.text(), `status ${status}`);
      const { counts } = await factory.breakerFor(`status-${status}`, { origin: server.origin }).state();
      assert.deepEqual(
        { status, failures: counts.failures, successes: counts.successes },
        { status, failures: counted === 'failure' ? 1 : 0, successes: counted === 'success' ? 1 : 0 },
      );
    }
  });

  it('counts a refused connection as a failure and throws fetch’s own error', async () => {
    const factory = factoryOf();
    const fetch = breakerFetch(factory);
    const origin = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(fetch(`${origin}/`), (e: unknown) => e instanceof TypeError);
    const { counts } = await factory.breakerFor('http', { origin }).state();
    assert.equal(counts.failures, 1);
  });

  it('names one breaker per origin by default', async () => {
    const factory = factoryOf();
    await (await breakerFetch(factory)(`${server.origin}/status/200`)).text();
    assert.equal(factory.size, 1);
    assert.equal([...(await factory.health()).breakers][0]?.name, `http/${server.origin}`);
  });

  it("names the breaker by the request's origin exactly as URL does, for every form of URL", async () => {
    const urls = [
      'https://api.example.com/v1/x',
      'http://localhost:3000?x=1',
      'https://a.b:443/x',
      'http://a.b:80/',
      'HTTPS://API.example.com/',
      'https://user:pw@host/x',
      'http://[::1]:8080/x',
      'https://bücher.de/x',
      'http://a.b:0080/',
      'http://0x7f000001/',
      'http://127.1/',
      'https://x.y:8443#frag',
      'http://example.com.:8080/x',
      'http://ex.com\\path',
    ];
    const origins: string[] = [];
    const factory = new BreakerFactory<{ origin: string }>({
      name: (base, context) => {
        origins.push(context!.origin);
        return `${base}/${context!.origin}`;
      },
    });
    const fetch = breakerFetch(factory, { fetch: async () => new Response('ok') });
    for (const url of urls) await fetch(url);
    assert.deepEqual(
      origins,
      urls.map((url) => new URL(url).origin),
    );
  });

  it('reads a plain origin without the URL parser, and only where URL would say the same', () => {
    // The common forms take the fast path.
    for (const url of [
      'https://api.example.com/v1/x',
      'http://127.0.0.1:8080/',
      'http://localhost:3000?x=1',
      'https://x.y:8443#frag',
      'http://example.com.:8080/x',
      'http://10.0.0.255',
    ]) {
      assert.equal(plainOrigin(url), new URL(url).origin, url);
    }
    // Random URLs built from the characters that change what URL makes of an origin: whenever
    // the fast path answers, it answers what URL does.
    let seed = 7;
    const random = (n: number): number => {
      // mulberry32: a seeded generator with no short cycles
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const pick = <T>(items: readonly T[]): T => items[random(items.length)]!;
    const plain = ['a', 'b', 'z', 'x0', 'api', '0', '1', '25', '255', '127', '-'];
    const odd = [
      '00',
      '256',
      '0x7f',
      '.',
      '..',
      'A',
      'é',
      '%41',
      '@',
      ':',
      '[',
      ']',
      '\\',
      ' ',
      'xn--p1ai',
      'xn--x',
      '1e3',
    ];
    const piece = (): string => (random(4) === 0 ? pick(odd) : pick(plain));
    const ports = [
      ':65536',
      ':40000',
      ':443',
      ':080',
      '',
      ':',
      ':0',
      ':08',
      ':80',
      ':443',
      ':8080',
      ':65535',
      ':99999',
      ':1',
      ':9999',
    ];
    const tails = ['', '/', '/x?y', '?q', '#f', '\\x', ' /', '/../'];
    let fast = 0;
    for (let n = 0; n < 100_000; n++) {
      let host = '';
      for (let k = 1 + random(5); k > 0; k--) host += piece() + (random(3) === 0 ? '' : '.');
      const url =
        pick(['http://', 'https://', 'HTTP://', 'ftp://', 'http:/']) + host + pick(ports) + pick(tails);
      const got = plainOrigin(url);
      if (got === null) continue;
      fast += 1;
      assert.equal(got, new URL(url).origin, url);
    }
    assert.ok(fast > 1_500, `${fast} of 100,000 took the fast path`);
  });

  it('classify overrides the default; undefined keeps it', async () => {
    const factory = factoryOf();
    const fetch = breakerFetch(factory, {
      classify: (result) =>
        result.status === 404 ? 'failure' : result.status === 503 ? 'ignore' : undefined,
    });
    for (const status of [404, 503, 500, 200])
      await (await fetch(`${server.origin}/status/${status}`)).text();
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.failures, counts.successes, counts.ignored], [2, 1, 1]);
  });

  it('classify decides for a request with no answer too; the caller gets fetch’s own error', async () => {
    const factory = factoryOf();
    const refused = new TypeError('fetch failed');
    let verdict: 'success' | 'ignore' | 'failure' = 'success';
    const fetch = breakerFetch(factory, {
      classify: (result) => (result.error === undefined ? undefined : verdict),
      fetch: () => Promise.reject(refused),
    });
    for (const next of ['success', 'ignore', 'failure'] as const) {
      verdict = next;
      await assert.rejects(fetch(`${server.origin}/x`), (error) => error === refused);
    }
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.successes, counts.ignored, counts.failures], [1, 1, 1]);
  });

  it('throwOnFailureStatus throws an HttpStatusError with the status, and keeps the connection', async () => {
    const before = server.connections;
    const factory = factoryOf();
    const fetch = breakerFetch(factory, { throwOnFailureStatus: true });
    for (let i = 0; i < 20; i++) {
      await assert.rejects(
        fetch(`${server.origin}/status/500`),
        (e: unknown) => isHttpStatusError(e) && e.status === 500 && e.url === `${server.origin}/status/500`,
      );
    }
    assert.equal((await fetch(`${server.origin}/status/404`)).status, 404, 'a success is returned');
    assert.ok(
      server.connections - before <= 2,
      `released bodies let 21 calls reuse a socket (${server.connections - before} opened)`,
    );
  });

  it('keeps reusing a few keep-alive sockets through many failing calls', async () => {
    const fresh = await startServer();
    try {
      const fetch = breakerFetch(factoryOf());
      for (let i = 0; i < 30; i++) {
        assert.equal(await (await fetch(`${fresh.origin}/status/500`)).text(), 'status 500');
      }
      // Bare fetch opens 1 or 2 here (undici may start a request before the last socket is back).
      assert.ok(fresh.connections <= 2, `30 calls in a row opened ${fresh.connections} sockets`);
      for (let round = 0; round < 10; round++) {
        await Promise.all(
          Array.from({ length: 5 }, async () => (await fetch(`${fresh.origin}/status/503`)).text()),
        );
      }
      // undici's pool may open a socket while another is finishing a body: a few, never one per call.
      assert.ok(fresh.connections <= 10, `50 more, 5 at a time, made ${fresh.connections} sockets in all`);
      assert.equal(fresh.requests, 80);
    } finally {
      await fresh.close();
    }
  });

  it('isolates tenants: tenant a’s 503s open only a’s breaker', async () => {
    const factory = factoryOf<{ tenantId: string; origin: string }>({ trip: consecutiveFailures(3) });
    const fetch = breakerFetch(factory, {
      context: (request) => ({
        tenantId: request.headers.get('x-tenant') ?? 'none',
        origin: new URL(request.url).origin,
      }),
    });
    const call = (tenant: string, status: number) =>
      fetch(`${server.origin}/status/${status}`, { headers: { 'x-tenant': tenant } });
    for (let i = 0; i < 3; i++) assert.equal((await call('a', 503)).status, 503);
    const reachedA = server.byTenant.get('a');
    await assert.rejects(call('a', 200), (e: unknown) => isCircuitOpenError(e));
    assert.equal(server.byTenant.get('a'), reachedA, 'the rejected call made no request');
    for (let i = 0; i < 5; i++) assert.equal((await call('b', 200)).status, 200, 'b is never rejected');
    assert.equal(server.byTenant.get('b'), 5);
    const names = (await factory.health()).breakers.map((b) => [b.name, b.state]);
    assert.deepEqual(names.sort(), [
      [`http/a/${server.origin}`, 'open'],
      [`http/b/${server.origin}`, 'closed'],
    ]);
  });

  it('a rejected call makes no request and throws CircuitOpenError with retryAfterMs', async () => {
    const factory = factoryOf({ trip: consecutiveFailures(1), openMs: 60_000, jitter: 0 });
    const fetch = breakerFetch(factory);
    assert.equal((await fetch(`${server.origin}/status/500`)).status, 500);
    const requests = server.requests;
    await assert.rejects(fetch(`${server.origin}/status/200`), (e: unknown) => {
      assert.ok(isCircuitOpenError(e));
      assert.ok(e.retryAfterMs > 59_000 && e.retryAfterMs <= 60_000, String(e.retryAfterMs));
      return true;
    });
    assert.equal(server.requests, requests);
  });

  it('the breaker’s timeout aborts the request: the server sees the connection close', async () => {
    const factory = factoryOf({ timeoutMs: 100 });
    const fetch = breakerFetch(factory);
    const closed = server.hangClosed();
    await assert.rejects(within(fetch(`${server.origin}/hang`), 5_000, 'the timeout'), (e: unknown) =>
      isCallTimeoutError(e),
    );
    await within(closed, 5_000, 'the server seeing the socket close');
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.equal(counts.failures, 1, 'a timeout is a failure');
  });

  it('a call the caller aborts counts as neither success nor failure, and still closes the socket', async () => {
    const factory = factoryOf({ timeoutMs: 10_000 });
    const fetch = breakerFetch(factory);
    const controller = new AbortController();
    const closed = server.hangClosed();
    const call = fetch(`${server.origin}/hang`, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(
      within(call, 5_000, 'the abort'),
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    await within(closed, 5_000, 'the server seeing the socket close');
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.failures, counts.successes, counts.ignored], [0, 0, 1]);
  });

  it('refuses malformed options, naming the option and what it was given', () => {
    const factory = factoryOf();
    assert.throws(
      () => breakerFetch(factory, { base: '' }),
      (e: unknown) =>
        e instanceof InvalidOptionError && e.option === 'base' && /got `""` \(string\)/.test(e.message),
    );
    assert.throws(
      () => breakerFetch(factory, { maxRetryAfterMs: -1 }),
      (e: unknown) =>
        e instanceof InvalidOptionError && e.option === 'maxRetryAfterMs' && /got `-1`/.test(e.message),
    );
    assert.throws(
      () => breakerFetch(factory, { throwOnFailureStatus: 'yes' as never }),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'throwOnFailureStatus',
    );
    assert.throws(
      () => breakerFetch(factory, { retries: 3 } as never),
      (e: unknown) => e instanceof InvalidOptionError && /Unknown option `retries`/.test(e.message),
    );
  });
});
