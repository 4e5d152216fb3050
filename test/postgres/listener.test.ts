import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';

import pg from 'pg';

import { PostgresStore } from '../../src/stores/postgres/index.js';

// A server that accepts connections and never answers: a Postgres that hangs, or a network that
// drops everything after the handshake. Unsubscribing must end the connection anyway.

describe('PostgresStore.subscribe against a server that never answers', { timeout: 30_000 }, () => {
  for (const how of ['the returned function', 'the signal'] as const) {
    it(`${how} ends the dedicated connection`, async () => {
      const sockets: Socket[] = [];
      const server = createServer((socket) => {
        sockets.push(socket);
        socket.resume(); // reads (and drops) what the client sends, so it sees the client go
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as { port: number };
      const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      const store = new PostgresStore({ pool });
      try {
        const controller = new AbortController();
        const subscribed = store.subscribe(() => undefined, { signal: controller.signal });
        while (sockets.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        const closed = once(sockets[0]!, 'close');
        if (how === 'the signal') controller.abort();
        const unsubscribe = await subscribed;
        await unsubscribe();
        await closed;
        assert.equal(sockets.length, 1, 'no new connection after unsubscribing');
      } finally {
        await pool.end();
        server.close();
      }
    });
  }
});
