#!/usr/bin/env node
/**
 * The demo: `npm start` in a clone, `npx circuitry demo` where the package is installed.
 * A simulated multi-tenant job queue runs twice, without and with per-tenant breakers, and the
 * comparison is printed (or written as JSON or HTML).
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { BreakerFactory } from '../factory.js';
import { startFlakyServer } from '../testing/flaky-server.js';
import { renderHtml, renderText } from './report.js';
import type { DemoReport } from './report.js';
import { DEFAULT_SCENARIO, breakerOptions, runQueue, tenantName } from './simulation.js';
import type { Deployment, FailurePattern, Progress, RunResult, Scenario } from './simulation.js';

const HELP = `circuitry demo: a multi-tenant job queue with one failing downstream, run twice:
workers retrying failed jobs in place, then per-tenant circuit breakers deferring them.

Usage: npm start -- [options]        (or: npx circuitry demo [options])
       npx circuitry flaky-server --help   (a flaky HTTP service for your own tests)
       npx circuitry --help                (operate a fleet: list, status, overrides, watch, dashboard)

  --tenants N        tenants (default ${DEFAULT_SCENARIO.tenants})
  --failing N        tenants whose downstream fails (default ${DEFAULT_SCENARIO.failing})
  --workers N        workers shared by every tenant (default ${DEFAULT_SCENARIO.workers})
  --duration S       seconds per run (default ${DEFAULT_SCENARIO.durationMs / 1000})
  --rate N           jobs per second per tenant (default ${DEFAULT_SCENARIO.jobsPerSecond})
  --outage A-B       the outage, as fractions of the run (default ${DEFAULT_SCENARIO.outage.join('-')})
  --pattern P        how the failing downstream fails during the outage (default down):
                       down        every call fails (after ${DEFAULT_SCENARIO.failMs} ms, like a timeout)
                       rate:R      a share R (0-1] of calls fail, drawn from the seed
                       sssff...    a fixed cycle of successes (s) and failures (f),
                                   followed by each worker
                     The breakers trip on 5 consecutive failures.
  --seed N           seeds the failure draws and the breakers' jitter (default ${DEFAULT_SCENARIO.seed})
  --redis URL        run the workers as separate processes whose breakers share state
                     through a RedisStore at URL (e.g. redis://127.0.0.1:6379)
  --json             print the results as JSON instead of a table
  --html FILE        also write a self-contained HTML report with timelines
  --help             this text
`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${HELP}`);
  process.exit(2);
}

function positive(name: string, value: string | undefined, fallback: number, integer = true): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    fail(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

const FLAKY_HELP = `circuitry flaky-server: an HTTP service that fails on purpose, for integration and
load tests (startFlakyServer from circuitry/testing). Every path answers 200, or the failure
status; GET /__stats answers the counts.

Usage: npx circuitry flaky-server [options]

  --port N           port to listen on (default 8080; 0 picks a free one)
  --host H           address to bind (default 127.0.0.1)
  --rate R           share of requests that fail, 0-1 (default 0.5)
  --seed N           seed of the rate's draws (default 1)
  --pattern P        a fixed cycle instead of a rate: s succeeds, f fails (e.g. sssff)
  --status N         status of a failed request (default 503)
  --latency MS       delay before a success (default 0)
  --fail-latency MS  delay before a failure (default: --latency)
`;

async function flakyServer(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        rate: { type: 'string', default: '0.5' },
        seed: { type: 'string' },
        pattern: { type: 'string' },
        status: { type: 'string' },
        latency: { type: 'string' },
        'fail-latency': { type: 'string' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${FLAKY_HELP}`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(FLAKY_HELP);
    return;
  }
  const number = (value: string | undefined): number | undefined =>
    value === undefined ? undefined : Number(value);
  let server;
  try {
    server = await startFlakyServer({
      port: Number(parsed.port),
      host: parsed.host,
      ...(parsed.pattern === undefined ? { failureRate: Number(parsed.rate) } : { pattern: parsed.pattern }),
      ...(parsed.seed === undefined ? {} : { seed: Number(parsed.seed) }),
      ...(parsed.status === undefined ? {} : { failStatus: Number(parsed.status) }),
      ...(parsed.latency === undefined ? {} : { latencyMs: number(parsed.latency) }),
      ...(parsed['fail-latency'] === undefined ? {} : { failLatencyMs: number(parsed['fail-latency']) }),
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${FLAKY_HELP}`);
    process.exit(2);
  }
  const running = server;
  process.stdout.write(
    `flaky server on ${running.url} (${parsed.pattern === undefined ? `failing ${Number(parsed.rate) * 100}% of requests` : `pattern ${parsed.pattern}`}); Ctrl-C stops it\n`,
  );
  await new Promise<void>((resolve) =>
    process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()),
  );
  await running.close();
  const stats = running.stats();
  process.stdout.write(`\nanswered ${stats.requests} requests, ${stats.failures} failed\n`);
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'flaky-server') return flakyServer(argv.slice(1));
  const args = argv[0] === 'demo' ? argv.slice(1) : argv;
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        tenants: { type: 'string' },
        failing: { type: 'string' },
        workers: { type: 'string' },
        duration: { type: 'string' },
        rate: { type: 'string' },
        outage: { type: 'string' },
        pattern: { type: 'string' },
        seed: { type: 'string' },
        redis: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
  if (parsed.help) {
    process.stdout.write(HELP);
    return;
  }
  const tenants = positive('tenants', parsed.tenants, DEFAULT_SCENARIO.tenants);
  const failing = parsed.failing === '0' ? 0 : positive('failing', parsed.failing, DEFAULT_SCENARIO.failing);
  if (failing >= tenants) fail('--failing must leave at least one healthy tenant');
  let outage = DEFAULT_SCENARIO.outage;
  if (parsed.outage !== undefined) {
    const m = /^(0?\.\d+|0)-(0?\.\d+|1)$/.exec(parsed.outage);
    if (m === null || Number(m[1]) >= Number(m[2]))
      fail(`--outage must be A-B with 0 <= A < B <= 1, got ${parsed.outage}`);
    outage = [Number(m[1]), Number(m[2])];
  }
  let pattern: FailurePattern = DEFAULT_SCENARIO.pattern;
  if (parsed.pattern !== undefined && parsed.pattern !== 'down') {
    const rate = /^rate:(.+)$/.exec(parsed.pattern);
    if (rate !== null) {
      const r = Number(rate[1]);
      if (!(r > 0 && r <= 1)) fail(`--pattern rate:R needs 0 < R <= 1, got ${parsed.pattern}`);
      pattern = { kind: 'rate', rate: r };
    } else if (/^[sf]*f[sf]*$/.test(parsed.pattern)) {
      pattern = { kind: 'pattern', pattern: parsed.pattern };
    } else {
      fail(
        `--pattern must be down, rate:R or a string of s and f with at least one f, got ${parsed.pattern}`,
      );
    }
  }
  let seed = DEFAULT_SCENARIO.seed;
  if (parsed.seed !== undefined) {
    seed = Number(parsed.seed);
    if (!Number.isSafeInteger(seed)) fail(`--seed must be an integer, got ${JSON.stringify(parsed.seed)}`);
  }
  const scenario: Scenario = {
    ...DEFAULT_SCENARIO,
    tenants,
    failing,
    workers: positive('workers', parsed.workers, DEFAULT_SCENARIO.workers),
    durationMs: positive('duration', parsed.duration, DEFAULT_SCENARIO.durationMs / 1000, false) * 1000,
    jobsPerSecond: positive('rate', parsed.rate, DEFAULT_SCENARIO.jobsPerSecond),
    outage,
    pattern,
    seed,
  };

  const deployment: Deployment =
    parsed.redis === undefined
      ? { kind: 'in-process' }
      : { kind: 'processes', redisUrl: parsed.redis, prefix: `circuitry-demo:${process.pid}:${Date.now()}:` };

  const tty = process.stderr.isTTY && !parsed.json;
  const total = scenario.durationMs / 1000;
  let lastLine = -1;
  const progress =
    (label: string) =>
    (p: Progress): void => {
      const text = `calls to the failing downstream ${p.wastedCalls}, deferred ${p.deferred}, breakers open ${p.open}`;
      if (tty) {
        const width = 24;
        const done = Math.min(width, Math.round((width * p.elapsedMs) / scenario.durationMs));
        const bar = `[${'#'.repeat(done)}${'.'.repeat(width - done)}]`;
        process.stderr.write(
          `\r${label.padEnd(26)} ${bar} ${(p.elapsedMs / 1000).toFixed(1)}/${total} s  ${text}\x1b[K`,
        );
      } else {
        // Plain lines, about every two seconds, for logs and pipes.
        const line = Math.floor(p.elapsedMs / 2_000);
        if (line !== lastLine)
          process.stderr.write(`${label}: ${(p.elapsedMs / 1000).toFixed(1)}/${total} s, ${text}\n`);
        lastLine = line;
      }
    };
  const runs: Array<{ label: string; withBreakers: boolean }> = [
    { label: 'without breakers', withBreakers: false },
    { label: 'with per-tenant breakers', withBreakers: true },
  ];
  const results = [];
  for (const { label, withBreakers } of runs) {
    lastLine = -1;
    let factory: BreakerFactory | undefined;
    const result = await runQueue(scenario, {
      withBreakers,
      deployment,
      makeBreakers: () => {
        factory = new BreakerFactory(breakerOptions(scenario, undefined));
        const f = factory;
        return Array.from({ length: scenario.tenants }, (_, i) => f.breakerFor(tenantName(i)));
      },
      onProgress: progress(label),
    });
    await factory?.close();
    if (tty) process.stderr.write('\n');
    results.push(result);
  }
  const [without, withBreakers] = results as [RunResult, RunResult];
  if (tty) process.stderr.write('\n');

  const report: DemoReport = {
    scenario,
    store:
      parsed.redis === undefined
        ? 'in memory, one process'
        : `Redis at ${parsed.redis}, ${scenario.workers} worker processes`,
    without,
    with: withBreakers,
  };
  if (parsed.json) {
    const { timeline: _a, ...a } = without;
    const { timeline: _b, ...b } = withBreakers;
    process.stdout.write(
      `${JSON.stringify({ scenario, store: report.store, without: a, with: b }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(`${renderText(report)}\n`);
  }
  if (parsed.html !== undefined) {
    writeFileSync(parsed.html, renderHtml(report));
    process.stderr.write(`wrote ${parsed.html}\n`);
  }
}

await main(process.argv.slice(2));
