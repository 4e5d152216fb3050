import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Agent, fetch, request } from 'undici';

import {
  BreakerFactory,
  MemoryStore,
  consecutiveFailures,
  isCallTimeoutError,
  isCircuitOpenError,
} from '../../src/index.js';
import type { BreakerOptions } from '../../src/index.js';
import { circuitryInterceptor } from '../../src/undici/index.js';
import { freePort } from '../helpers/redis-server.js';
import { STATUS_TABLE, startServer, within } from './server.js';
import type { TestServer } from './server.js';

function factoryOf(options: BreakerOptions = {}): BreakerFactory {
  return new BreakerFactory({ store: new MemoryStore(), trip: consecutiveFailures(1_000), ...options });
}

describe('circuitryInterceptor (undici)', () => {
  let server: TestServer;
  const agents: Agent[] = [];
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.close()));
    await server.close();
  });

  function agentFor(factory: BreakerFactory, options?: Parameters<typeof circuitryInterceptor>[1]) {
    const agent = new Agent();
    agents.push(agent);
    return agent.compose(circuitryInterceptor(factory, options));
  }

  it('counts each status as the classification table says; the answer passes through', async () => {
    const factory = factoryOf();
    for (const [status, counted] of STATUS_TABLE) {
      const dispatcher = agentFor(factory, { base: `status-${status}` });
      const response = await request(`${server.origin}/status/${status}`, { dispatcher });
      assert.equal(response.statusCode, status);
      assert.equal(await response.body.text(), status === 204 ? '' : `status ${status}`);
      const { counts } = await factory.breakerFor(`status-${status}`, { origin: server.origin }).state();
      assert.deepEqual(
        { status, failures: counts.failures, successes: counts.successes },
        { status, failures: counted === 'failure' ? 1 : 0, successes: counted === 'success' ? 1 : 0 },
      );
    }
  });

  it('counts a refused connection as a failure', async () => {
    const factory = factoryOf();
    const origin = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(request(`${origin}/`, { dispatcher: agentFor(factory) }));
    assert.equal((await factory.breakerFor('http', { origin }).state()).counts.failures, 1);
  });

  it('a rejected request is never sent: request() throws CircuitOpenError, fetch() its cause', async () => {
    const factory = factoryOf({ trip: consecutiveFailures(2), openMs: 60_000 });
    const dispatcher = agentFor(factory);
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${server.origin}/status/503`, { dispatcher });
      assert.equal(response.status, 503);
      assert.equal(await response.text(), 'status 503', 'the failing answer reaches the caller');
    }
    const requests = server.requests;
    await assert.rejects(request(`${server.origin}/status/200`, { dispatcher }), (e: unknown) => {
      assert.ok(isCircuitOpenError(e), String(e));
      assert.ok(e.retryAfterMs > 0);
      return true;
    });
    await assert.rejects(fetch(`${server.origin}/status/200`, { dispatcher }), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.ok(isCircuitOpenError(e.cause), String(e.cause));
      return true;
    });
    assert.equal(server.requests, requests, 'no request reached the server');
  });

  it('the breaker’s timeout aborts the request: the server sees the connection close', async () => {
    const factory = factoryOf({ timeoutMs: 100 });
    const closed = server.hangClosed();
    await assert.rejects(
      within(request(`${server.origin}/hang`, { dispatcher: agentFor(factory) }), 5_000, 'the timeout'),
      (e: unknown) => isCallTimeoutError(e),
    );
    await within(closed, 5_000, 'the server seeing the socket close');
    assert.equal((await factory.breakerFor('http', { origin: server.origin }).state()).counts.failures, 1);
  });

  it('an abort by the caller counts as neither success nor failure', async () => {
    const factory = factoryOf();
    const controller = new AbortController();
    const closed = server.hangClosed();
    const call = fetch(`${server.origin}/hang`, { dispatcher: agentFor(factory), signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(
      within(call, 5_000, 'the abort'),
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    await within(closed, 5_000, 'the server seeing the socket close');
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.failures, counts.successes, counts.ignored], [0, 0, 1]);
  });

  it('classify overrides the default', async () => {
    const factory = factoryOf();
    const dispatcher = agentFor(factory, {
      classify: (result) => (result.status === 404 ? 'failure' : undefined),
    });
    for (const status of [404, 200]) {
      await (await request(`${server.origin}/status/${status}`, { dispatcher })).body.text();
    }
    const { counts } = await factory.breakerFor('http', { origin: server.origin }).state();
    assert.deepEqual([counts.failures, counts.successes], [1, 1]);
  });
});
