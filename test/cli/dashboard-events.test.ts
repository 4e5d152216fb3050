import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { DEFAULT_POLICY, glob } from '../../src/cli/fleet.js';
import { FleetView } from '../../src/cli/dashboard/fleet-view.js';
import { startDashboardServer } from '../../src/cli/dashboard/server.js';
import type { DashboardServer } from '../../src/cli/dashboard/server.js';
import type { StoreConnection } from '../../src/cli/store-connection.js';
import { MemoryStore } from '../../src/index.js';
import { outcomes } from '../../src/testing/conformance.js';

/** Long names, so each change of a breaker is a large event: the buffers fill in a few rounds. */
const NAMES = Array.from({ length: 40 }, (_, i) => `${'n'.repeat(50_000)}/${i}`);

/** Opens `/events` and never reads a byte of the answer. */
function neverReading(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.pause();
      socket.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, () => resolve(socket));
    });
    socket.on('error', reject);
  });
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('dashboard /events is bounded', { timeout: 60_000 }, () => {
  let store: MemoryStore;
  let view: FleetView;
  let server: DashboardServer;
  const sockets: Socket[] = [];

  before(async () => {
    store = new MemoryStore();
    for (const name of NAMES) store.acquire(name, DEFAULT_POLICY);
    view = new FleetView({ store, match: glob(undefined), timeoutMs: 5_000, refreshMs: 60_000 });
    await view.start();
    const connection: StoreConnection = {
      store,
      description: 'memory',
      where: { store: 'memory', prefix: null },
      callTimeoutMs: 5_000,
      close: () => Promise.resolve(),
    };
    server = await startDashboardServer({
      connection,
      view,
      host: '127.0.0.1',
      port: 0,
      token: 'a-token-for-tests',
      maxEventClients: 3,
      maxUnsentBytes: 256 * 1024,
    });
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await server.close();
    await view.stop();
  });

  const port = (): number => Number(new URL(server.url).port);

  it('--max-event-clients: clients that connect and never read hold the slots; the next is answered 503', async () => {
    for (let i = 0; i < 3; i++) sockets.push(await neverReading(port()));
    await until(() => server.eventClients === 3, 'three streams');
    const refused = await fetch(new URL('/events', server.url));
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.match(((await refused.json()) as { error: string }).error, /3 live pages/);
    // The rest of the API still answers.
    assert.equal((await fetch(new URL('/api/breakers', server.url))).status, 200);
    sockets.splice(0).forEach((socket) => socket.destroy());
    await until(() => server.eventClients === 0, 'the streams to close');
  });

  it('a reader that never reads is dropped once its unsent bytes pass the bound; a reading one is kept', async () => {
    const slow = await neverReading(port());
    sockets.push(slow);
    const reader = new AbortController();
    const res = await fetch(new URL('/events', server.url), { signal: reader.signal });
    let received = 0;
    const reading = (async () => {
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) received += chunk.length;
      } catch {
        // aborted at the end of the test
      }
    })();
    await until(() => server.eventClients === 2, 'two streams');
    // Each round changes every breaker: about 2 MB of events to each stream, a few ms apart.
    for (let round = 0; round < 60 && server.eventClients === 2; round++) {
      for (const name of NAMES) {
        const { generation } = store.acquire(name, DEFAULT_POLICY);
        store.record(
          name,
          DEFAULT_POLICY,
          outcomes(generation, { successes: 1, failures: 0, trailingFailures: 0 }),
        );
        await view.refreshOne(name);
        // A turn of the event loop, so the reading client (in this process) can read.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    await until(() => server.eventClients === 1, 'the slow reader to be dropped');
    const before = received;
    for (const name of NAMES.slice(0, 3)) {
      const { generation } = store.acquire(name, DEFAULT_POLICY);
      store.record(
        name,
        DEFAULT_POLICY,
        outcomes(generation, { successes: 1, failures: 0, trailingFailures: 0 }),
      );
      await view.refreshOne(name);
    }
    await until(() => received > before, 'the reading client to get the next events');
    assert.equal(server.eventClients, 1);
    reader.abort();
    await reading;
  });
});
