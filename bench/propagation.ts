/**
 * How fast an open reaches other processes: 7 child processes (bench/propagation-worker.ts) call a
 * breaker every millisecond through their own RedisStore; this process trips it with one failing
 * call (`consecutiveFailures(1)`) and each child reports when its breaker first rejected, and when
 * the raw pub/sub message reached a plain subscriber of its own. A new breaker name per trial,
 * warmed by every child before the trip.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

import { BreakerFactory, consecutiveFailures } from '../src/index.js';
import { RedisStore } from '../src/stores/redis/index.js';
import {
  down,
  median,
  noop,
  percentile,
  quick,
  results,
  sleep,
  swallow,
  targets,
  wallMs,
} from './harness.js';
import { REDIS_URL, connectRedis, deleteUnder } from './redis-server.js';

export type FromParent = { type: 'warm'; name: string; idle: boolean } | { type: 'stop' };
export type ToParent =
  | { type: 'started' }
  | { type: 'ready'; name: string }
  | {
      type: 'saw';
      name: string;
      breakerAt: number | null;
      rawAt: number | null;
      serverAt: number | null;
    }
  | { type: 'stopped'; calls: number; loopDelayP99Ms: number; loopDelayMaxMs: number };

const WORKERS = 7;
const TARGET = 'open reaching 7 processes that call every ms (pub/sub)';

/** Resolves with the next `count` messages of `type` from the workers, or rejects after `ms`. */
function collect<T extends ToParent['type']>(
  workers: readonly ChildProcess[],
  type: T,
  ms: number,
  accept: (m: Extract<ToParent, { type: T }>) => boolean = () => true,
): Promise<Extract<ToParent, { type: T }>[]> {
  return new Promise((resolve, reject) => {
    const got: Extract<ToParent, { type: T }>[] = [];
    const listeners: [ChildProcess, (m: ToParent) => void][] = [];
    const done = (error?: Error): void => {
      clearTimeout(timer);
      for (const [worker, listener] of listeners) worker.off('message', listener);
      if (error === undefined) resolve(got);
      else reject(error);
    };
    const timer = setTimeout(
      () => done(new Error(`${got.length} of ${workers.length} workers sent '${type}' within ${ms} ms`)),
      ms,
    );
    for (const worker of workers) {
      const listener = (m: ToParent): void => {
        if (m.type !== type || !accept(m as Extract<ToParent, { type: T }>)) return;
        got.push(m as Extract<ToParent, { type: T }>);
        worker.off('message', listener);
        if (got.length === workers.length) done();
      };
      listeners.push([worker, listener]);
      worker.on('message', listener);
    }
  });
}

