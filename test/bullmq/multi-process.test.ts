import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

import type { Reports, WorkerCommand, WorkerReport } from '../helpers/bullmq-worker.js';
import { RedisServer } from '../helpers/redis-server.js';

// Real BullMQ workers in 4 processes, each running withBreaker with per-tenant breakers shared in
// one RedisStore. Five tenants; in some runs one tenant's dependency is down for the first 1.5 s.

const WORKERS = 4;
const CONCURRENCY = 4;
const TENANTS = ['acme', 'globex', 'initech', 'umbrella', 'hooli'] as const;
const FAILING = 'acme';
const TRIP = 3; // consecutiveFailures(3) in the worker
const DOWN_MS = 1_500;

interface RunResult {
  readonly total: number;
  readonly starts: Array<Reports['start']>;
  readonly calls: Array<Reports['call']>;
  readonly deferred: Array<Reports['deferred']>;
  readonly interrupted: Array<Reports['interrupted']>;
  readonly completed: Array<Reports['completed']>;
  readonly failed: Array<Reports['failed']>;
  readonly transitions: Array<Reports['transition']>;
  readonly closed: Array<Reports['closed']>;
  readonly counts: Record<string, number>;
}

function p99(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0;
}

class Children {
  readonly reports: WorkerReport[] = [];
  private constructor(readonly children: ChildProcess[]) {}

  static async start(port: number): Promise<Children> {
    const children = Array.from({ length: WORKERS }, () =>
      fork(new URL('../helpers/bullmq-worker.ts', import.meta.url).pathname, [String(port)], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const all = new Children(children);
    for (const child of children) child.on('message', (report: WorkerReport) => all.reports.push(report));
    await Promise.all(children.map((child) => all.reply(child, 'ready')));
    return all;
  }

  /** Resolves with the next report of `child` that has `key`. */
  reply(child: ChildProcess, key: string): Promise<WorkerReport> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`a worker process exited with ${code}`));
      const onMessage = (report: WorkerReport): void => {
        if (!(key in report)) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(report);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }

  async ask(child: ChildProcess, command: WorkerCommand, key: string): Promise<WorkerReport> {
    const reply = this.reply(child, key);
    child.send(command);
    return reply;
  }

  async exit(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.send({ cmd: 'exit' } satisfies WorkerCommand);
            // A worker that does not exit on its own is killed: the file must end.
            setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
  }
}

