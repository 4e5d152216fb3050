#!/usr/bin/env node
/**
 * The demo: `npm start` in a clone, `npx circuitry demo` where the package is installed.
 * A multi-tenant job queue runs twice, without and with per-tenant breakers, and the comparison
 * is printed (or written as JSON or HTML). The queue is simulated in this process, or in worker
 * processes sharing a RedisStore (`--redis`), or is a real BullMQ queue (`--bullmq`).
 */
import { writeFileSync } from 'node:fs';

import type * as BullmqDemo from './bullmq.js';
import type { BullmqDeployment } from './bullmq.js';
import { startDemoDashboard } from './dashboard.js';
import { DemoError } from './demo-error.js';
import { flakyServer } from './flaky-server-command.js';
import { factoryMetrics, startMetricsServer } from './metrics-server.js';
import type { MetricsServer, MetricsSource } from './metrics-server.js';
import { HELP, parseDemoArgs } from './options.js';
import type { DemoOptions } from './options.js';
import { checkRedis, maskPassword } from './redis-connection.js';
import { renderHtml, renderJson, renderText } from './report.js';
import type { DemoReport } from './report.js';
import { VARIANTS, experimentOf, runQueue } from './simulation.js';
import type { Deployment, Progress, RunResult } from './simulation.js';
import { variantBreakers, variantLabel } from './variants.js';

/** Where the runs happen: a `Deployment` of the simulated queue, or a BullMQ queue. */
type Mode =
  | { readonly kind: 'simulated'; readonly deployment: Deployment }
  | { readonly kind: 'bullmq'; readonly deployment: BullmqDeployment };

/** Progress on stderr: a bar redrawn in place on a terminal, a plain line every 2 s otherwise. */
function progressPrinter(options: DemoOptions): (label: string) => (p: Progress) => void {
  const { scenario } = options;
  const tty = process.stderr.isTTY && options.json !== '-';
  const total = scenario.durationMs / 1000;
  return (label) => {
    let lastLine = -1;
    return (p) => {
      const left = p.left === undefined ? '' : `, draining: ${p.left} jobs left`;
      const calls =
        p.tooManyRequests === undefined
          ? `calls to the failing downstream ${p.wastedCalls}`
          : `429s from the downstream ${p.tooManyRequests}`;
      const text = `${calls}, jobs deferred ${p.jobsDeferred}, deferrals ${p.deferrals}, breakers open ${p.open}${left}`;
      const elapsed = Math.min(p.elapsedMs, scenario.durationMs) / 1000;
      if (tty) {
        const width = 24;
        const done = Math.min(width, Math.round((width * p.elapsedMs) / scenario.durationMs));
        const bar = `[${'#'.repeat(done)}${'.'.repeat(width - done)}]`;
        process.stderr.write(`\r${label.padEnd(26)} ${bar} ${elapsed.toFixed(1)}/${total} s  ${text}\x1b[K`);
      } else {
        const line = Math.floor(p.elapsedMs / 2_000);
        if (line !== lastLine) process.stderr.write(`${label}: ${elapsed.toFixed(1)}/${total} s, ${text}\n`);
        lastLine = line;
      }
    };
  };
}

function storeDescription(options: DemoOptions, mode: Mode): string {
  const workers = `${options.scenario.workers} worker processes`;
  if (mode.kind === 'bullmq') {
    return `BullMQ queue in Redis at ${maskPassword(mode.deployment.redisUrl)}, ${workers}; breakers in a RedisStore`;
  }
  return mode.deployment.kind === 'in-process'
    ? 'in memory, one process'
    : `Redis at ${maskPassword(mode.deployment.redisUrl)}, ${workers}`;
}

