import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';

import type { Redis } from 'ioredis';

import { DEFAULT_POLICY } from '../../src/cli/fleet.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { count, spawnCli, trip, waitForOutput } from '../helpers/cli.js';
import { useRedisServer } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';

const TOKEN = `fuzz-${randomUUID()}`;
const NAMES = ['charge-card/tenant-a', 'charge-card/tenant-b', 'send-email/tenant-c'];
/** Names found on Object.prototype and friends: the ones a lookup in a plain object finds. */
const CRAFTED = [
  'hasOwnProperty',
  'toString',
  'constructor',
  '__proto__',
  'valueOf',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toLocaleString',
  '__defineGetter__',
  '__lookupSetter__',
  'prototype',
  'then',
];

/** A small seeded generator, so a failure can be replayed (the seed is in the test name). */
function generator(seed: number): { int(n: number): number; pick<T>(items: readonly T[]): T } {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  return {
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)]!,
  };
}

interface Answer {
  readonly status: number | null;
  /** Why there was no status: the server closed the connection before answering. */
  readonly error?: string;
}

function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer | null,
): Promise<Answer> {
  return new Promise((resolve) => {
    let status: number | null = null;
    const req = request({ host: '127.0.0.1', port, method, path, headers, timeout: 5_000 }, (res) => {
      status = res.statusCode ?? null;
      if (String(res.headers['content-type']).startsWith('text/event-stream')) {
        req.destroy();
        resolve({ status });
        return;
      }
      res.resume();
      res.on('end', () => resolve({ status }));
      res.on('error', () => resolve({ status }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ status, error: error.message }));
    if (body !== null) req.end(body);
    else req.end();
  });
}

/** Bytes that are not HTTP, straight on a socket: the answer's status, or null when closed. */
function sendRaw(port: number, bytes: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setTimeout(5_000, () => socket.destroy());
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: match === null ? null : Number(match[1]) });
    });
    socket.end(bytes);
  });
}

