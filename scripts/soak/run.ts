/**
 * `npm run soak`: 8 worker processes hammer one breaker in a Redis that is killed (SIGKILL) and
 * restarted every few seconds, for 60 s (SOAK_SECONDS to change). Redis runs with an fsync'd
 * append-only file, so what it acknowledged survives a kill. At the end every outcome the
 * workers executed must be in Redis exactly once: exits 1 on any lost or double-counted outcome,
 * crash, wrong result or rejection. (A write Redis applied just before it was killed, whose reply
 * never came, is sent again by ioredis or by the breaker; its batch id makes the re-send count
 * nothing.)
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';

import { RedisStore } from '../../src/stores/redis/index.js';
import { policyOf } from '../../src/testing/conformance.js';
import { failureRate } from '../../src/core/policy.js';
import { RedisServer } from '../../test/helpers/redis-server.js';

const WORKERS = 8;
const CALLERS = 20;
const seconds = Number(process.env.SOAK_SECONDS ?? 60);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Tally {
  value: number;
  boom: number;
  rejected: number;
  wrong: number;
  busyAtEnd: boolean;
}

const server = await RedisServer.start(['--appendonly', 'yes', '--appendfsync', 'always']);
const prefix = `soak-${randomUUID()}:`;
let crashes = 0;
const workers = Array.from({ length: WORKERS }, () => {
  const child = fork(
    new URL('./worker.ts', import.meta.url).pathname,
    [server.url, prefix, String(CALLERS)],
    {
      execArgv: ['--import', 'tsx'],
    },
  );
  child.on('exit', (code) => {
    if (code !== 0) crashes += 1;
  });
  return child;
});

// Redis is first killed once every worker has heard from it: a process that starts while its store
// is down admits one trial call at a time (cold-start safety), which rejects the others by design.
await Promise.all(
  workers.map((child) => new Promise<void>((resolve) => child.once('message', () => resolve()))),
);
console.log(`soak: ${WORKERS} workers x ${CALLERS} callers for ${seconds} s, Redis killed every few seconds`);
const end = Date.now() + seconds * 1_000;
let kills = 0;
while (Date.now() < end - 4_000) {
  await sleep(2_000 + Math.random() * 2_000);
  await server.kill();
  kills += 1;
  await sleep(500 + Math.random() * 1_000);
  await server.restart();
  process.stdout.write(`  killed and restarted Redis (${kills})\n`);
}
await sleep(Math.max(0, end - Date.now()));

const tallies = await Promise.all(
  workers.map(
    (child) =>
      new Promise<Tally>((resolve) => {
        child.once('message', (message: { tally: Tally }) => resolve(message.tally));
        child.send({ cmd: 'finish' });
      }),
  ),
);
const client = server.client();
const snapshot = await new RedisStore({ client, prefix }).inspect(
  'soak',
  policyOf({ trip: failureRate(1, { minimumCalls: 1_000_000_000, windowMs: 3_600_000 }) }),
);
client.disconnect();
await server.stop();

const sum = (field: Exclude<keyof Tally, 'busyAtEnd'>): number =>
  tallies.reduce((total, t) => total + t[field], 0);
const executed = { successes: sum('value'), failures: sum('boom') };
const counted = { successes: snapshot?.counts.successes ?? 0, failures: snapshot?.counts.failures ?? 0 };
const lost =
  Math.max(0, executed.successes - counted.successes) + Math.max(0, executed.failures - counted.failures);
const extra =
  Math.max(0, counted.successes - executed.successes) + Math.max(0, counted.failures - executed.failures);
const report = {
  seconds,
  kills,
  executed,
  counted,
  lost,
  doubleCounted: extra,
  rejected: sum('rejected'),
  wrongOutcomes: sum('wrong'),
  crashes,
  workersWithUnwrittenOutcomes: tallies.filter((t) => t.busyAtEnd).length,
};
console.log(JSON.stringify(report, null, 2));
process.exit(
  lost === 0 &&
    extra === 0 &&
    crashes === 0 &&
    report.wrongOutcomes === 0 &&
    report.rejected === 0 &&
    report.workersWithUnwrittenOutcomes === 0
    ? 0
    : 1,
);
