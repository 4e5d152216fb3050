#!/usr/bin/env node
/**
 * The demo: `npm start` in a clone, `npx circuitry demo` where the package is installed.
 * A simulated multi-tenant job queue runs twice, without and with per-tenant breakers, and the
 * comparison is printed (or written as JSON or HTML).
 */
import { writeFileSync } from 'node:fs';

import { BreakerFactory } from '../factory.js';
import { startDemoDashboard } from './dashboard.js';
import { flakyServer } from './flaky-server-command.js';
import { factoryMetrics, startMetricsServer } from './metrics-server.js';
import type { MetricsServer, MetricsSource } from './metrics-server.js';
import { DemoError, HELP, parseDemoArgs } from './options.js';
import type { DemoOptions } from './options.js';
import { checkRedis, maskPassword } from './redis-connection.js';
import { renderHtml, renderJson, renderText } from './report.js';
import type { DemoReport } from './report.js';
import { breakerOptions, runQueue, tenantBreaker } from './simulation.js';
import type { Deployment, Progress, RunResult, TenantContext } from './simulation.js';

/** Progress on stderr: a bar redrawn in place on a terminal, a plain line every 2 s otherwise. */
function progressPrinter(options: DemoOptions): (label: string) => (p: Progress) => void {
  const { scenario } = options;
  const tty = process.stderr.isTTY && options.json !== '-';
  const total = scenario.durationMs / 1000;
  return (label) => {
    let lastLine = -1;
    return (p) => {
      const text = `calls to the failing downstream ${p.wastedCalls}, deferred ${p.deferred}, breakers open ${p.open}`;
      if (tty) {
        const width = 24;
        const done = Math.min(width, Math.round((width * p.elapsedMs) / scenario.durationMs));
        const bar = `[${'#'.repeat(done)}${'.'.repeat(width - done)}]`;
        process.stderr.write(
          `\r${label.padEnd(26)} ${bar} ${(p.elapsedMs / 1000).toFixed(1)}/${total} s  ${text}\x1b[K`,
        );
      } else {
        const line = Math.floor(p.elapsedMs / 2_000);
        if (line !== lastLine)
          process.stderr.write(`${label}: ${(p.elapsedMs / 1000).toFixed(1)}/${total} s, ${text}\n`);
        lastLine = line;
      }
    };
  };
}

async function demo(options: DemoOptions): Promise<void> {
  const prefix = `circuitry-demo:${process.pid}:${Date.now()}:`;
  let deployment: Deployment = { kind: 'in-process' };
  if (options.redisUrl !== undefined) {
    // Reachable before anything starts, or one line and exit 1.
    await checkRedis(options.redisUrl);
    deployment = {
      kind: 'processes',
      redisUrl: options.redisUrl,
      prefix,
      metrics: options.metricsPort !== undefined,
    };
  }
  const opened: Array<() => Promise<void>> = [];
  try {
    const metrics =
      options.metricsPort === undefined ? undefined : await startMetricsServer(options.metricsPort);
    if (metrics !== undefined) {
      opened.push(() => metrics.close());
      process.stderr.write(
        `Prometheus metrics at ${metrics.url} (${deployment.kind === 'processes' ? 'summed over the worker processes' : 'this process'}; from the run with breakers)\n`,
      );
    }
    const dashboard =
      options.dashboardPort === undefined || deployment.kind !== 'processes'
        ? undefined
        : await startDemoDashboard(deployment.redisUrl, prefix, options.dashboardPort);
    if (dashboard !== undefined) {
      opened.push(() => dashboard.close());
      process.stderr.write(
        `circuitry dashboard for ${dashboard.description}\n` +
          `  open it now: ${dashboard.urlWithActions}\n` +
          `  (read-only: ${dashboard.url}; the tenants' breakers appear in the run with breakers)\n`,
      );
    }
    await runBoth(options, deployment, metrics);
    if (dashboard !== undefined) {
      process.stderr.write(`\nThe dashboard stays open at ${dashboard.urlWithActions}; Ctrl-C stops it.\n`);
      await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
    }
  } finally {
    for (const close of opened.reverse()) await close();
  }
}

async function runBoth(
  options: DemoOptions,
  deployment: Deployment,
  metrics: MetricsServer | undefined,
): Promise<void> {
  const { scenario } = options;

  const tty = process.stderr.isTTY && options.json !== '-';
  const progress = progressPrinter(options);
  const runs: Array<{ label: string; withBreakers: boolean }> = [
    { label: 'without breakers', withBreakers: false },
    { label: 'with per-tenant breakers', withBreakers: true },
  ];
  const results: RunResult[] = [];
  for (const { label, withBreakers } of runs) {
    // In this process, one factory for the run with breakers (the other has none).
    const factory =
      withBreakers && deployment.kind === 'in-process'
        ? new BreakerFactory<TenantContext>(breakerOptions(scenario, undefined))
        : undefined;
    if (factory !== undefined && metrics !== undefined) {
      const read = await factoryMetrics(factory);
      metrics.serve(async () => [await read()]);
    }
    const result = await runQueue(scenario, {
      withBreakers,
      deployment,
      makeBreakers: () =>
        factory === undefined
          ? []
          : Array.from({ length: scenario.tenants }, (_, i) => tenantBreaker(factory, i)),
      onProgress: progress(label),
      ...(metrics !== undefined && withBreakers
        ? { onMetrics: (source: MetricsSource) => metrics.serve(source) }
        : {}),
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
      options.redisUrl === undefined
        ? 'in memory, one process'
        : `Redis at ${maskPassword(options.redisUrl)}, ${scenario.workers} worker processes`,
    without,
    with: withBreakers,
  };
  if (options.json === '-') {
    process.stdout.write(renderJson(report));
  } else {
    process.stdout.write(`${renderText(report)}\n`);
  }
  if (options.json !== undefined && options.json !== '-') {
    writeFileSync(options.json, renderJson(report));
    process.stderr.write(`wrote ${options.json}\n`);
  }
  if (options.html !== undefined) {
    writeFileSync(options.html, renderHtml(report));
    process.stderr.write(`wrote ${options.html}\n`);
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'flaky-server') return flakyServer(argv.slice(1));
  const args = argv[0] === 'demo' ? argv.slice(1) : argv;
  try {
    const options = parseDemoArgs(args);
    if (options === 'help') {
      process.stdout.write(HELP);
      return;
    }
    await demo(options);
  } catch (error) {
    // One line, whatever failed: a usage error (2), an unreachable store or a failed run (1).
    const code = error instanceof DemoError ? error.exitCode : 1;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(
      `circuitry demo: ${message.replace(/\s*\n\s*/g, ' ')}${code === 2 ? ' (--help lists the options)' : ''}\n`,
    );
    process.exit(code);
  }
}

await main(process.argv.slice(2));
