import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { RedisServer } from './helpers/redis-server.js';

// Every example in examples/ runs as a user would run it (`node --import tsx examples/x.ts`),
// against real services, ends on its own with exit code 0 and prints what its comments promise.
// A new example must be added here: the first test fails while one is not.

const run = promisify(execFile);
const cwd = new URL('..', import.meta.url).pathname;

interface Expectation {
  readonly env?: (redis: RedisServer) => Record<string, string>;
  /** Each must match stdout. */
  readonly prints: readonly RegExp[];
}

const examples: Record<string, Expectation> = {
  'quick-start.ts': {
    prints: [
      /\[sync-invoices\/acme\] closed -> open/,
      /completed \d+, failed 3, deferred [1-9]\d*/,
      /\[sync-invoices\/acme\] half-open -> closed/,
      /sync-invoices\/acme: closed/,
    ],
  },
  'flaky-dependency.ts': {
    prints: [
      /breaker: closed -> open/,
      /invoice \d+: deferred for \d+ ms \(not sent\)/,
      /breaker: half-open -> closed/,
      /the service saw \d+ requests for 12 invoices/,
    ],
  },
  'bullmq.ts': {
    env: (redis) => ({ REDIS_URL: redis.url, OUTAGE_MS: '500' }),
    prints: [
      /\[sync-invoices\/acme\] closed -> open/,
      /deferred job \d+ \(acme\) for \d+ ms: open/,
      /\[sync-invoices\/acme\] half-open -> closed/,
      /^30 jobs completed$/m,
    ],
  },
};

describe('the examples', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.stop();
  });

  it('are all listed here', () => {
    const files = readdirSync(new URL('../examples', import.meta.url)).filter((f) => f.endsWith('.ts'));
    assert.deepEqual(files.sort(), Object.keys(examples).sort());
  });

  for (const [file, expected] of Object.entries(examples)) {
    it(`${file} runs to the end and exits 0`, async () => {
      const started = Date.now();
      const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/${file}`], {
        cwd,
        timeout: 30_000,
        killSignal: 'SIGKILL',
        env: { ...process.env, ...expected.env?.(redis) },
      }).catch((error: unknown) => {
        const { code, signal, stdout: out, stderr } = error as Record<string, unknown>;
        assert.fail(
          `examples/${file} ended with ${String(code ?? signal)}\nstdout:\n${String(out)}\nstderr:\n${String(stderr)}`,
        );
      });
      for (const pattern of expected.prints) assert.match(stdout, pattern);
      assert.ok(Date.now() - started < 20_000, `examples/${file} took ${Date.now() - started} ms`);
    });
  }
});
