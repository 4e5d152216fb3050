/**
 * `npm run load`: N worker processes call a flaky HTTP service (`startFlakyServer` from
 * circuitry/testing) through one breaker whose state they share in Redis, while the service goes
 * through phases: up with 1% errors, down, flaky (30% errors), up with 1% errors. Prints, every second, the requests sent, the
 * rejections (calls the breaker refused without sending), the failures and the breaker's state;
 * then the totals per worker and every state change with the process that won it. The Node
 * counterpart of the Python seed's locust setup.
 *
 *   npm run load -- [--workers 4] [--callers 8] [--duration 12] [--redis redis://127.0.0.1:6379]
 *
 * Exits 1 if a transition was reported twice (a change that does not follow the one before) or
 * if the breaker never opened.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Redis } from 'ioredis';

import { BreakerFactory } from '../src/factory.js';
import { failureRate } from '../src/core/policy.js';
import { isCircuitOpenError } from '../src/errors.js';
import { RedisStore } from '../src/stores/redis/index.js';
import { startFlakyServer } from '../src/testing/flaky-server.js';
import type { FlakyBehaviour } from '../src/testing/flaky-server.js';

interface Counts {
  requests: number;
  successes: number;
  failures: number;
  rejections: number;
}

type FromWorker =
  | { readonly t: 'ready' }
  | { readonly t: 'counts'; readonly counts: Counts }
  | { readonly t: 'state'; readonly from: string; readonly to: string; readonly at: number }
  | { readonly t: 'done'; readonly counts: Counts };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const zero = (): Counts => ({ requests: 0, successes: 0, failures: 0, rejections: 0 });

/** The same breaker options in every process: one policy for the shared state. */
const breakerOptions = (store: RedisStore) => ({
  store,
  trip: failureRate(0.5, { minimumCalls: 20, windowMs: 1_000 }),
  openMs: 500,
  backoff: { multiplier: 2, maxOpenMs: 2_000 },
  halfOpenMaxCalls: 2,
  successThreshold: 2,
  probeLeaseMs: 2_000,
  timeoutMs: 1_000,
});