async function demo(options: DemoOptions): Promise<void> {
  const metricsWanted = options.metricsPort !== undefined;
  let mode: Mode = { kind: 'simulated', deployment: { kind: 'in-process' } };
  // What the demo opened, closed in reverse order however it ends.
  const opened: Array<() => Promise<void>> = [];
  // Ctrl-C (or SIGTERM) during a BullMQ run stops it and removes its keys before exiting.
  const interrupt = new AbortController();
  const onSignal = (): void => interrupt.abort();
  let stopSignalCleanup = (): unknown => undefined;
  try {
    if (options.redisUrl !== undefined) {
      // Reachable before anything starts, or one line and exit 1.
      await checkRedis(options.redisUrl);
      if (options.bullmq) {
        const { bullmqPrefixes } = await loadBullmq();
        const { removeKeys } = await import('./redis-keys.js');
        const deployment = { redisUrl: options.redisUrl, ...bullmqPrefixes(), metrics: metricsWanted };
        mode = { kind: 'bullmq', deployment };
        process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
        opened.push(async () => {
          process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
          const removed = await removeKeys(deployment.redisUrl, `${deployment.bullPrefix}:`);
          process.stderr.write(
            `removed the demo's ${removed} keys (${deployment.bullPrefix}:*) from Redis\n`,
          );
        });
      } else {
        const prefix = `circuitry-demo:${process.pid}:${Date.now()}:`;
        const redisUrl = options.redisUrl;
        mode = {
          kind: 'simulated',
          deployment: { kind: 'processes', redisUrl, prefix, metrics: metricsWanted },
        };
        // The breakers' keys go when the demo ends, as --bullmq's do; on Ctrl-C during a run too
        // (then exit 130; once the runs are over, Ctrl-C only stops the dashboard).
        const { removeKeys } = await import('./redis-keys.js');
        let removing: Promise<void> | undefined;
        const removeOnce = (): Promise<void> =>
          (removing ??= removeKeys(redisUrl, prefix).then((removed) => {
            process.stderr.write(`removed the demo's ${removed} keys (${prefix}*) from Redis\n`);
          }));
        const onRedisSignal = (): void => void removeOnce().finally(() => process.exit(130));
        process.on('SIGINT', onRedisSignal).on('SIGTERM', onRedisSignal);
        stopSignalCleanup = () => process.off('SIGINT', onRedisSignal).off('SIGTERM', onRedisSignal);
        opened.push(async () => {
          stopSignalCleanup();
          await removeOnce();
        });
      }
    }
    const metrics =
      options.metricsPort === undefined ? undefined : await startMetricsServer(options.metricsPort);
    if (metrics !== undefined) {
      opened.push(() => metrics.close());
      const whose =
        mode.kind === 'bullmq' || mode.deployment.kind === 'processes'
          ? 'summed over the worker processes'
          : 'this process';
      process.stderr.write(`Prometheus metrics at ${metrics.url} (${whose}; from the run with breakers)\n`);
    }
    const storePrefix =
      mode.kind === 'bullmq'
        ? mode.deployment.storePrefix
        : mode.deployment.kind === 'processes'
          ? mode.deployment.prefix
          : undefined;
    const dashboard =
      options.dashboardPort === undefined || options.redisUrl === undefined || storePrefix === undefined
        ? undefined
        : await startDemoDashboard(options.redisUrl, storePrefix, options.dashboardPort);
    if (dashboard !== undefined) {
      opened.push(() => dashboard.close());
      process.stderr.write(
        `circuitry dashboard for ${dashboard.description}\n` +
          `  open it now: ${dashboard.urlWithActions}\n` +
          `  (read-only: ${dashboard.url}; the tenants' breakers appear in the run with breakers)\n`,
      );
    }
    await runAll(options, mode, metrics, interrupt.signal);
    stopSignalCleanup();
    if (dashboard !== undefined) {
      process.stderr.write(`\nThe dashboard stays open at ${dashboard.urlWithActions}; Ctrl-C stops it.\n`);
      await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
    }
  } finally {
    for (const close of opened.reverse()) await close();
  }
}

async function loadBullmq(): Promise<typeof BullmqDemo> {
  try {
    return await import('./bullmq.js');
  } catch (error) {
    throw new DemoError(
      1,
      `--bullmq needs the bullmq and ioredis packages (npm install bullmq ioredis): ${String(error)}`,
    );
  }
}

async function runAll(
  options: DemoOptions,
  mode: Mode,
  metrics: MetricsServer | undefined,
  signal: AbortSignal,
): Promise<void> {
  const { scenario } = options;
  const tty = process.stderr.isTTY && options.json !== '-';
  const progress = progressPrinter(options);
  const bullmq = mode.kind === 'bullmq';
  const results: RunResult[] = [];
  for (const variant of VARIANTS[experimentOf(scenario)]) {
    const withBreakers = variant !== 'none';
    const label = variant === 'none' ? 'without breakers' : `with ${variantLabel(variant, scenario)}`;
    const onMetrics =
      metrics !== undefined && withBreakers
        ? { onMetrics: (source: MetricsSource) => metrics.serve(source) }
        : {};
    let result: RunResult;
    if (mode.kind === 'bullmq') {
      const { runBullmq, interrupted } = await loadBullmq();
      if (signal.aborted) throw interrupted();
      result = await runBullmq(scenario, {
        withBreakers,
        deployment: mode.deployment,
        queue: withBreakers ? 'with-breakers' : 'without-breakers',
        onProgress: progress(label),
        signal,
        ...onMetrics,
      });
    } else {
      // In this process, one factory per run with breakers (the first run has none).
      const made = mode.deployment.kind === 'in-process' ? variantBreakers(variant, scenario) : undefined;
      if (made !== undefined && metrics !== undefined) {
        const read = await factoryMetrics(made.factory);
        metrics.serve(async () => [await read()]);
      }
      result = await runQueue(scenario, {
        withBreakers,
        variant,
        deployment: mode.deployment,
        ...(made === undefined ? {} : { makeBreakers: made.breakers }),
        onProgress: progress(label),
        ...onMetrics,
      });
      await made?.factory.close();
    }
    if (tty) process.stderr.write('\n');
    results.push(result);
  }
  if (tty) process.stderr.write('\n');

  const report: DemoReport = {
    scenario,
    store: storeDescription(options, mode),
    runs: results,
    ...(bullmq ? { bullmq: true } : {}),
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
    // One line, whatever failed: a usage error (2), an unreachable store or a failed run (1),
    // an interrupted one (130, as a shell reports Ctrl-C).
    const code = error instanceof DemoError ? error.exitCode : 1;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(
      `circuitry demo: ${message.replace(/\s*\n\s*/g, ' ')}${code === 2 ? ' (--help lists the options)' : ''}\n`,
    );
    process.exit(code);
  }
}

await main(process.argv.slice(2));
