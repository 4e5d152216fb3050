#!/usr/bin/env node
/**
 * The demo: `npm start` in a clone, `npx circuitry demo` where the package is installed.
 * A simulated multi-tenant job queue runs twice, without and with per-tenant breakers, and the
 * comparison is printed (or written as JSON or HTML).
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { BreakerFactory } from '../factory.js';
import { consecutiveFailures } from '../core/policy.js';
import type { Store } from '../store.js';
import { renderHtml, renderText } from './report.js';
import type { DemoReport } from './report.js';
import { DEFAULT_SCENARIO, runQueue } from './simulation.js';
import type { Scenario } from './simulation.js';

const HELP = `circuitry demo: a multi-tenant job queue with one failing downstream, run twice:
workers retrying failed jobs in place, then per-tenant circuit breakers deferring them.

Usage: npm start -- [options]        (or: npx circuitry demo [options])

  --tenants N        tenants (default ${DEFAULT_SCENARIO.tenants})
  --failing N        tenants whose downstream fails (default ${DEFAULT_SCENARIO.failing})
  --workers N        workers shared by every tenant (default ${DEFAULT_SCENARIO.workers})
  --duration S       seconds per run (default ${DEFAULT_SCENARIO.durationMs / 1000})
  --rate N           jobs per second per tenant (default ${DEFAULT_SCENARIO.jobsPerSecond})
  --outage A-B       the outage, as fractions of the run (default ${DEFAULT_SCENARIO.outage.join('-')})
  --redis URL        share breaker state through Redis (a RedisStore) instead of memory
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

export async function main(argv: string[]): Promise<void> {
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
  const scenario: Scenario = {
    ...DEFAULT_SCENARIO,
    tenants,
    failing,
    workers: positive('workers', parsed.workers, DEFAULT_SCENARIO.workers),
    durationMs: positive('duration', parsed.duration, DEFAULT_SCENARIO.durationMs / 1000, false) * 1000,
    jobsPerSecond: positive('rate', parsed.rate, DEFAULT_SCENARIO.jobsPerSecond),
    outage,
  };

  let store: Store | undefined;
  let close = (): Promise<void> => Promise.resolve();
  if (parsed.redis !== undefined) {
    const { Redis } = await import('ioredis');
    const { RedisStore } = await import('../stores/redis/index.js');
    const client = new Redis(parsed.redis, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    store = new RedisStore({ client, prefix: `circuitry-demo:${process.pid}:${Date.now()}:` });
    close = async () => void (await client.quit());
  }

  const tty = process.stderr.isTTY && !parsed.json;
  const progress = (label: string) => (elapsed: number, r: { wastedCalls: number; deferred: number }) => {
    const text = `${label}: ${(elapsed / 1000).toFixed(1)} / ${(scenario.durationMs / 1000).toFixed(0)} s, calls to the failing downstream ${r.wastedCalls}, deferred ${r.deferred}`;
    if (tty) process.stderr.write(`\r${text}   `);
    else if (Math.round(elapsed) % 2_000 < 250) process.stderr.write(`${text}\n`);
  };

  const without = await runQueue(scenario, null, progress('without breakers'));
  if (tty) process.stderr.write('\n');
  const factory = new BreakerFactory({
    ...(store === undefined ? {} : { store }),
    trip: consecutiveFailures(5),
    openMs: 1_000,
    backoff: { multiplier: 2, maxOpenMs: 2_000 },
    probeLeaseMs: 5_000,
  });
  const withBreakers = await runQueue(scenario, factory, progress('with per-tenant breakers'));
  if (tty) process.stderr.write('\n\n');
  await factory.close();
  await close();

  const report: DemoReport = {
    scenario,
    store: store === undefined ? 'in memory' : `Redis at ${parsed.redis}`,
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