async function worker(): Promise<void> {
  const [, , , url, redisUrl, prefix, callersArg] = process.argv;
  const send = (message: FromWorker): void => {
    if (process.connected) process.send!(message, undefined, {}, () => undefined);
  };
  const client = new Redis(redisUrl!, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  const factory = new BreakerFactory(breakerOptions(new RedisStore({ client, prefix: prefix! })));
  const breaker = factory.breakerFor('flaky-http');
  // Only the process that won a transition hears of it here: each change is reported once.
  breaker.onStateChange((event) => send({ t: 'state', from: event.from, to: event.to, at: Date.now() }));
  let stopping = false;
  process.on('message', (message: { t: string }) => {
    if (message.t === 'stop') stopping = true;
  });
  process.on('disconnect', () => (stopping = true));
  const counts = zero();
  const caller = async (): Promise<void> => {
    while (!stopping) {
      try {
        await breaker.execute(async (signal) => {
          counts.requests += 1;
          const response = await fetch(`${url}/charge`, { signal });
          await response.arrayBuffer();
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
        });
        counts.successes += 1;
      } catch (error) {
        if (isCircuitOpenError(error)) {
          counts.rejections += 1;
          // What a queue worker would do with retryAfterMs, shortened so the test stays busy.
          await sleep(Math.min(error.retryAfterMs, 20));
        } else {
          counts.failures += 1;
        }
      }
    }
  };
  const ticker = setInterval(() => send({ t: 'counts', counts: { ...counts } }), 250);
  send({ t: 'ready' });
  await Promise.all(Array.from({ length: Number(callersArg) }, () => caller()));
  clearInterval(ticker);
  await factory.close();
  await client.quit();
  send({ t: 'done', counts });
  process.disconnect();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '4' },
      callers: { type: 'string', default: '8' },
      duration: { type: 'string', default: '12' },
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(
      'npm run load -- [--workers N] [--callers N per worker] [--duration S] [--redis URL]\n',
    );
    return;
  }
  const workers = Number(values.workers);
  const callers = Number(values.callers);
  const durationMs = Number(values.duration) * 1_000;
  if (![workers, callers, durationMs].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error('--workers, --callers and --duration must be positive integers');
  }

  // The service's phases, as fractions of the run.
  const phases: Array<{ at: number; name: string; behaviour: FlakyBehaviour }> = [
    // Named for what the service does: "mostly up" still fails 1 call in 100, as real ones do.
    { at: 0, name: 'up, 1% err', behaviour: { failureRate: 0.01, latencyMs: 2 } },
    { at: 0.25, name: 'down', behaviour: { failureRate: 1, failLatencyMs: 20 } },
    { at: 0.55, name: 'flaky, 30% err', behaviour: { failureRate: 0.3, latencyMs: 2, failLatencyMs: 20 } },
    { at: 0.75, name: 'up, 1% err', behaviour: { failureRate: 0.01, latencyMs: 2 } },
  ];
  const server = await startFlakyServer(phases[0]!.behaviour);
  const prefix = `circuitry-load:${randomUUID()}:`;
  const self = fileURLToPath(import.meta.url);
  const latest = new Map<number, Counts>();
  const finals = new Map<number, Counts>();
  const changes: Array<{ worker: number; from: string; to: string; at: number }> = [];
  let state = 'closed';

  const children = Array.from({ length: workers }, (_, index) => {
    const child = fork(self, ['--worker', server.url, values.redis, prefix, String(callers)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('error', () => undefined); // a 'stop' to a worker that is already exiting
    const ready = new Promise<void>((resolve, reject) => {
      child.on('message', (message: FromWorker) => {
        if (message.t === 'ready') resolve();
        else if (message.t === 'counts') latest.set(index, message.counts);
        else if (message.t === 'done') finals.set(index, message.counts);
        else {
          changes.push({ worker: index, from: message.from, to: message.to, at: message.at });
          state = message.to;
        }
      });
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`worker ${index} exited ${code}`)),
      );
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return { child, ready, exited };
  });
  await Promise.all(children.map((c) => c.ready));

  const sum = (counts: Iterable<Counts>): Counts => {
    const total = zero();
    for (const c of counts) {
      total.requests += c.requests;
      total.successes += c.successes;
      total.failures += c.failures;
      total.rejections += c.rejections;
    }
    return total;
  };
  console.log(
    `load: ${workers} worker processes x ${callers} callers, one breaker shared in Redis (${values.redis}), ` +
      `${durationMs / 1000} s against ${server.url}`,
  );
  console.log('   t  service      requests/s  rejections/s  failures/s  breaker');
  const start = Date.now();
  let phase = 0;
  let previous = zero();
  let sentWhileDown = 0;
  let serverAtDown = 0;
  for (let second = 1; second * 1_000 <= durationMs; second++) {
    while (Date.now() - start < second * 1_000) {
      const next = phases[phase + 1];
      if (next !== undefined && Date.now() - start >= next.at * durationMs) {
        if (phases[phase]!.name === 'down') sentWhileDown += server.stats().requests - serverAtDown;
        phase += 1;
        server.configure(next.behaviour);
        if (next.name === 'down') serverAtDown = server.stats().requests;
      }
      await sleep(20);
    }
    const now = sum(latest.values());
    const rate = (key: keyof Counts): string => String(now[key] - previous[key]).padStart(12);
    console.log(
      `${String(second).padStart(4)}  ${phases[phase]!.name.padEnd(15)} ${rate('requests')}  ${rate('rejections')}${rate('failures')}  ${state}`,
    );
    previous = now;
  }
  for (const { child } of children) if (child.connected) child.send({ t: 'stop' }, () => undefined);
  await Promise.all(children.map((c) => c.exited));
  const served = server.stats();
  await server.close();

  const total = sum(finals.values());
  console.log('\nworker  requests  successes  failures  rejections');
  for (const [index, c] of [...finals.entries()].sort(([a], [b]) => a - b)) {
    console.log(
      `${String(index).padStart(6)}  ${String(c.requests).padStart(8)}  ${String(c.successes).padStart(9)}  ${String(c.failures).padStart(8)}  ${String(c.rejections).padStart(10)}`,
    );
  }
  console.log(
    ` total  ${String(total.requests).padStart(8)}  ${String(total.successes).padStart(9)}  ${String(total.failures).padStart(8)}  ${String(total.rejections).padStart(10)}`,
  );
  console.log(`the service answered ${served.requests} requests (${served.failures} failed)`);
  console.log(`\nstate changes (${changes.length}), each reported by the one process that won it:`);
  for (const c of changes) {
    console.log(
      `  ${((c.at - start) / 1000).toFixed(2).padStart(6)} s  ${c.from} -> ${c.to}  (worker ${c.worker})`,
    );
  }
  const downMs = (phases[2]!.at - phases[1]!.at) * durationMs;
  console.log(
    `requests that reached the service while it was down: ${sentWhileDown} in ${(downMs / 1000).toFixed(1)} s`,
  );

  // A transition reported twice shows as a change whose `from` is not the previous `to`.
  const duplicated = changes.filter((c, i) => i > 0 && changes[i - 1]!.to !== c.from);
  if (duplicated.length > 0) {
    console.error(`FAIL: ${duplicated.length} state changes do not follow the one before`);
    process.exitCode = 1;
  }
  if (!changes.some((c) => c.to === 'open')) {
    console.error('FAIL: the breaker never opened while the service was down');
    process.exitCode = 1;
  }
}

if (process.argv[2] === '--worker') await worker();
else await main();
