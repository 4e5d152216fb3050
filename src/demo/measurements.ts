/**
 * What a run measures, whoever runs the jobs (the simulated queue in this process, worker
 * processes, or BullMQ): completions, calls to the failing downstream, deferrals, transitions,
 * and a timeline sampled every 250 ms; and the `RunResult` made of them.
 */
import type { Progress, RunResult, Sample, Scenario, Transition, Variant } from './simulation.js';

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The window of `lowestInWindow`: as long as a sample of the timeline. */
export const WINDOW_MS = 250;

/**
 * The fewest of `times` (sorted, ms) in any window `[t, t + windowMs)` with `from <= t` and
 * `t + windowMs <= to`, or null when no window fits. The count only drops just after a time
 * leaves the window, so the windows starting at `from` and just after each time are the
 * candidates.
 */
export function lowestInWindow(
  times: readonly number[],
  from: number,
  to: number,
  windowMs = WINDOW_MS,
): number | null {
  const last = to - windowMs;
  if (last < from) return null;
  const starts = [from, ...times.filter((t) => t >= from && t < last).map((t) => t + 1e-9), last];
  let lowest = Infinity;
  let first = 0; // the first time >= start
  let end = 0; // the first time >= start + windowMs
  for (const start of starts) {
    while (first < times.length && times[first]! < start) first++;
    while (end < times.length && times[end]! < start + windowMs) end++;
    lowest = Math.min(lowest, Math.max(0, end - first));
  }
  return lowest;
}

export class Measurements {
  /** The healthy tenants' job latencies, and when (ms into the run) each of those jobs completed. */
  readonly latencies: number[] = [];
  readonly healthyDoneAt: number[] = [];
  /** Every tenant's job latencies. */
  readonly allLatencies: number[] = [];
  readonly completed: number[];
  readonly states: string[];
  readonly closedAt: number[] = [];
  /** Per tenant, its first job completed after the outage ended (ms after the end). */
  readonly servedAgainAt: number[] = [];
  readonly transitions: Transition[] = [];
  readonly rejections: Record<string, number> = {};
  readonly #deferredJobs = new Set<string | number>();
  wastedCalls = 0;
  deferrals = 0;
  healthyDone = 0;
  healthyDoneDuringOutage = 0;
  allDone = 0;
  allDoneDuringOutage = 0;
  detectMs: number | null = null;
  escalatedMs: number | null = null;
  #start = performance.now();

  constructor(readonly scenario: Scenario) {
    this.completed = new Array<number>(scenario.tenants).fill(0);
    this.states = new Array<string>(scenario.tenants).fill('closed');
  }

  /** Milliseconds since the run started. */
  readonly now = (): number => performance.now() - this.#start;

  restartClock(): void {
    this.#start = performance.now();
  }

  /** Whether `t` (ms into the run) falls in the outage. */
  inOutage(t: number): boolean {
    const s = this.scenario;
    return t >= s.outage[0] * s.durationMs && t < s.outage[1] * s.durationMs;
  }

  wasted(calls: number): void {
    this.wastedCalls += calls;
  }

  /** A breaker rejected job `jobId` (for `reason`, when the worker said) and it was deferred. */
  deferred(jobId: string | number, reason?: string): void {
    this.deferrals += 1;
    this.#deferredJobs.add(jobId);
    if (reason !== undefined) this.rejections[reason] = (this.rejections[reason] ?? 0) + 1;
  }

  get jobsDeferred(): number {
    return this.#deferredJobs.size;
  }

  /** A job of `tenant`, enqueued at `enqueuedAt` (ms into the run), completed now. */
  done(tenant: number, enqueuedAt: number): void {
    const t = this.now();
    const s = this.scenario;
    this.completed[tenant]! += 1;
    // Only jobs completed within the run count: a drain afterwards (BullMQ) would lift the
    // throughput and skew the latencies.
    if (t > s.durationMs) return;
    const end = s.outage[1] * s.durationMs;
    if (t >= end && this.servedAgainAt[tenant] === undefined) this.servedAgainAt[tenant] = t - end;
    this.allDone += 1;
    this.allLatencies.push(t - enqueuedAt);
    if (this.inOutage(t)) this.allDoneDuringOutage += 1;
    if (tenant >= s.failing) {
      this.healthyDone += 1;
      if (this.inOutage(t)) this.healthyDoneDuringOutage += 1;
      this.latencies.push(t - enqueuedAt);
      this.healthyDoneAt.push(t);
    }
  }

