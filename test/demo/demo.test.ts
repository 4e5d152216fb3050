import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { RedisServer, freePort } from '../helpers/redis-server.js';

const run = promisify(execFile);
const cwd = new URL('../..', import.meta.url).pathname;
const demo = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', ...args], { cwd, maxBuffer: 1 << 24 });

interface Ended {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Started {
  readonly child: ChildProcess;
  /** Resolves with the first match of `pattern` in stderr (progress, URLs), rejects if the demo ends first. */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  /** Resolves when the demo has exited; one still running after `limitMs` is killed and fails the test. */
  readonly ended: Promise<Ended>;
}

function startDemo(args: readonly string[], limitMs = 60_000): Started {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/cli.ts', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const watch of watchers) watch();
  });
  const ended = new Promise<Ended>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo did not exit within ${limitMs} ms: ${stderr}`));
    }, limitMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      for (const watch of watchers) watch();
      resolve({ code, stdout, stderr });
    });
  });
  const waitFor = (pattern: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const watch = (): void => {
        const match = pattern.exec(stderr);
        if (match !== null) {
          watchers.delete(watch);
          resolve(match);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          watchers.delete(watch);
          reject(new Error(`the demo ended before printing ${String(pattern)}: ${stderr}`));
        }
      };
      watchers.add(watch);
      watch();
    });
  return { child, waitFor, ended };
}

/**
 * Runs the demo to its end. One that has not exited after `limitMs` is killed and fails the test:
 * the errors below must come before any run (a bound on hanging, not a speed test).
 */
const demoEnds = (args: readonly string[]): Promise<Ended> => startDemo(args, 30_000).ended;

/**
 * Scrapes `url` until `pattern` shows, while the demo runs (series appear with the first call of
 * the run with breakers); the last body if the demo ended first.
 */
async function scrapeDuringRun(demo: Started, url: string, pattern: RegExp): Promise<string> {
  let body = '';
  while (demo.child.exitCode === null) {
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    body = await response.text();
    if (pattern.test(body)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return body;
}

const CALLS = /^circuitry_calls_total\{base="downstream",outcome="success",reason=""\} [1-9]\d*$/m;

interface Run {
  withBreakers: boolean;
  wastedCalls: number;
  healthyThroughput: number;
  healthyThroughputDuringOutage: number;
  healthyP50Ms: number;
  healthyP99Ms: number;
  jobsDeferred: number;
  deferrals: number;
  detectMs: number | null;
  recoverMs: number | null;
  transitionCount: number;
  transitions: Array<{ t: number; breaker: string; to: string }>;
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
  // The whole-run average hides the stall; during the outage the breakers keep the healthy
  // tenants going while retries in the worker hold them up.
  assert.ok(
    withBreakers.healthyThroughputDuringOutage > without.healthyThroughputDuringOutage,
    `${withBreakers.healthyThroughputDuringOutage} vs ${without.healthyThroughputDuringOutage} jobs/s during the outage`,
  );
  assert.ok(withBreakers.jobsDeferred > 0);
  // A job comes back after retryAfterMs and may meet the open breaker again.
  assert.ok(withBreakers.deferrals >= withBreakers.jobsDeferred);
  assert.equal(without.deferrals, 0);
  assert.notEqual(withBreakers.detectMs, null, 'the outage was detected');
  assert.notEqual(withBreakers.recoverMs, null, 'and the breaker closed again after it');
  assert.ok(withBreakers.transitionCount >= 3, 'closed -> open -> half-open -> closed, at least');
  assert.equal(withBreakers.transitionCount, withBreakers.transitions.length);
  assert.equal(without.transitionCount, 0);
  // Transitions name the breaker, as the CLI and the dashboard do.
  assert.ok(
    withBreakers.transitions.some((t) => t.breaker === 'downstream/tenant-a' && t.to === 'open'),
    JSON.stringify(withBreakers.transitions.slice(0, 3)),
  );
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
      // The table's words: jobs deferred (each once) and deferrals (a job can be deferred again).
      assert.match(
        stderr,
        /^with per-tenant breakers: .*, jobs deferred \d+, deferrals \d+, breakers open \d+$/m,
      );
      assert.doesNotMatch(stderr, /\r/);

      // The HTML report stands alone: inline SVG timelines, nothing fetched from elsewhere.
      const page = readFileSync(html, 'utf8');
      assert.equal(page.match(/<figure><figcaption>/g)?.length, 2, 'one timeline per run');
      assert.match(page, /tenant-a ✗/);
      assert.match(page, /fill="#d55e00"><title>tenant-a: open from/, 'the open period is drawn');
      // Scaled to the page's width, with a titled time axis and the healthy tenants' throughput
      // during the outage in the headline.
      assert.match(page, /<svg xmlns="http:\/\/www.w3.org\/2000\/svg" viewBox="0 0 \d+ \d+"/);
      assert.doesNotMatch(page, /<svg[^>]* width="\d+"/, 'no fixed pixel width');
      assert.match(page, />seconds since start</);
      assert.match(page, /healthy tenants completed <strong>\d+ jobs\/s<\/strong> with retries/);
      assert.match(page, /jobs per second during the outage/);
      // Open and the failing tenants' line no longer share a color, nor does the outage band.
      assert.doesNotMatch(page, /#d64545/);
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
      const run = startDemo([
        '--duration',
        '6',
        '--workers',
        '6',
        '--redis',
        redis.url,
        '--json',
        '--metrics',
        '0',
      ]);
      // --metrics: the worker processes' breakers, summed, during the run with breakers.
      const [, url] = await run.waitFor(
        /Prometheus metrics at (http:\S+) \(summed over the worker processes/,
      );
      await run.waitFor(/^with per-tenant breakers: /m);
      const body = await scrapeDuringRun(run, url!, CALLS);
      assert.match(body, CALLS);
      const { code, stdout, stderr } = await run.ended;
      assert.equal(code, 0);
      const report = JSON.parse(stdout) as Report;
      assert.equal(report.store, `Redis at ${redis.url}, 6 worker processes`);
      assertBreakersSaveTheHealthyTenants(report);
      // The breakers' state was kept in this Redis, and removed at the end, as --bullmq does.
      const removed = /^removed the demo's (\d+) keys \(circuitry-demo:\d+:\d+:\*\) from Redis$/m.exec(
        stderr,
      );
      assert.ok(removed !== null, stderr);
      assert.ok(Number(removed[1]) > 0, 'the demo wrote its breakers to Redis');
      const client = redis.client();
      try {
        assert.deepEqual(await client.keys('circuitry-demo:*'), []);
      } finally {
        client.disconnect();
      }
    });

    it('shows the run live on the dashboard with --dashboard, and keeps it open until Ctrl-C', async () => {
      const run = startDemo([
        '--duration',
        '2',
        '--redis',
        redis.url,
        '--dashboard',
        '--dashboard-port',
        '0',
        '--json',
      ]);
      // The prefix is quoted, as every CLI command shows it (an empty or spaced prefix stays visible).
      const [, prefix] = await run.waitFor(/^circuitry dashboard for Redis at \S+, prefix "(\S+)"$/m);
      const [, url, token] = await run.waitFor(
        /^ {2}open it now: (http:\/\/127\.0\.0\.1:\d+\/)#token=(\S+)$/m,
      );
      assert.match(prefix!, /^circuitry-demo:/);
      assert.ok(token!.length >= 8);
      const page = await fetch(url!);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/);

      // The event stream, from before the run with breakers: its transitions arrive as they happen.
      const events = await fetch(`${url}events`);
      assert.equal(events.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      const reader = events.body!.getReader();
      const decoder = new TextDecoder();
      let stream = '';
      const opened = /^event: transition\ndata: .*"downstream\/tenant-a".*"to":"open"/m;
      // Read until it shows, or until the run is over (then the assertion below says what was missed).
      const runOver = run.waitFor(/The dashboard stays open at http:\S+; Ctrl-C stops it\./);
      const over = runOver.then(() => ({ done: true, value: undefined }) as const);
      while (!opened.test(stream)) {
        const { value, done } = await Promise.race([reader.read(), over]);
        if (done) break;
        stream += decoder.decode(value, { stream: true });
      }
      await reader.cancel();
      assert.match(stream, /^event: snapshot$/m);
      assert.match(stream, opened, 'tenant-a opening, pushed live');

      // After the run: the results, and the dashboard still there until Ctrl-C.
      await runOver;
      const rows = (await (await fetch(`${url}api/breakers`)).json()) as Array<{ name: string }>;
      // Only the failing tenant has a record: healthy tenants cost the store no key.
      assert.deepEqual(
        rows.map((row) => row.name),
        ['downstream/tenant-a'],
      );
      run.child.kill('SIGINT');
      const { code, stdout } = await run.ended;
      assert.equal(code, 0);
      assert.equal((JSON.parse(stdout) as Report).store, `Redis at ${redis.url}, 4 worker processes`);
      await assert.rejects(fetch(url!), 'the dashboard closed');
    });
  });

  it("serves its breakers' Prometheus metrics with --metrics while it runs", async () => {
    const run = startDemo(['--duration', '2', '--metrics', '0']);
    const [, url] = await run.waitFor(
      /^Prometheus metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics) \(this process/m,
    );
    // The run without breakers has none to show.
    await run.waitFor(/^without breakers: /m);
    assert.doesNotMatch(await (await fetch(url!)).text(), /circuitry_calls_total\{/);
    await run.waitFor(/^with per-tenant breakers: /m);
    const body = await scrapeDuringRun(run, url!, CALLS);
    // Labelled by the one base name, never by tenant.
    assert.match(body, CALLS);
    assert.match(body, /^circuitry_breakers\{base="downstream",state="closed"\} \d+$/m);
    assert.doesNotMatch(body, /tenant-/);
    assert.equal((await run.ended).code, 0);
    await assert.rejects(fetch(url!), 'the server closed with the demo');
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
      '--json [FILE]',
      '--html FILE',
      '--metrics PORT',
      '--bullmq',
      '--dashboard ',
      '--dashboard-port N',
      'npm start --silent -- --json',
      'npm run flaky-server',
    ]) {
      assert.ok(stdout.includes(option), `--help mentions ${option}`);
    }
    const refusals = [
      [['--workers', 'many'], /--workers must be/],
      [['--pattern', 'sometimes'], /--pattern must be/],
      [['--pattern', 'rate:2'], /--pattern rate:R needs/],
      [['--seed', 'x'], /--seed must be an integer/],
      [['--failing', '6'], /--failing must leave/],
      [['--metrics', 'x'], /--metrics must be a port/],
      [['--dashboard'], /--dashboard needs --redis URL/],
      [['--redis', 'redis://127.0.0.1:1', '--dashboard-port', '7070'], /--dashboard-port needs --dashboard/],
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

  it('ends with one line and exit code 1, before running, when --redis cannot be reached', async () => {
    const port = await freePort(); // nothing listens there
    const { code, stdout, stderr } = await demoEnds(['--redis', `redis://127.0.0.1:${port}`]);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      new RegExp(`^circuitry demo: cannot reach Redis at redis://127\\.0\\.0\\.1:${port}/?: .+\n$`),
    );
    assert.doesNotMatch(stderr, /without breakers|at .+\.ts:\d+/, 'no run, no stack trace');
  });

  it('refuses an --html or --json FILE it could not write, before running (exit code 2)', async () => {
    for (const flag of ['--html', '--json']) {
      const { code, stdout, stderr } = await demoEnds([flag, '/no/such/dir/r.html']);
      assert.equal(code, 2);
      assert.equal(stdout, '');
      assert.match(
        stderr,
        new RegExp(
          `^circuitry demo: ${flag} /no/such/dir/r.html: the directory /no/such/dir does not exist .*\n$`,
        ),
      );
      assert.doesNotMatch(stderr, /without breakers/, 'the simulation did not run');
    }
  });

  it('writes --json FILE and prints the table; `npm start --silent -- --json` prints JSON alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-demo-'));
    const file = join(dir, 'results.json');
    try {
      const { stdout, stderr } = await demo('--duration', '1', '--json', file);
      assert.match(stdout, /retry in worker +per-tenant breakers/);
      assert.match(stderr, new RegExp(`wrote ${file}`));
      const report = JSON.parse(readFileSync(file, 'utf8')) as Report;
      assert.equal(report.store, 'in memory, one process');
      assert.equal(typeof report.with.healthyThroughputDuringOutage, 'number');

      // What the README and --help say to pipe into jq: npm's banner stays off stdout.
      const npm = await run('npm', ['start', '--silent', '--', '--duration', '1', '--json'], {
        cwd,
        maxBuffer: 1 << 24,
      });
      const piped = JSON.parse(npm.stdout) as Report;
      assert.equal(piped.scenario.workers, 4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs the flaky server from a clone with `npm run flaky-server`', async () => {
    const pkg = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.equal(pkg.scripts['flaky-server'], 'tsx src/demo/cli.ts flaky-server');
    const { stdout } = await demo('flaky-server', '--help');
    assert.match(stdout, /npm run flaky-server -- \[options\]/);
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

interface Rejections {
  readonly [reason: string]: number;
}

interface RunOf extends Run {
  variant: string;
  throughput: number;
  p99Ms: number;
  healthyMinThroughput: number | null;
  healthyMinThroughputShare: number | null;
  rejections: Rejections;
  escalatedMs: number | null;
  servedAgainMs: number | null;
  downstream?: { limit: number; calls: number; tooManyRequests: number; maxInFlight: number };
}

interface ReportOf {
  scenario: {
    tenants: number;
    failing: number;
    workers: number;
    jobsPerSecond: number;
    providerOutage: boolean;
    downstreamLimit: number;
  };
  experiment: string;
  without: RunOf;
  with: RunOf;
  withEscalation?: RunOf;
  withThrottle?: RunOf;
  withMaxConcurrent?: RunOf;
}

/** Every deferral has the reason the breaker gave; none without breakers. */
function assertRejectionsAddUp(run: RunOf): void {
  const sum = Object.values(run.rejections).reduce((a, b) => a + b, 0);
  assert.equal(sum, run.deferrals, `${run.variant}: ${JSON.stringify(run.rejections)} vs ${run.deferrals}`);
}

describe('the demo: the worst window, --provider-outage and --downstream-limit', { timeout: 150_000 }, () => {
  it("reports the healthy tenants' worst 250 ms after the outage began, and marks --ramp in the HTML report", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuitry-demo-'));
    const html = join(dir, 'report.html');
    const json = join(dir, 'report.json');
    try {
      // The outage ends early, so tenant-a's breaker closes, and ramps, within the run.
      const { stdout } = await demo(
        ...['--duration', '4', '--outage', '0.2-0.4', '--ramp', '500', '--json', json, '--html', html],
      );
      assert.match(
        stdout,
        /^healthy tenants: jobs\/s in the worst 250 ms since the outage began +\d+ \(\d+% of 300\) +\d+ \(\d+% of 300\)/m,
      );
      const report = JSON.parse(readFileSync(json, 'utf8')) as ReportOf;
      assert.equal(report.experiment, 'tenant-outage');
      // Two runs, as ever: no withEscalation, withThrottle or withMaxConcurrent.
      assert.deepEqual(
        Object.keys(report).filter((key) => key.startsWith('with')),
        ['without', 'with'],
      );
      for (const run of [report.without, report.with]) {
        assert.equal(typeof run.healthyMinThroughput, 'number');
        // A share of the rate the five healthy tenants enqueue (5 x 60 jobs/s).
        assert.equal(run.healthyMinThroughputShare, run.healthyMinThroughput! / 300);
        assert.ok(run.healthyMinThroughput! >= 0);
        assertRejectionsAddUp(run);
      }
      assert.deepEqual(report.without.rejections, {});
      assert.equal(report.without.variant, 'none');
      assert.equal(report.with.variant, 'breakers');
      assert.ok((report.with.rejections.open ?? 0) > 0, JSON.stringify(report.with.rejections));

      const page = readFileSync(html, 'utf8');
      const closed = report.with.transitions.find(
        (t) => t.breaker === 'downstream/tenant-a' && t.to === 'closed',
      );
      assert.ok(closed !== undefined, 'tenant-a closed within the run');
      assert.match(page, /<title>tenant-a: recovery ramp from \d+\.\d\d s to \d+\.\d\d s<\/title>/);
      assert.match(page, /recovery ramp \(--ramp 500/, 'in the legend');
      assert.equal(page.match(/<figure><figcaption>/g)?.length, 2);
      assert.doesNotMatch(page, /<script|<link|<img|url\(/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--provider-outage: every tenant down; escalation sends fewer calls to the provider than per-tenant breakers', async () => {
    const { stdout } = await demo('--provider-outage', '--duration', '6', '--json');
    const report = JSON.parse(stdout) as ReportOf;
    assert.equal(report.experiment, 'provider-outage');
    // The scenario's defaults: 40 tenants, all of them failing, on 16 workers.
    assert.equal(report.scenario.providerOutage, true);
    assert.equal(report.scenario.tenants, 40);
    assert.equal(report.scenario.failing, 40);
    assert.equal(report.scenario.workers, 16);
    const { without, with: breakers, withEscalation: escalated } = report;
    assert.ok(escalated !== undefined);
    assert.deepEqual(
      [without.variant, breakers.variant, escalated.variant],
      ['none', 'breakers', 'escalation'],
    );
    // The breakers stop calling the provider; escalation stops every tenant once enough are open.
    assert.ok(
      escalated.wastedCalls < breakers.wastedCalls && breakers.wastedCalls < without.wastedCalls,
      `calls while down: ${without.wastedCalls}, ${breakers.wastedCalls}, ${escalated.wastedCalls}`,
    );
    assert.ok((escalated.rejections['base-open'] ?? 0) > 0, JSON.stringify(escalated.rejections));
    assert.equal(breakers.rejections['base-open'], undefined);
    assert.notEqual(escalated.escalatedMs, null);
    assert.equal(breakers.escalatedMs, null);
    assert.ok(escalated.transitions.some((t) => t.breaker === 'downstream/*' && t.to === 'open'));
    for (const run of [without, breakers, escalated]) {
      assertRejectionsAddUp(run);
      // No healthy tenant to measure.
      assert.equal(run.healthyMinThroughput, null);
      assert.equal(typeof run.throughput, 'number');
    }
  });

  it('--downstream-limit N: maxConcurrent N keeps the downstream within its limit, so no 429s', async () => {
    const { stdout } = await demo('--downstream-limit', '4', '--duration', '4', '--json');
    const report = JSON.parse(stdout) as ReportOf;
    assert.equal(report.experiment, 'downstream-limit');
    assert.equal(report.scenario.downstreamLimit, 4);
    assert.equal(report.scenario.failing, 0);
    const runs = [report.without, report.with, report.withThrottle, report.withMaxConcurrent];
    assert.deepEqual(
      runs.map((run) => run?.variant),
      ['none', 'breakers', 'throttle', 'concurrency'],
    );
    for (const run of runs) {
      assert.ok(run?.downstream !== undefined);
      assert.equal(run.downstream.limit, 4);
      // Calls over the limit are refused, so the downstream never has more than 4 in flight.
      assert.ok(run.downstream.maxInFlight <= 4, `${run.variant}: ${run.downstream.maxInFlight} in flight`);
      assert.ok(run.downstream.tooManyRequests <= run.downstream.calls);
      assertRejectionsAddUp(run);
    }
    // 16 workers against 4 slots: retried in place, calls beyond the limit meet 429s.
    assert.ok(report.without.downstream!.tooManyRequests > 0);
    // One breaker for the downstream with maxConcurrent 4 never calls beyond it.
    const limited = report.withMaxConcurrent!;
    assert.equal(limited.downstream!.tooManyRequests, 0);
    assert.ok(limited.throughput > 0);
    for (const reason of Object.keys(limited.rejections)) assert.equal(reason, 'concurrency-limit');
    for (const reason of Object.keys(report.withThrottle!.rejections)) assert.equal(reason, 'throttled');
  });

  it('refuses the new comparisons with --redis, --bullmq, --dashboard or the flags they do not use (exit code 2)', async () => {
    const refusals = [
      [
        ['--provider-outage', '--redis', 'redis://127.0.0.1:1'],
        /--provider-outage runs its workers in this process only: --redis is not supported/,
      ],
      [['--provider-outage', '--bullmq'], /--provider-outage runs .*: --bullmq is not supported/],
      [
        ['--downstream-limit', '4', '--redis', 'redis://127.0.0.1:1', '--dashboard'],
        /--downstream-limit runs .*: --redis is not supported/,
      ],
      [
        ['--provider-outage', '--failing', '2'],
        /--provider-outage takes the downstream down for every tenant: --failing does not apply/,
      ],
      [['--provider-outage', '--downstream-limit', '4'], /two different comparisons/],
      [
        ['--downstream-limit', '4', '--outage', '0.1-0.5'],
        /--downstream-limit has no outage.*--outage does not apply/,
      ],
      [['--downstream-limit', '16'], /--downstream-limit 16 must be below --workers \(16\)/],
      [['--downstream-limit', 'many'], /--downstream-limit must be a positive integer/],
    ] as const;
    // One after the other: each is a Node process of its own.
    for (const [args, message] of refusals) {
      const { code, stdout, stderr } = await demoEnds(args);
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
      assert.equal(stdout, '');
      assert.match(stderr, message);
      assert.match(stderr, /\(--help lists the options\)\n$/);
    }
    const { stdout } = await demo('--help');
    assert.match(stdout, /--provider-outage {2}/);
    assert.match(stdout, /--downstream-limit N\n/);
    assert.match(stdout, /not with --redis, --bullmq, --dashboard/);
  });
});
