import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

interface Run {
  wastedCalls: number;
  healthyThroughput: number;
  healthyP50Ms: number;
  healthyP99Ms: number;
  deferred: number;
  detectMs: number | null;
  recoverMs: number | null;
}

describe('the demo (npm start)', { timeout: 90_000 }, () => {
  it('shows per-tenant breakers saving the healthy tenants, in its --json output', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'src/demo/cli.ts', '--duration', '8', '--workers', '6', '--json'],
      { cwd: new URL('../..', import.meta.url).pathname },
    );
    const report = JSON.parse(stdout) as { without: Run; with: Run };
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
  });

  it('explains itself with --help and refuses bad options', async () => {
    const cwd = new URL('../..', import.meta.url).pathname;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', '--help'], { cwd });
    assert.match(stdout, /--tenants N/);
    await assert.rejects(
      run(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', '--workers', 'many'], { cwd }),
      (error: { code?: number; stderr?: string }) =>
        error.code === 2 && /--workers must be/.test(error.stderr ?? ''),
    );
  });
});
