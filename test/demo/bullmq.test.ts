import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { RedisServer } from '../helpers/redis-server.js';

// `npm start -- --bullmq`: the comparison on a real BullMQ queue, in a redis-server of the test's
// own, so "no keys remain" can be checked on the whole server.

const cwd = new URL('../..', import.meta.url).pathname;

interface Ended {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The demo as a child; `until` resolves once stderr matches; one still running after 90 s is killed. */
function startDemo(args: readonly string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiting = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const check of waiting) check();
  });
  const ended = new Promise<Ended>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo did not exit within 90 s: ${stderr}`));
    }, 90_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  const until = (pattern: RegExp): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(stderr)) {
          waiting.delete(check);
          resolve();
        }
      };
      waiting.add(check);
      check();
      void ended.then(() => reject(new Error(`the demo ended before ${String(pattern)}: ${stderr}`)));
    });
  return { child, ended, until };
}

interface Run {
  withBreakers: boolean;
  wastedCalls: number;
  healthyThroughput: number;
  healthyThroughputDuringOutage: number;
  healthyP99Ms: number;
  jobsDeferred: number;
  deferrals: number;
  transitionCount: number;
  transitions: Array<{ t: number; breaker: string; to: string }>;
  jobs: { added: number; completed: number };
}

interface Report {
  scenario: { tenants: number; workers: number };
  store: string;
  queue: string;
  without: Run;
  with: Run;
}

describe('the demo on a real BullMQ queue (npm start -- --bullmq)', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.stop();
  });

  async function keysLeft(): Promise<string[]> {
    const client = redis.client();
    try {
      return await client.keys('*');
    } finally {
      client.disconnect();
    }
  }

  it('runs both runs on BullMQ with worker processes, completes every job and removes its keys', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-demo-bullmq-'));
    const html = join(dir, 'report.html');
    try {
      const demo = startDemo([
        '--bullmq',
        '--redis',
        redis.url,
        '--duration',
        '4',
        '--tenants',
        '3',
        '--workers',
        '2',
        '--json',
        '--html',
        html,
      ]);
      const { code, stdout, stderr } = await demo.ended;
      assert.equal(code, 0, stderr);
      const report = JSON.parse(stdout) as Report;
      assert.equal(report.queue, 'bullmq');
      assert.equal(
        report.store,
        `BullMQ queue in Redis at ${redis.url}, 2 worker processes; breakers in a RedisStore`,
      );
      for (const run of [report.without, report.with]) {
        // Every job enqueued completed: deferred and retried ones too, once the queue drained.
        assert.ok(run.jobs.added > 0);
        assert.equal(run.jobs.completed, run.jobs.added, `${JSON.stringify(run.jobs)}`);
        assert.ok(run.healthyThroughput > 0);
      }
      // Without breakers BullMQ retries the failing tenant's jobs into its downstream; with them,
      // withBreaker defers them and the downstream sees a few calls.
      assert.equal(report.without.deferrals, 0);
      assert.equal(report.without.transitionCount, 0);
      assert.ok(report.without.wastedCalls > 20, `${report.without.wastedCalls} calls without breakers`);
      assert.ok(
        report.with.wastedCalls < report.without.wastedCalls / 2,
        `${report.with.wastedCalls} vs ${report.without.wastedCalls} calls to the failing downstream`,
      );
      assert.ok(report.with.jobsDeferred > 0);
      assert.ok(report.with.deferrals >= report.with.jobsDeferred);
      assert.ok(
        report.with.transitions.some((t) => t.breaker === 'downstream/tenant-a' && t.to === 'open'),
        'the failing tenant opened',
      );
      assert.ok(
        report.with.transitions.every((t) => t.breaker === 'downstream/tenant-a'),
        'only the failing tenant changed',
      );

      const page = readFileSync(html, 'utf8');
      assert.match(page, /Without breakers: BullMQ retries the failing tenant’s jobs/);
      assert.match(page, /jobs completed \/ enqueued/);

      assert.match(stderr, /^removed the demo's \d+ keys \(circuitry-demo-bullmq:\d+:\d+:\*\) from Redis$/m);
      assert.deepEqual(await keysLeft(), [], 'no keys left in Redis');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('removes its keys when Ctrl-C stops it mid-run (exit code 130)', async () => {
    const demo = startDemo([
      '--bullmq',
      '--redis',
      redis.url,
      '--duration',
      '30',
      '--tenants',
      '3',
      '--workers',
      '2',
    ]);
    await demo.until(/^without breakers: /m);
    // The run is under way: the queue's keys are in Redis.
    let keys: string[] = [];
    while (keys.length === 0) {
      keys = await keysLeft();
      if (keys.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(
      keys.every((key) => key.startsWith('circuitry-demo-bullmq:')),
      keys.join(' '),
    );
    demo.child.kill('SIGINT');
    const { code, stdout, stderr } = await demo.ended;
    assert.equal(code, 130, stderr);
    assert.equal(stdout, '', 'no results for an interrupted run');
    assert.match(stderr, /^removed the demo's \d+ keys .* from Redis\ncircuitry demo: interrupted\n$/m);
    assert.deepEqual(await keysLeft(), [], 'no keys left in Redis');
  });
});
