import type { BreakerFactory } from '../factory.js';
import { isCircuitOpenError } from '../errors.js';

/** What one run of the simulated job queue looks like. */
export interface Scenario {
  readonly tenants: number;
  /** Tenants whose downstream fails during the outage: the first `failing` of them. */
  readonly failing: number;
  readonly workers: number;
  readonly durationMs: number;
  /** Jobs each tenant enqueues per second. */
  readonly jobsPerSecond: number;
  /** The outage, as fractions of the run: [start, end). */
  readonly outage: readonly [number, number];
  /** A healthy downstream call takes this long. */
  readonly callMs: number;
  /** A failing downstream call takes this long to fail (it times out). */
  readonly failMs: number;
  /** In-worker retries of a failed call, with doubling backoff from `retryBackoffMs`. */
  readonly retries: number;
  readonly retryBackoffMs: number;
}

export const DEFAULT_SCENARIO: Scenario = {
  tenants: 6,
  failing: 1,
  workers: 4,
  durationMs: 12_000,
  jobsPerSecond: 60,
  outage: [0.2, 0.6],
  callMs: 4,
  failMs: 40,
  retries: 3,
  retryBackoffMs: 25,
};

interface Job {
  readonly tenant: number;
  readonly enqueuedAt: number;
  notBefore: number;
}

/** One sample of the timeline, every 250 ms. */
export interface Sample {
  readonly t: number;
  /** Per tenant: closed, open or half-open (always closed without breakers). */
  readonly states: readonly string[];
  /** Jobs completed per tenant since the last sample. */
  readonly completed: readonly number[];
}

export interface RunResult {
  readonly withBreakers: boolean;
  /** Calls that reached a failing downstream while it was down. */
  readonly wastedCalls: number;
  /** Jobs of healthy tenants completed per second. */
  readonly healthyThroughput: number;
  readonly healthyP50Ms: number;
  readonly healthyP99Ms: number;
  /** Jobs deferred by a breaker's retryAfterMs instead of run. */
  readonly deferred: number;
  /** From the outage's start to the first failing tenant's breaker opening (ms), or null. */
  readonly detectMs: number | null;
  /** From the outage's end to the last failing tenant's breaker closing (ms), or null. */
  readonly recoverMs: number | null;
  readonly timeline: readonly Sample[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function tenantName(i: number): string {
  return `tenant-${String.fromCharCode(97 + (i % 26))}${i >= 26 ? i : ''}`;
}

/**
 * Runs the job queue once, for real time, and measures it. Without breakers, a worker retries a
 * failed call in place with backoff. With breakers (one per tenant, from `factory`), a call the
 * breaker rejects is deferred by `retryAfterMs` and the worker moves on to the next job.
 */
export async function runQueue(
  scenario: Scenario,
  factory: BreakerFactory | null,
  onProgress?: (elapsedMs: number, result: Pick<RunResult, 'wastedCalls' | 'deferred'>) => void,
): Promise<RunResult> {
  const start = performance.now();
  const now = (): number => performance.now() - start;
  const outageStart = scenario.outage[0] * scenario.durationMs;
  const outageEnd = scenario.outage[1] * scenario.durationMs;
  const isDown = (tenant: number): boolean => {
    const t = now();
    return tenant < scenario.failing && t >= outageStart && t < outageEnd;
  };
  const queue: Job[] = [];
  const latencies: number[] = [];
  const completed = new Array<number>(scenario.tenants).fill(0);
  const timeline: Sample[] = [];
  let wastedCalls = 0;
  let deferred = 0;
  let healthyDone = 0;
  let detectMs: number | null = null;
  const closedAt: number[] = [];
  const states = new Array<string>(scenario.tenants).fill('closed');
  const breakers =
    factory === null
      ? []
      : Array.from({ length: scenario.tenants }, (_, i) => factory.breakerFor(tenantName(i)));
  breakers.forEach((breaker, i) =>
    breaker.onStateChange((event) => {
      states[i] = event.to;
      if (i < scenario.failing && event.to === 'open' && detectMs === null) detectMs = now() - outageStart;
      if (i < scenario.failing && event.to === 'closed' && now() >= outageEnd)
        closedAt[i] = now() - outageEnd;
    }),
  );

  const call = async (tenant: number): Promise<void> => {
    if (isDown(tenant)) {
      wastedCalls += 1;
      await sleep(scenario.failMs);
      throw new Error(`${tenantName(tenant)}'s downstream is down`);
    }
    await sleep(scenario.callMs);
  };

  // Every tenant enqueues jobs at the same rate, for the whole run.
  let running = true;
  const producer = (async () => {
    const interval = 1_000 / scenario.jobsPerSecond;
    let next = 0;
    while (running) {
      const t = now();
      while (next <= t) {
        for (let tenant = 0; tenant < scenario.tenants; tenant++)
          queue.push({ tenant, enqueuedAt: next, notBefore: 0 });
        next += interval;
      }
      await sleep(Math.max(1, next - t));
    }
  })();

  const take = (): Job | undefined => {
    const t = now();
    const at = queue.findIndex((job) => job.notBefore <= t);
    return at === -1 ? undefined : queue.splice(at, 1)[0];
  };

  const finish = (job: Job): void => {
    completed[job.tenant]! += 1;
    if (job.tenant >= scenario.failing) {
      healthyDone += 1;
      latencies.push(now() - job.enqueuedAt);
    }
  };

  const worker = async (): Promise<void> => {
    while (running) {
      const job = take();
      if (job === undefined) {
        await sleep(1);
        continue;
      }
      const breaker = breakers[job.tenant];
      let attempt = 0;
      for (;;) {
        try {
          if (breaker === undefined) await call(job.tenant);
          else await breaker.execute(() => call(job.tenant));
          finish(job);
          break;
        } catch (error) {
          if (isCircuitOpenError(error)) {
            // The breaker's answer: come back later, and let this worker serve someone else.
            deferred += 1;
            job.notBefore = now() + error.retryAfterMs;
            queue.push(job);
            break;
          }
          if (attempt >= scenario.retries) {
            // Give up for now: requeue at the back, as a queue would after its retries.
            queue.push(job);
            break;
          }
          await sleep(scenario.retryBackoffMs * 2 ** attempt++);
        }
      }
    }
  };

  const workers = Array.from({ length: scenario.workers }, () => worker());
  let last = [...completed];
  while (now() < scenario.durationMs) {
    await sleep(250);
    timeline.push({
      t: Math.round(now()),
      states: [...states],
      completed: completed.map((c, i) => c - last[i]!),
    });
    last = [...completed];
    onProgress?.(now(), { wastedCalls, deferred });
  }
  running = false;
  await Promise.all([producer, ...workers]);
  const recovered = closedAt.filter((t) => t !== undefined);
  return {
    withBreakers: factory !== null,
    wastedCalls,
    healthyThroughput: healthyDone / (scenario.durationMs / 1_000),
    healthyP50Ms: percentile(latencies, 50),
    healthyP99Ms: percentile(latencies, 99),
    deferred,
    detectMs,
    recoverMs:
      factory === null || recovered.length < Math.min(scenario.failing, breakers.length)
        ? null
        : Math.max(...recovered),
    timeline,
  };
}