describe(
  'dashboard API under fuzzing: never dies, never 5xx, no change without the token',
  { timeout: 180_000 },
  () => {
    let server: RedisServer;
    let client: Redis;
    let prefix: string;
    let dashboard: ChildProcess;
    let port: number;
    let stderr = '';
    useRedisServer((s, c) => {
      server = s;
      client = c;
    });

    before(async () => {
      prefix = `fuzz-${randomUUID()}:`;
      const store = new RedisStore({ client, prefix });
      await trip(store, NAMES[0]!);
      await count(store, NAMES[1]!, 5, 2);
      await store.force(NAMES[2]!, DEFAULT_POLICY, 'metrics-only');
      dashboard = spawnCli(
        ['dashboard', '--port', '0', '--interval', '500', '--redis', server.url, '--prefix', prefix],
        { CIRCUITRY_DASHBOARD_TOKEN: TOKEN },
      );
      dashboard.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const started = await waitForOutput(dashboard.stdout!, /Ctrl-C stops it/);
      port = Number(/http:\/\/127\.0\.0\.1:(\d+)\//.exec(started)![1]);
    });

    after(async () => {
      if (dashboard.exitCode === null) {
        dashboard.kill('SIGINT');
        await new Promise((resolve) => dashboard.on('exit', resolve));
      }
    });

    async function records(): Promise<Record<string, string>> {
      const keys = (await client.keys(`${prefix}*`)).sort();
      const out: Record<string, string> = {};
      for (const key of keys)
        out[key] =
          `${(await client.dumpBuffer(key))?.toString('hex')}/${Number(await client.call('PEXPIRETIME', key))}`;
      return out;
    }

    function body(g: ReturnType<typeof generator>): Buffer | null {
      const name = (): unknown =>
        g.pick<unknown>([
          g.pick(NAMES),
          'no-such-breaker',
          '',
          'x'.repeat(3_000),
          '\ud800lone',
          42,
          null,
          [],
          { toString: 'x' },
          true,
        ]);
      const action = (): unknown =>
        g.pick<unknown>([
          ...CRAFTED,
          ...CRAFTED,
          'open',
          'close',
          'disable',
          'metrics-only',
          'clear',
          'reset',
          'OPEN',
          ' open',
          '',
          7,
          null,
          ['open'],
          { open: true },
        ]);
      switch (g.int(12)) {
        case 0:
          return null;
        case 1:
          return Buffer.from('{"name": "charge-card/tenant-a", "action": ');
        case 2:
          return Buffer.from(
            g.pick(['null', '[]', '"open"', '17', 'true', '{}', '{"__proto__": {"action": "open"}}']),
          );
        case 3:
          return Buffer.alloc(g.pick([20_000, 100_000, 2_000_000]), 0x7b);
        case 4:
          return Buffer.from(Array.from({ length: g.int(300) }, () => g.int(256)));
        case 5:
          return Buffer.from(JSON.stringify({ name: name() }));
        case 6:
          return Buffer.from(JSON.stringify({ action: action() }));
        default:
          return Buffer.from(JSON.stringify({ name: name(), action: action(), extra: g.int(10) }));
      }
    }

    async function fuzz(seed: number, requests: number, withToken: boolean): Promise<Answer[]> {
      const g = generator(seed);
      const answers: Answer[] = [];
      const one = async (): Promise<void> => {
        if (g.int(20) === 0) {
          const raw = g.pick([
            'GARBAGE\r\n\r\n',
            'POST /api/action HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n',
            `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
            'POST /api/action HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
            'GET / HTTP/1.1\r\nBad Header\r\n\r\n',
            '\x00\x01\x02\x03',
          ]);
          answers.push(await sendRaw(port, Buffer.from(raw, 'latin1')));
          return;
        }
        const method = g.pick([
          'GET',
          'POST',
          'POST',
          'POST',
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'HEAD',
          'FOO',
        ]);
        const path = g.pick([
          '/api/action',
          '/api/action',
          '/api/action',
          '/api/action?action=open',
          '/api/breakers',
          '/',
          '/events',
          '/api/../api/action',
          '//api/action',
          '/%zz',
          '/api/action/',
          '/hasOwnProperty',
          '/__proto__',
          `/${'x'.repeat(g.int(5_000))}`,
        ]);
        const headers: Record<string, string> = {};
        const auth = g.int(6);
        if (auth === 1) headers.authorization = 'Bearer wrong-token';
        if (auth === 2) headers.authorization = 'Basic Zm9vOmJhcg==';
        if (auth === 3) headers.authorization = 'Bearer ';
        if (auth === 4) headers.authorization = `Bearer ${TOKEN}x`;
        if (auth === 5 && withToken) headers.authorization = `Bearer ${TOKEN}`;
        if (g.int(4) === 0)
          headers['content-type'] = g.pick(['application/json', 'text/plain', 'multipart/form-data', '']);
        if (g.int(15) === 0) headers.host = g.pick(['evil.example:80', '', 'localhost']);
        answers.push(
          await send(port, method, path, headers, method === 'GET' || method === 'HEAD' ? null : body(g)),
        );
      };
      const workers = Array.from({ length: 16 }, async () => {
        while (answers.length < requests) await one();
      });
      await Promise.all(workers);
      return answers;
    }

    function check(answers: readonly Answer[]): void {
      const fivexx = answers.filter((a) => a.status !== null && a.status >= 500);
      assert.deepEqual(fivexx, [], `answers of 500 and above; dashboard stderr: ${stderr}`);
      assert.equal(dashboard.exitCode, null, `the dashboard died: ${stderr}`);
      // Some answers are none at all (a raw request cut off, a huge body refused while still being
      // sent); most must be real answers, or the server was not really being exercised.
      assert.ok(answers.filter((a) => a.status !== null).length > answers.length * 0.8);
    }

    it('2,500 requests without the token (seed 1): alive, every answer < 500, no breaker changed', async () => {
      const recordsBefore = await records();
      const answers = await fuzz(1, 2_500, false);
      check(answers);
      assert.deepEqual(await records(), recordsBefore, 'a breaker changed without the token');
      assert.ok(answers.some((a) => a.status === 401) && answers.some((a) => a.status === 403));
    });

    it('2,500 requests, some with the token (seed 2): alive, every answer < 500', async () => {
      const answers = await fuzz(2, 2_500, true);
      check(answers);
      assert.ok(answers.some((a) => a.status === 400));
      assert.ok(answers.some((a) => a.status === 413));
    });

    it('each crafted action name, with the token: 400 naming the actions; the process lives on', async () => {
      for (const action of CRAFTED) {
        const body = Buffer.from(JSON.stringify({ name: NAMES[1], action }));
        const answer = await send(
          port,
          'POST',
          '/api/action',
          { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body,
        );
        assert.equal(answer.status, 400, `action ${action}`);
      }
      const alive = await send(port, 'GET', '/api/breakers', {}, null);
      assert.equal(alive.status, 200);
      assert.equal(dashboard.exitCode, null);
    });
  },
);
