/**
 * `npm run flaky-server` in a clone, `npx circuitry flaky-server` where the package is installed:
 * `startFlakyServer` from circuitry/testing on a port, until Ctrl-C.
 */
import { parseArgs } from 'node:util';

import { startFlakyServer } from '../testing/flaky-server.js';

const FLAKY_HELP = `circuitry flaky-server: an HTTP service that fails on purpose, for integration and
load tests (startFlakyServer from circuitry/testing). Every path answers 200, or the failure
status; GET /__stats answers the counts.

Usage: npm run flaky-server -- [options]       (in a clone of the repository)
       npx circuitry flaky-server [options]    (where the package is installed)

  --port N           port to listen on (default 8080; 0 picks a free one)
  --host H           address to bind (default 127.0.0.1)
  --rate R           share of requests that fail, 0-1 (default 0.5)
  --seed N           seed of the rate's draws (default 1)
  --pattern P        a fixed cycle instead of a rate: s succeeds, f fails (e.g. sssff)
  --status N         status of a failed request (default 503)
  --latency MS       delay before a success (default 0)
  --fail-latency MS  delay before a failure (default: --latency)
`;

export async function flakyServer(args: string[]): Promise<void> {
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
