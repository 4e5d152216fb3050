import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { startFlakyServer } from '../../src/testing/index.js';
import type { FlakyServer } from '../../src/testing/index.js';

async function statuses(server: FlakyServer, n: number): Promise<number[]> {
  const seen: number[] = [];
  for (let i = 0; i < n; i++) {
    const response = await fetch(`${server.url}/work`);
    await response.text();
    seen.push(response.status);
  }
  return seen;
}

describe('startFlakyServer', () => {
  it('listens on a free port and answers in a deterministic pattern', async () => {
    const server = await startFlakyServer({ pattern: { successes: 2, failures: 1 } });
    try {
      assert.ok(server.port > 0);
      assert.equal(server.url, `http://127.0.0.1:${server.port}`);
      assert.deepEqual(await statuses(server, 6), [200, 200, 503, 200, 200, 503]);
      const response = await fetch(`${server.url}/work`);
      assert.deepEqual(await response.json(), { ok: true, request: 7 });
      assert.deepEqual(server.stats(), { requests: 7, successes: 5, failures: 2 });
      const stats = await fetch(`${server.url}/__stats`);
      assert.deepEqual(await stats.json(), { requests: 7, successes: 5, failures: 2 });
    } finally {
      await server.close();
    }
  });

  it('fails at a configured rate, the same requests for the same seed', async () => {
    const a = await startFlakyServer({ failureRate: 0.3, seed: 42, failStatus: 500 });
    const b = await startFlakyServer({ failureRate: 0.3, seed: 42, failStatus: 500 });
    try {
      const first = await statuses(a, 200);
      assert.deepEqual(await statuses(b, 200), first);
      const failed = first.filter((s) => s === 500).length;
      assert.ok(failed > 30 && failed < 90, `${failed} of 200 failed at rate 0.3`);
      assert.deepEqual(new Set(first), new Set([200, 500]));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('changes behaviour while running: down, then up', async () => {
    const server = await startFlakyServer();
    try {
      assert.deepEqual(await statuses(server, 3), [200, 200, 200]);
      server.configure({ failureRate: 1 });
      assert.deepEqual(await statuses(server, 3), [503, 503, 503]);
      server.configure({ pattern: 'fs' });
      assert.deepEqual(await statuses(server, 3), [503, 200, 503]);
      server.configure({ failureRate: 0 });
      assert.deepEqual(await statuses(server, 2), [200, 200]);
    } finally {
      await server.close();
    }
  });

  it('keeps drawing from one sequence across configure() unless given a new seed', async () => {
    const server = await startFlakyServer({ failureRate: 0.5, seed: 3 });
    const reference = await startFlakyServer({ failureRate: 0.5, seed: 3 });
    try {
      const whole = await statuses(reference, 20);
      const first = await statuses(server, 10);
      server.configure({ failureRate: 0.5 });
      assert.deepEqual([...first, ...(await statuses(server, 10))], whole);
      server.configure({ failureRate: 0.5, seed: 3 });
      assert.deepEqual(await statuses(server, 10), whole.slice(0, 10));
    } finally {
      await Promise.all([server.close(), reference.close()]);
    }
  });

  it('delays answers by latencyMs and failLatencyMs, and close() drops pending ones', async () => {
    const server = await startFlakyServer({ pattern: 'sf', latencyMs: 5, failLatencyMs: 60_000 });
    const ok = await fetch(`${server.url}/`);
    assert.equal(ok.status, 200);
    await ok.text();
    const hanging = fetch(`${server.url}/`);
    // The failure is held for a minute; closing must not wait for it.
    while (server.stats().requests < 2) await new Promise((r) => setImmediate(r));
    await server.close();
    await assert.rejects(hanging);
  });

  it('rejects malformed options with errors that name them', async () => {
    await assert.rejects(
      startFlakyServer({ failureRate: 2 }),
      /Expected `failureRate` to be a number from 0 to 1/,
    );
    await assert.rejects(startFlakyServer({ latencyMs: -1 }), /`latencyMs`/);
    await assert.rejects(startFlakyServer({ failStatus: 200 }), /`failStatus`/);
    await assert.rejects(startFlakyServer({ port: 70_000 }), /`port`/);
    await assert.rejects(startFlakyServer({ pattern: 'nope' }), /`pattern`/);
  });
});