describe('withBreaker: BullMQ workers in 4 processes, 5 tenants', { timeout: 90_000 }, () => {
  let server: RedisServer;
  let connection: Redis;
  let children: Children;
  let baselineP99 = 0;

  // Not useRedisServer: the server must outlive the worker processes, which are stopped first.
  before(async () => {
    server = await RedisServer.start();
    connection = server.client({ maxRetriesPerRequest: null });
    children = await Children.start(server.port);
  });
  after(async () => {
    await children?.exit();
    connection?.disconnect();
    await server?.stop();
  });

  /** Adds `perTenant` jobs per tenant, a round every `intervalMs`, and waits until all completed. */
  async function run(options: {
    failing: boolean;
    perTenant: number;
    intervalMs: number;
    workMs: number;
    closeOneAtMs?: number;
  }): Promise<RunResult> {
    const name = `sync-${randomUUID()}`;
    const queue = new Queue<{ tenantId: string }>(name, { connection });
    const from = children.reports.length;
    const prefix = `bullmq-${randomUUID()}:`; // one store for every worker of the run
    const t0 = Date.now() + 200;
    await Promise.all(
      children.children.map((child) =>
        children.ask(
          child,
          {
            cmd: 'start',
            queue: name,
            prefix,
            failingTenant: options.failing ? FAILING : null,
            downUntil: t0 + DOWN_MS,
            workMs: options.workMs,
            concurrency: CONCURRENCY,
          },
          'started',
        ),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 - Date.now())));
    const closing =
      options.closeOneAtMs === undefined
        ? Promise.resolve(undefined)
        : new Promise((resolve) => setTimeout(resolve, options.closeOneAtMs)).then(() =>
            children.ask(children.children[0]!, { cmd: 'close' }, 'closed'),
          );
    const total = options.perTenant * TENANTS.length;
    for (let round = 0; round < options.perTenant; round += 1) {
      await queue.addBulk(
        TENANTS.map((tenantId) => ({
          name: 'sync',
          data: { tenantId },
          // The work's own failures are retried by BullMQ; deferrals must not use these up.
          opts: { attempts: 20, backoff: { type: 'fixed', delay: 100 } },
        })),
      );
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
    const completedIds = (): Set<string> =>
      new Set(children.reports.slice(from).flatMap((r) => ('completed' in r ? [r.completed.id] : [])));
    const deadline = Date.now() + 30_000;
    while (completedIds().size < total && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await closing;
    const counts = await queue.getJobCounts(
      'completed',
      'failed',
      'delayed',
      'wait',
      'active',
      'prioritized',
    );
    await Promise.all(
      children.children
        .filter((c) => c.exitCode === null)
        .map((c) => children.ask(c, { cmd: 'end' }, 'ended')),
    );
    await queue.obliterate({ force: true });
    await queue.close();
    const reports = children.reports.slice(from);
    const pick = <K extends keyof Reports>(key: K): Array<Reports[K]> =>
      reports.flatMap((r) => (key in r ? [(r as Record<K, Reports[K]>)[key]] : []));
    return {
      total,
      starts: pick('start'),
      calls: pick('call'),
      deferred: pick('deferred'),
      interrupted: pick('interrupted'),
      completed: pick('completed'),
      failed: pick('failed'),
      transitions: pick('transition'),
      closed: pick('closed'),
      counts,
    };
  }

  /** Every job completed exactly once; none failed for good; no failed attempt was the breaker's. */
  function assertEveryJobCompletedOnce(result: RunResult): void {
    const ids = result.completed.map((c) => c.id);
    assert.equal(new Set(ids).size, result.total, 'every job completed');
    assert.equal(ids.length, result.total, 'no job completed twice');
    assert.equal(result.counts.completed, result.total);
    assert.equal(result.counts.failed, 0, 'no job failed for good');
    for (const f of result.failed) {
      assert.match(
        f.message,
        /dependency of acme is down/,
        `a failed attempt that was not the work's: ${f.name}`,
      );
    }
  }

  /**
   * A deferral consumes no attempt: a job's attemptsMade is its failed attempts plus the one that
   * completed. BullMQ's attemptsStarted counts every start; without a worker closing, a start is
   * an attempt or a deferral (with one, it may also be a put-back).
   */
  function assertDeferralsConsumeNoAttempt(result: RunResult, options: { putBacks: boolean }): void {
    const count = (list: ReadonlyArray<{ id: string }>): Map<string, number> => {
      const map = new Map<string, number>();
      for (const { id } of list) map.set(id, (map.get(id) ?? 0) + 1);
      return map;
    };
    // A call to the down dependency that the worker's close interrupted did not fail.
    const downCalls = count(result.calls.filter((c) => !c.ok));
    const interruptedDownCalls = count(result.interrupted.filter((c) => !c.ok));
    const failuresOf = (id: string): number => (downCalls.get(id) ?? 0) - (interruptedDownCalls.get(id) ?? 0);
    const starts = count(result.starts);
    const deferrals = count(result.deferred);
    for (const job of result.completed) {
      assert.equal(job.attemptsMade, 1 + failuresOf(job.id), `attemptsMade of job ${job.id}`);
      assert.equal(job.attemptsStarted, starts.get(job.id), `attemptsStarted of job ${job.id}`);
      if (!options.putBacks) {
        assert.equal(
          job.attemptsStarted,
          job.attemptsMade + (deferrals.get(job.id) ?? 0),
          `starts of job ${job.id}`,
        );
      }
    }
    for (const d of result.deferred) {
      assert.ok(
        d.attemptsMade <= failuresOf(d.id),
        `job ${d.id} deferred with attemptsMade ${d.attemptsMade}`,
      );
    }
  }

  function healthyLatencies(result: RunResult): number[] {
    return result.completed.filter((c) => c.tenant !== FAILING).map((c) => c.latencyMs);
  }

  it('with every dependency healthy: every job completes once, nothing is deferred (the baseline)', async () => {
    const result = await run({ failing: false, perTenant: 50, intervalMs: 50, workMs: 10 });
    assertEveryJobCompletedOnce(result);
    assert.equal(result.deferred.length, 0);
    assert.equal(result.failed.length, 0);
    assertDeferralsConsumeNoAttempt(result, { putBacks: false });
    baselineP99 = p99(healthyLatencies(result));
  });

  it("with one tenant's dependency down for 1.5 s: its jobs are deferred, none fails, the others do not notice", async (t) => {
    const result = await run({ failing: true, perTenant: 50, intervalMs: 50, workMs: 10 });
    assertEveryJobCompletedOnce(result);
    assertDeferralsConsumeNoAttempt(result, { putBacks: false });
    assert.ok(result.deferred.length > 0, 'some jobs were deferred');
    assert.ok(result.deferred.every((d) => d.id !== undefined));
    const deferredTenants = new Set(
      result.deferred.map((d) => result.completed.find((c) => c.id === d.id)?.tenant),
    );
    assert.deepEqual([...deferredTenants], [FAILING], 'only the failing tenant is deferred');

    // The failing dependency: the calls that tripped the breaker (and any already admitted by the
    // other workers' slots when it opened), then one probe per open period across all workers.
    const downCalls = result.calls.filter((c) => !c.ok);
    const mine = result.transitions.filter((t) => t.name === `sync/${FAILING}`);
    const opens = mine.filter((t) => t.to === 'open');
    const probes = mine.filter((t) => t.to === 'half-open').length;
    assert.ok(opens.length >= 1, 'the failing tenant opened');
    // Calls to the down dependency well after the first open are its probes: each failed, so each
    // opened the breaker again. (On a loaded machine the first open can come so late that its
    // first probe falls after the outage: then no probe fails, and it opened once. The timeline
    // is in the message.)
    const failedProbes = downCalls.filter((c) => c.t > opens[0]!.t + 200).length;
    const firstCall = Math.min(...result.calls.map((c) => c.t));
    const timeline =
      `first call +0 ms, first open +${opens[0]!.t - firstCall} ms, ` +
      `last call to the down dependency +${Math.max(...downCalls.map((c) => c.t)) - firstCall} ms; ` +
      `transitions: ${mine.map((t) => `${t.from}>${t.to} +${t.t - firstCall}`).join(', ')}`;
    assert.ok(
      opens.length >= 1 + Math.min(1, failedProbes),
      `${failedProbes} failed probes, ${opens.length} opens (${timeline})`,
    );
    assert.ok(
      downCalls.length <= TRIP + WORKERS * CONCURRENCY + opens.length,
      `${downCalls.length} calls to the failing dependency in ${opens.length} open periods`,
    );
    // 200 ms of grace for calls admitted (closed) just before the open, less than one open period.
    const afterOpen = downCalls.filter((c) => c.t > opens[0]!.t + 200).length;
    assert.ok(afterOpen <= probes, `${afterOpen} calls while open, ${probes} half-open periods`);
    assert.ok(
      result.transitions.every((t) => t.name === `sync/${FAILING}`),
      'only the failing tenant changed state',
    );
    assert.equal(result.transitions.at(-1)?.to, 'closed', 'the failing tenant recovered');

    // Healthy tenants: p99 within 2x of the baseline, with a generous absolute slack for a noisy machine.
    const healthyP99 = p99(healthyLatencies(result));
    t.diagnostic(
      `${downCalls.length} calls to the down dependency (${afterOpen} after it opened) in ${opens.length} open ` +
        `periods; ${result.deferred.length} deferrals; ` +
        `healthy p99 ${healthyP99} ms (baseline ${baselineP99} ms)`,
    );
    assert.ok(
      healthyP99 <= 2 * baselineP99 + 500,
      `healthy p99 ${healthyP99} ms vs the baseline's ${baselineP99} ms`,
    );
  });

  it('a worker closed mid-run puts its jobs back and no job is lost', async (t) => {
    const result = await run({
      failing: true,
      perTenant: 30,
      intervalMs: 100,
      workMs: 150,
      closeOneAtMs: 1_000,
    });
    assertEveryJobCompletedOnce(result);
    assertDeferralsConsumeNoAttempt(result, { putBacks: true });
    const [closed] = result.closed;
    t.diagnostic(`${closed?.inFlight} jobs in flight at close; ${result.interrupted.length} interrupted`);
    assert.ok(closed !== undefined && closed.inFlight >= 1, `jobs in flight at close: ${closed?.inFlight}`);
    assert.equal(result.interrupted.length >= closed.inFlight, true, 'every job in flight was interrupted');
  });
});
