import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import axios from 'axios';
import { Agent, request } from 'undici';

import { BreakerFactory, MemoryStore, consecutiveFailures, isCircuitOpenError } from '../../src/index.js';
import { withBreaker } from '../../src/axios/index.js';
import { breakerFetch } from '../../src/fetch/index.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { circuitryInterceptor } from '../../src/undici/index.js';
import { startServer } from './server.js';
import type { TestServer } from './server.js';

// A 429 or 503 that says `Retry-After` opens the breaker for that long (`breaker.openFor`), on a
// manual clock: the open is measured exactly, with no waiting. The multi-process version, on a
// real Redis and the wall clock, is retry-after-fleet.test.ts.

function setUp(): { clock: ManualClock; factory: BreakerFactory } {
  const clock = new ManualClock();
  const factory = new BreakerFactory({
    clock,
    store: new MemoryStore({ clock }),
    trip: consecutiveFailures(1_000),
    jitter: 0,
  });
  return { clock, factory };
}

describe('Retry-After', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer((req, res) => {
      if (req.url !== '/date-retry') return false;
      // An HTTP date 3 s after the response's own Date: the wait is measured from that Date.
      const date = Math.floor(Date.now() / 1000) * 1000 - 60_000; // a server clock a minute slow
      res.writeHead(503, {
        date: new Date(date).toUTCString(),
        'retry-after': new Date(date + 3_000).toUTCString(),
      });
      res.end('busy');
      return true;
    });
  });
  after(() => server.close());

  async function rejection(call: Promise<unknown>): Promise<{ reason: string; retryAfterMs: number }> {
    let caught: unknown;
    await assert.rejects(call, (e: unknown) => {
      caught = e;
      return isCircuitOpenError(e);
    });
    const { reason, retryAfterMs } = caught as { reason: string; retryAfterMs: number };
    return { reason, retryAfterMs };
  }

  it('a 503 with Retry-After: 2 opens the breaker for 2 s, then probes decide', async () => {
    const { clock, factory } = setUp();
    const fetch = breakerFetch(factory);
    const response = await fetch(`${server.origin}/status/503?retryAfter=2`);
    assert.equal(response.status, 503, 'the caller still gets the answer');
    const requests = server.requests;
    assert.deepEqual(await rejection(fetch(`${server.origin}/status/200`)), {
      reason: 'forced-open',
      retryAfterMs: 2_000,
    });
    assert.equal(server.requests, requests, 'no request while open');
    const snapshot = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.equal(snapshot.overrideReason, `Retry-After from ${server.origin}`);
    clock.advance(1_999);
    assert.equal((await rejection(fetch(`${server.origin}/status/200`))).retryAfterMs, 1);
    clock.advance(1);
    assert.equal((await fetch(`${server.origin}/status/200`)).status, 200, 'admitted after 2 s');
    assert.equal(server.requests, requests + 1);
  });

  it('a 429 opens it too, and an HTTP date counts from the response’s Date', async () => {
    const { factory } = setUp();
    const fetch = breakerFetch(factory, { base: 'a' });
    await fetch(`${server.origin}/status/429?retryAfter=5`);
    assert.equal((await rejection(fetch(`${server.origin}/status/200`))).retryAfterMs, 5_000);
    const dated = breakerFetch(factory, { base: 'b' });
    assert.equal((await dated(`${server.origin}/date-retry`)).status, 503);
    assert.equal((await rejection(dated(`${server.origin}/status/200`))).retryAfterMs, 3_000);
  });

  it('is capped by maxRetryAfterMs', async () => {
    const { factory } = setUp();
    const fetch = breakerFetch(factory, { maxRetryAfterMs: 1_500 });
    await fetch(`${server.origin}/status/503?retryAfter=600`);
    assert.equal((await rejection(fetch(`${server.origin}/status/200`))).retryAfterMs, 1_500);
  });

  it('opens nothing for another status, no wait, a value it cannot read, or an answer not counted as failure', async () => {
    const { factory } = setUp();
    const cases: Array<[string, Parameters<typeof breakerFetch>[1]]> = [
      ['/status/200?retryAfter=5', {}],
      ['/status/500?retryAfter=5', {}],
      ['/status/503?retryAfter=0', {}],
      ['/status/503?retryAfter=soon', {}],
      ['/status/503?retryAfter=5', { maxRetryAfterMs: 0 }],
      ['/status/503?retryAfter=5', { classify: () => 'ignore' }],
      ['/status/429?retryAfter=5', { classify: () => 'success' }],
    ];
    for (const [i, [path, options]] of cases.entries()) {
      const fetch = breakerFetch(factory, { ...options, base: `case-${i}` });
      await (await fetch(`${server.origin}${path}`)).text();
      const response = await fetch(`${server.origin}/status/200`);
      assert.equal(response.status, 200, `${path} ${JSON.stringify(options)} opened the breaker`);
    }
  });

  it('through undici and axios as through fetch', async () => {
    const { factory } = setUp();
    const agent = new Agent();
    try {
      const dispatcher = agent.compose(circuitryInterceptor(factory, { base: 'undici' }));
      await (await request(`${server.origin}/status/503?retryAfter=2`, { dispatcher })).body.text();
      const requests = server.requests;
      assert.equal(
        (await rejection(request(`${server.origin}/status/200`, { dispatcher }))).retryAfterMs,
        2_000,
      );
      const api = withBreaker(axios.create({ baseURL: server.origin }), factory, { base: 'axios' });
      await assert.rejects(api.get('/status/429?retryAfter=3'));
      assert.equal((await rejection(api.get('/status/200'))).retryAfterMs, 3_000);
      assert.equal(server.requests, requests + 1, 'the rejected calls made no request');
    } finally {
      await agent.close();
    }
  });
});