  stateChanged(tenant: number, to: string): void {
    const s = this.scenario;
    const t = this.now();
    this.transitions.push({ t: Math.round(t), tenant, to });
    this.states[tenant] = to;
    if (tenant < s.failing && to === 'open' && this.detectMs === null)
      this.detectMs = t - s.outage[0] * s.durationMs;
    if (tenant < s.failing && to === 'closed' && t >= s.outage[1] * s.durationMs)
      this.closedAt[tenant] = t - s.outage[1] * s.durationMs;
  }

  /** A breaker of no one tenant changed state: the base name's (`downstream/*`), the downstream's. */
  sharedStateChanged(breaker: string, to: string): void {
    const s = this.scenario;
    const t = this.now();
    this.transitions.push({ t: Math.round(t), tenant: -1, to, breaker });
    if (breaker.endsWith('/*') && to === 'open' && this.escalatedMs === null)
      this.escalatedMs = t - s.outage[0] * s.durationMs;
  }

  /** Samples the timeline every 250 ms until the run's duration has passed (or `signal` aborts). */
  async sample(onProgress?: (progress: Progress) => void, signal?: AbortSignal): Promise<Sample[]> {
    const timeline: Sample[] = [];
    let last = [...this.completed];
    while (this.now() < this.scenario.durationMs && signal?.aborted !== true) {
      await sleep(250);
      timeline.push({
        t: Math.round(this.now()),
        states: [...this.states],
        completed: this.completed.map((c, i) => c - last[i]!),
      });
      last = [...this.completed];
      onProgress?.(this.progress());
    }
    return timeline;
  }

  progress(): Progress {
    return {
      elapsedMs: this.now(),
      wastedCalls: this.wastedCalls,
      jobsDeferred: this.jobsDeferred,
      deferrals: this.deferrals,
      open: this.states.filter((s) => s !== 'closed').length,
    };
  }

  result(
    withBreakers: boolean,
    timeline: readonly Sample[],
    variant: Variant = withBreakers ? 'breakers' : 'none',
  ): RunResult {
    const s = this.scenario;
    const recovered = this.closedAt.filter((t) => t !== undefined);
    const servedAgain = this.servedAgainAt.slice(0, s.failing).filter((t) => t !== undefined);
    const outageSeconds = ((s.outage[1] - s.outage[0]) * s.durationMs) / 1_000;
    const healthy = s.tenants - s.failing;
    // From the outage's start; a downstream limit has no outage, so from the run's start.
    const from = s.downstreamLimit > 0 ? 0 : s.outage[0] * s.durationMs;
    const lowest = healthy === 0 ? null : lowestInWindow(this.healthyDoneAt, from, s.durationMs);
    const lowestPerSecond = lowest === null ? null : lowest / (WINDOW_MS / 1_000);
    return {
      withBreakers,
      variant,
      wastedCalls: this.wastedCalls,
      healthyThroughput: this.healthyDone / (s.durationMs / 1_000),
      healthyThroughputDuringOutage: this.healthyDoneDuringOutage / outageSeconds,
      healthyP50Ms: percentile(this.latencies, 50),
      healthyP99Ms: percentile(this.latencies, 99),
      healthyMinThroughput: lowestPerSecond,
      healthyMinThroughputShare:
        lowestPerSecond === null ? null : lowestPerSecond / (healthy * s.jobsPerSecond),
      throughput: this.allDone / (s.durationMs / 1_000),
      throughputDuringOutage: this.allDoneDuringOutage / outageSeconds,
      p50Ms: percentile(this.allLatencies, 50),
      p99Ms: percentile(this.allLatencies, 99),
      jobsDeferred: this.jobsDeferred,
      deferrals: this.deferrals,
      rejections: { ...this.rejections },
      detectMs: withBreakers ? this.detectMs : null,
      recoverMs: !withBreakers || recovered.length < s.failing ? null : Math.max(...recovered),
      escalatedMs: this.escalatedMs,
      servedAgainMs: s.failing === 0 || servedAgain.length < s.failing ? null : Math.max(...servedAgain),
      transitionCount: this.transitions.length,
      transitions: this.transitions,
      timeline,
    };
  }
}
