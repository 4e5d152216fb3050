import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { RedisServer } from '../helpers/redis-server.js';

const run = promisify(execFile);
const cwd = new URL('../..', import.meta.url).pathname;
const demo = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', ...args], { cwd, maxBuffer: 1 << 24 });

interface Run {
  withBreakers: boolean;
  wastedCalls: number;
  healthyThroughput: number;
  healthyP50Ms: number;
  healthyP99Ms: number;
  deferred: number;
  detectMs: number | null;
  recoverMs: number | null;
  stateChanges: number;
}

interface Report {
  scenario: { workers: number; seed: number; pattern: { kind: string } };
  store: string;
  without: Run;
  with: Run;
}

/** The relations the demo exists to show. */
function assertBreakersSaveTheHealthyTenants(report: Report): void {
  const { without, with: withBreakers } = report;
  // Calls to the failing downstream while it is down drop by more than 90%.
  assert.ok(without.wastedCalls > 50, `${without.wastedCalls} wasted without breakers`);
  assert.ok(
    withBreakers.wastedCalls < without.wastedCalls * 0.1,
    `${withBreakers.wastedCalls} vs ${without.wastedCalls} calls to the failing downstream`,
  );
  // The healthy tenants' p99 latency with breakers is a fraction of the one without.
  assert.ok(
    withBreakers.healthyP99Ms < without.healthyP99Ms / 3,
    `p99 ${withBreakers.healthyP99Ms} ms vs ${without.healthyP99Ms} ms`,
  );
  assert.ok(withBreakers.healthyThroughput >= without.healthyThroughput * 0.9);
  assert.ok(withBreakers.deferred > 0);
  assert.notEqual(withBreakers.detectMs, null, 'the outage was detected');
  assert.notEqual(withBreakers.recoverMs, null, 'and the breaker closed again after it');
  assert.ok(withBreakers.stateChanges >= 3, 'closed -> open -> half-open -> closed, at least');
  assert.equal(without.stateChanges, 0);
}

describe('the demo (npm start)', { timeout: 120_000 }, () => {
  it('shows per-tenant breakers saving the healthy tenants, in its --json output', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-demo-'));
    const html = join(dir, 'report.html');
    try {
      const { stdout, stderr } = await demo('--duration', '6', '--workers', '6', '--json', '--html', html);
      const report = JSON.parse(stdout) as Report;
      assert.equal(report.store, 'in memory, one process');
      assertBreakersSaveTheHealthyTenants(report);
      // Not a TTY here: progress comes as plain lines, never carriage returns.
      assert.match(stderr, /^without breakers: .* s, calls to the failing downstream \d+/m);
      assert.doesNotMatch(stderr, /\r/);

      // The HTML report stands alone: inline SVG timelines, nothing fetched from elsewhere.
      const page = readFileSync(html, 'utf8');
      assert.equal(page.match(/<svg /g)?.length, 2, 'one timeline per run');
      assert.match(page, /tenant-a ✗/);
      assert.match(page, /fill="#d64545"><title>tenant-a: open from/, 'the open period is drawn');
      assert.doesNotMatch(page, /<script|<link|<img|url\(/);
      assert.deepEqual(
        [...new Set(page.match(/https?:\/\/[^"\s]+/g))],
        ['http://www.w3.org/2000/svg'],
        'no external assets',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('with --redis', () => {
    let redis: RedisServer;
    before(async () => {
      redis = await RedisServer.start();
    });
    after(async () => {
      await redis.stop();
    });

    it('runs the workers as separate processes sharing a RedisStore, with the same result', async () => {
      const { stdout } = await demo('--duration', '6', '--workers', '6', '--redis', redis.url, '--json');
      const report = JSON.parse(stdout) as Report;
      assert.equal(report.store, `Redis at ${redis.url}, 6 worker processes`);
      assertBreakersSaveTheHealthyTenants(report);
      const client = redis.client();
      try {
        // The breakers' state was kept in this Redis.
        const keys = await client.keys('circuitry-demo:*');
        assert.ok(keys.length > 0, 'the demo wrote its breakers to Redis');
      } finally {
        client.disconnect();
      }
    });
  });

  it('takes a failure pattern and a seed', async () => {
    const { stdout } = await demo('--duration', '2', '--pattern', 'ssffffff', '--seed', '7', '--json');
    const report = JSON.parse(stdout) as Report;
    assert.deepEqual(report.scenario.pattern, { kind: 'pattern', pattern: 'ssffffff' });
    assert.equal(report.scenario.seed, 7);
    assert.ok(report.with.wastedCalls < report.without.wastedCalls);
  });

  it('explains every option with --help and refuses bad ones', async () => {
    const { stdout } = await demo('--help');
    for (const option of [
      '--tenants N',
      '--failing N',
      '--workers N',
      '--duration S',
      '--pattern P',
      '--seed N',
      '--redis URL',
      '--json',
      '--html FILE',
    ]) {
      assert.ok(stdout.includes(option), `--help mentions ${option}`);
    }
    const refusals = [
      [['--workers', 'many'], /--workers must be/],
      [['--pattern', 'sometimes'], /--pattern must be/],
      [['--pattern', 'rate:2'], /--pattern rate:R needs/],
      [['--seed', 'x'], /--seed must be an integer/],
      [['--failing', '6'], /--failing must leave/],
    ] as const;
    await Promise.all(
      refusals.map(([args, message]) =>
        assert.rejects(demo(...args), (error: { code?: number; stderr?: string }) => {
          assert.equal(error.code, 2);
          assert.match(error.stderr ?? '', message);
          return true;
        }),
      ),
    );
  });

  it('serves a flaky HTTP service with `circuitry flaky-server`', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/demo/cli.ts', 'flaky-server', '--port', '0', '--pattern', 'ssf'],
      { cwd, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /flaky server on (http:\S+)/.exec(out);
        if (match !== null) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${url}/x`);
      await response.text();
      seen.push(response.status);
    }
    assert.deepEqual(seen, [200, 200, 503]);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(out, /answered 3 requests, 1 failed/);
  });
});
