/**
 * What a run measures, whoever runs the jobs (the simulated queue in this process, worker
 * processes, or BullMQ): completions, calls to the failing downstream, deferrals, transitions,
 * and a timeline sampled every 250 ms; and the `RunResult` made of them.
 */
import type { Progress, RunResult, Sample, Scenario, Transition } from './simulation.js';

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class Measurements {
  readonly latencies: number[] = [];
  readonly completed: number[];
  readonly states: string[];
  readonly closedAt: number[] = [];
  readonly transitions: Transition[] = [];
  readonly #deferredJobs = new Set<string | number>();
  wastedCalls = 0;
  deferrals = 0;
  healthyDone = 0;
  healthyDoneDuringOutage = 0;
  detectMs: number | null = null;
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

  deferred(jobId: string | number): void {
    this.deferrals += 1;
    this.#deferredJobs.add(jobId);
  }

  get jobsDeferred(): number {
    return this.#deferredJobs.size;
  }

  /** A job of `tenant`, enqueued at `enqueuedAt` (ms into the run), completed now. */
  done(tenant: number, enqueuedAt: number): void {
    const t = this.now();
    this.completed[tenant]! += 1;
    // Only jobs completed within the run count for the healthy tenants: a drain afterwards
    // (BullMQ) would lift their throughput and skew their latencies.
    if (tenant >= this.scenario.failing && t <= this.scenario.durationMs) {
      this.healthyDone += 1;
      if (this.inOutage(t)) this.healthyDoneDuringOutage += 1;
      this.latencies.push(t - enqueuedAt);
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

  result(withBreakers: boolean, timeline: readonly Sample[]): RunResult {
    const s = this.scenario;
    const recovered = this.closedAt.filter((t) => t !== undefined);
    const outageSeconds = ((s.outage[1] - s.outage[0]) * s.durationMs) / 1_000;
    return {
      withBreakers,
      wastedCalls: this.wastedCalls,
      healthyThroughput: this.healthyDone / (s.durationMs / 1_000),
      healthyThroughputDuringOutage: this.healthyDoneDuringOutage / outageSeconds,
      healthyP50Ms: percentile(this.latencies, 50),
      healthyP99Ms: percentile(this.latencies, 99),
      jobsDeferred: this.jobsDeferred,
      deferrals: this.deferrals,
      detectMs: withBreakers ? this.detectMs : null,
      recoverMs: !withBreakers || recovered.length < s.failing ? null : Math.max(...recovered),
      transitionCount: this.transitions.length,
      transitions: this.transitions,
      timeline,
    };
  }
}
