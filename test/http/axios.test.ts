import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import axios, { AxiosError } from 'axios';

import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  isCallTimeoutError,
  isCircuitOpenError,
} from '../../src/index.js';
import type { BreakerOptions } from '../../src/index.js';
import { withBreaker } from '../../src/axios/index.js';
import { STATUS_TABLE, startServer, within } from './server.js';
import type { TestServer } from './server.js';

function factoryOf(options: BreakerOptions = {}): BreakerFactory {
  return new BreakerFactory({ store: new MemoryStore(), trip: consecutiveFailures(1_000), ...options });
}

describe('withBreaker (axios)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  it('counts by status whether axios resolves or throws, and the caller gets what axios gave', async () => {
    const factory = factoryOf();
    for (const [status, counted] of STATUS_TABLE) {
      const api = withBreaker(axios.create({ baseURL: server.origin, maxRedirects: 0 }), factory, {
        base: `status-${status}`,
      });
      if (status < 300) {
        assert.equal((await api.get(`/status/${status}`)).status, status);
      } else {
        await assert.rejects(
          api.get(`/status/${status}`),
          (e: unknown) => e instanceof AxiosError && e.response?.status === status,
          'axios throws for it, untouched',
        );
      }
      const { counts } = await factory.breakerFor(`status-${status}`, { origin: server.origin }).state();
      assert.deepEqual(
        { status, failures: counts.failures, successes: counts.successes },
        { status, failures: counted === 'failure' ? 1 : 0, successes: counted === 'success' ? 1 : 0 },
      );
    }
  });

  it('a rejected request is never sent and throws CircuitOpenError', async () => {
    const factory = factoryOf({ trip: consecutiveFailures(1), openMs: 60_000 });
    const api = withBreaker(axios.create({ baseURL: server.origin }), factory);
    await assert.rejects(api.get('/status/500'), AxiosError);
    const requests = server.requests;
    await assert.rejects(api.get('/status/200'), (e: unknown) => isCircuitOpenError(e) && e.retryAfterMs > 0);
    assert.equal(server.requests, requests);
  });

  it('the breaker’s timeout aborts the request: the server sees the connection close', async () => {
    const factory = factoryOf({ timeoutMs: 100 });
    const api = withBreaker(axios.create({ baseURL: server.origin }), factory);
    const closed = server.hangClosed();
    await assert.rejects(within(api.get('/hang'), 5_000, 'the timeout'), (e: unknown) =>
      isCallTimeoutError(e),
    );
    await within(closed, 5_000, 'the server seeing the socket close');
    assert.equal((await factory.breakerFor('http', { origin: server.origin }).state()).counts.failures, 1);
  });

  it('a cancelled request counts as neither success nor failure', async () => {
    const factory = factoryOf();
    const api = withBreaker(axios.create({ baseURL: server.origin }), factory);
    const controller = new AbortController();
    const call = api.get('/hang', { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(within(call, 5_000, 'the cancel'), (e: unknown) => axios.isCancel(e));
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.failures, counts.successes, counts.ignored], [0, 0, 1]);
  });

  it('a 503 resolved by validateStatus still counts as a failure', async () => {
    const factory = factoryOf();
    const api = withBreaker(axios.create({ baseURL: server.origin, validateStatus: () => true }), factory);
    assert.equal((await api.get('/status/503')).status, 503);
    assert.equal((await factory.breakerFor('http', { origin: server.origin }).state()).counts.failures, 1);
  });
});
