import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { RedisServer } from '../helpers/redis-server.js';
import type { Attempt } from './fetch-worker.js';
import { startServer } from './server.js';
import type { TestServer } from './server.js';

// One worker's call gets a 503 with `Retry-After: 2`: every worker process, each with its own
// factory on one real Redis, rejects within milliseconds, no request reaches the server for 2 s,
// then they are admitted again. The wall clock is the point here, so the bounds are generous
// (±100 ms, as issue 24 asks), and measured on the server's side: each request says when its
// call began (a call admitted before the open reached its process can arrive late on a loaded
// machine; the workers' own rejections are what show how fast the open spread).

const WORKERS = 4;
const RETRY_AFTER_S = 2;
const SLACK_MS = 100;

describe('Retry-After across processes (Redis)', { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let server: TestServer;
  let armed = false;
  let trippedAt = 0;
  /** When each `/api` call began, for the requests that reached the server. */
  const apiRequests: number[] = [];

  before(async () => {
    redis = await RedisServer.start();
    server = await startServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/api') return false;
      const now = Date.now();
      apiRequests.push(Number(url.searchParams.get('at')));
      if (armed && trippedAt === 0) {
        trippedAt = now;
        res.writeHead(503, { 'retry-after': String(RETRY_AFTER_S) });
        res.end('slow down');
      } else {
        res.end('ok');
      }
      return true;
    });
  });
  after(async () => {
    await server.close();
    await redis.stop();
  });

  function startWorker(prefix: string): Promise<ChildProcess> {
    const child = fork(
      new URL('./fetch-worker.ts', import.meta.url).pathname,
      [redis.url, prefix, server.origin],
      { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    return new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      child.once('message', () => resolve(child));
    });
  }

  it(`${WORKERS} workers reject for ${RETRY_AFTER_S} s, fleet-wide, then admit`, async () => {
    const prefix = `retry-after-${process.pid}-${Date.now()}:`;
    const workers = await Promise.all(Array.from({ length: WORKERS }, () => startWorker(prefix)));
    try {
      armed = true;
      const until = Date.now() + 3_500;
      const runs = await Promise.all(
        workers.map(
          (child) =>
            new Promise<Attempt[]>((resolve) => {
              child.once('message', (message: { attempts: Attempt[] }) => resolve(message.attempts));
              child.send({ cmd: 'run', until, intervalMs: 10 });
            }),
        ),
      );
      assert.ok(trippedAt > 0, 'one call got the 503');
      const t0 = trippedAt;
      const windowMs = RETRY_AFTER_S * 1_000;
      // Retry-After counts from when the tripping worker had the 503, which a loaded machine
      // delays past the server's sending it: the fleet rejects from then + SLACK_MS until the
      // window's end, and the open ends by then + windowMs (+ SLACK_MS).
      const tripped = runs.flat().find(([, got]) => got === 503);
      assert.ok(tripped !== undefined, 'a worker got the 503');
      const received = tripped[3] - t0;
      const after503 = apiRequests.filter((t) => t > t0).map((t) => t - t0);
      const inWindow = after503.filter((ms) => ms > received + SLACK_MS && ms < windowMs - SLACK_MS);
      assert.deepEqual(inWindow, [], 'no call begun while open reached the server');
      const firstAgain = after503.find((ms) => ms >= windowMs - SLACK_MS);
      assert.ok(
        firstAgain !== undefined && firstAgain <= received + windowMs + SLACK_MS,
        `the first call to reach the server again began ${firstAgain} ms after the 503 (expected ${windowMs} - ${SLACK_MS} to ${received} + ${windowMs} + ${SLACK_MS})`,
      );
      const report: string[] = [];
      for (const [i, attempts] of runs.entries()) {
        const rejected = attempts.filter(([at, got]) => got === 'rejected' && at > t0);
        assert.ok(rejected.length > 0, `worker ${i} was rejected`);
        const firstRejected = rejected[0]![0] - t0;
        // The open reached this worker within SLACK_MS of the 503's receipt: every call it began
        // after that, until the window's end, was rejected. (Not its first rejection's time: on
        // a loaded machine a call admitted just before the open can hold the worker's loop.)
        const whileOpen = attempts.filter(
          ([at]) => at - t0 > received + SLACK_MS && at - t0 < windowMs - SLACK_MS,
        );
        assert.ok(whileOpen.length > 0, `worker ${i} called while open`);
        const through = whileOpen.filter(([, got]) => got !== 'rejected');
        assert.deepEqual(
          through.map(([at, got]) => [at - t0, got]),
          [],
          `worker ${i}: calls begun while open that were not rejected (ms after the 503, what they got)`,
        );
        for (const [at, , retryAfterMs] of rejected) {
          assert.ok(
            retryAfterMs <= windowMs && at - t0 + retryAfterMs <= received + windowMs + SLACK_MS,
            'retryAfterMs says when',
          );
        }
        const admitted = attempts.filter(([at, got]) => got === 200 && at - t0 > windowMs - SLACK_MS);
        assert.ok(admitted.length > 0, `worker ${i} was admitted again`);
        report.push(
          `worker ${i}: first rejection +${firstRejected} ms, admitted at +${admitted[0]![0] - t0} ms`,
        );
      }
      console.log(
        `# server: the 503 received +${received} ms after it was sent; the first call to reach the server again began +${firstAgain} ms after it; ${report.join('; ')}`,
      );
    } finally {
      await Promise.all(
        workers.map(
          (child) =>
            new Promise<void>((resolve) => {
              child.once('exit', () => resolve());
              child.send({ cmd: 'stop' });
            }),
        ),
      );
    }
  });
});