export async function propagationCase(): Promise<void> {
  const client = await connectRedis('the open-propagation case');
  if (client === null) {
    targets.push({ case: TARGET, target: 'p99 ≤ 5 ms', measured: '', verdict: 'skipped', note: 'no Redis' });
    return;
  }
  const trials = quick ? 5 : 30;
  const prefix = `bench-${process.pid}:prop:`;
  const factory = new BreakerFactory({
    store: new RedisStore({ client, prefix }),
    trip: consecutiveFailures(1),
  });
  const workers = Array.from({ length: WORKERS }, () =>
    fork(new URL('./propagation-worker.ts', import.meta.url), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, REDIS_URL, BENCH_PREFIX: prefix },
    }),
  );
  const breakerDelays: number[] = [];
  const rawDelays: number[] = [];
  const afterReply: number[] = [];
  const idleRawDelays: number[] = [];
  const tripping: number[] = [];
  const fromServer: number[] = [];
  /** Per trial: the first and the last worker's breaker delay (is a late sample late for all?). */
  const firstOfTrial: number[] = [];
  const lastOfTrial: number[] = [];
  const rawFromServer: number[] = [];
  let missing = 0;
  try {
    await collect(workers, 'started', 60_000);
    // Trials with the workers calling every ms, then as many with them idle (only subscribed): how
    // long pub/sub delivery takes when the machine is not busy with the calls.
    for (let trial = 0; trial < 2 * trials; trial++) {
      const idle = trial >= trials;
      const name = `trial-${trial}`;
      const breaker = factory.breakerFor(name);
      await breaker.execute(noop);
      const ready = collect(workers, 'ready', 10_000, (m) => m.name === name);
      for (const worker of workers) worker.send({ type: 'warm', name, idle } satisfies FromParent);
      await ready;
      // Calls keep going for a while, and the trip falls anywhere between two ticks.
      await sleep(20 + Math.random() * 20);
      const saw = collect(workers, 'saw', 5_000, (m) => m.name === name);
      let failedAt = 0;
      await breaker
        .execute(() => {
          failedAt = wallMs();
          return Promise.reject(down);
        })
        .catch(swallow);
      // The parent knows it opened once the record's reply is back.
      const repliedAt = wallMs();
      if (!idle) tripping.push(repliedAt - failedAt);
      const reports = await saw;
      if (!idle) {
        const delays = reports.flatMap((r) => (r.breakerAt === null ? [] : [r.breakerAt - failedAt]));
        firstOfTrial.push(Math.min(...delays));
        lastOfTrial.push(Math.max(...delays));
      }
      for (const report of reports) {
        if (idle) {
          if (report.rawAt !== null) idleRawDelays.push(report.rawAt - failedAt);
          continue;
        }
        if (report.breakerAt === null) missing += 1;
        else {
          breakerDelays.push(report.breakerAt - failedAt);
          afterReply.push(report.breakerAt - repliedAt);
        }
        if (report.rawAt !== null) rawDelays.push(report.rawAt - failedAt);
        if (report.serverAt !== null) {
          if (report.breakerAt !== null) fromServer.push(report.breakerAt - report.serverAt);
          if (report.rawAt !== null) rawFromServer.push(report.rawAt - report.serverAt);
        }
      }
    }
    const stopped = collect(workers, 'stopped', 10_000);
    for (const worker of workers) worker.send({ type: 'stop' } satisfies FromParent);
    const stats = await stopped;
    const loopP99 = Math.max(...stats.map((s) => s.loopDelayP99Ms));
    const loopMax = Math.max(...stats.map((s) => s.loopDelayMaxMs));
    const c = `open propagation to ${WORKERS} processes calling every ms (${trials} opens, ms after the failing call)`;
    const fmt = (v: number[]): string =>
      `p50 ${median(v).toFixed(2)}, p99 ${percentile(v, 0.99).toFixed(2)}, max ${Math.max(...v).toFixed(2)}`;
    results.push(
      { case: c, library: 'breaker rejected (p50)', value: median(breakerDelays), unit: 'ms' },
      {
        case: c,
        library: 'breaker rejected (p99)',
        value: percentile(breakerDelays, 0.99),
        unit: 'ms',
        note: `${breakerDelays.length} samples${missing > 0 ? `, ${missing} never saw it` : ''}`,
      },
      { case: c, library: 'raw pub/sub message (p50)', value: median(rawDelays), unit: 'ms' },
      { case: c, library: 'raw pub/sub message (p99)', value: percentile(rawDelays, 0.99), unit: 'ms' },
      {
        case: c,
        library: 'raw pub/sub message, workers idle (p50)',
        value: median(idleRawDelays),
        unit: 'ms',
        note: 'control: the same opens with the workers not calling',
      },
      {
        case: c,
        library: 'raw pub/sub message, workers idle (p99)',
        value: percentile(idleRawDelays, 0.99),
        unit: 'ms',
      },
      {
        case: c,
        library: "the tripping process: failing call to its record's reply (p50)",
        value: median(tripping),
        unit: 'ms',
        note: `p99 ${percentile(tripping, 0.99).toFixed(2)} ms: the open exists on the server somewhere in this span`,
      },
      {
        case: c,
        library: "breaker rejected, after the server's open (p50)",
        value: median(fromServer),
        unit: 'ms',
        note: `p99 ${percentile(fromServer, 0.99).toFixed(2)} ms; the server's time is whole ms rounded down (up to 1 ms more)`,
      },
      {
        case: c,
        library: "raw pub/sub message, after the server's open (p50)",
        value: median(rawFromServer),
        unit: 'ms',
        note: `p99 ${percentile(rawFromServer, 0.99).toFixed(2)} ms`,
      },
      {
        case: c,
        library: 'breaker rejected, after the tripping reply (p50)',
        value: median(afterReply),
        unit: 'ms',
      },
      {
        case: c,
        library: 'first worker of each open (p50)',
        value: median(firstOfTrial),
        unit: 'ms',
        note: `p99 ${percentile(firstOfTrial, 0.99).toFixed(2)} ms; last worker of each open p50 ${median(lastOfTrial).toFixed(2)}, p99 ${percentile(lastOfTrial, 0.99).toFixed(2)} ms`,
      },
      {
        case: c,
        library: 'worker event-loop delay (worst p99 / max)',
        value: loopP99,
        unit: 'ms',
        note: `max ${loopMax.toFixed(1)} ms; ${stats.map((s) => s.calls).reduce((a, b) => a + b, 0)} calls by the workers`,
      },
    );
    const p99 = percentile(breakerDelays, 0.99);
    targets.push({
      case: TARGET,
      target: 'p99 ≤ 5 ms',
      measured: `breaker ${fmt(breakerDelays)} ms; raw pub/sub ${fmt(rawDelays)} ms (${breakerDelays.length} samples${missing > 0 ? `, ${missing} never saw it` : ''})`,
      verdict: missing === 0 && p99 <= 5 ? 'met' : 'missed',
      note: `per open, first worker ${fmt(firstOfTrial)} ms, last ${fmt(lastOfTrial)} ms; after the server's open: breaker ${fmt(fromServer)} ms, raw ${fmt(rawFromServer)} ms (server time in whole ms); tripping process's own record round trip p50 ${median(tripping).toFixed(2)} ms; workers idle (control): raw pub/sub ${fmt(idleRawDelays)} ms; workers' event-loop delay p99 up to ${loopP99.toFixed(1)} ms, max ${loopMax.toFixed(1)} ms`,
    });
  } catch (error) {
    targets.push({
      case: TARGET,
      target: 'p99 ≤ 5 ms',
      measured: '',
      verdict: 'skipped',
      note: `failed: ${error instanceof Error ? error.message : String(error)}`,
    });
  } finally {
    for (const worker of workers) if (worker.exitCode === null) worker.kill();
    await factory.close();
    await deleteUnder(client, prefix);
    client.disconnect();
  }
}
