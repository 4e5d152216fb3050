import type { FailurePattern, RunResult, Scenario, Variant } from './simulation.js';
import { BASE_NAME, experimentOf, tenantName } from './simulation.js';
import { ESCALATION, THROTTLE, variantLabel } from './variants.js';

export interface DemoReport {
  readonly scenario: Scenario;
  readonly store: string;
  /**
   * The runs, in order: without breakers, with per-tenant breakers, then (`--provider-outage`)
   * with escalation, or (`--downstream-limit`) with adaptive throttling and with `maxConcurrent`.
   */
  readonly runs: readonly RunResult[];
  /** The jobs ran on a real BullMQ queue (`--bullmq`): BullMQ retried them, not the worker. */
  readonly bullmq?: boolean;
}

function describePattern(pattern: FailurePattern): string {
  if (pattern.kind === 'rate') return `failing ${Math.round(pattern.rate * 100)}% of calls`;
  if (pattern.kind === 'pattern') return `failing in the cycle ${pattern.pattern}`;
  return 'down';
}

const ms = (value: number | null): string => (value === null ? 'n/a' : `${Math.round(value)} ms`);
const seconds = (value: number): string => `${(value / 1000).toFixed(1)} s`;
const count = (run: RunResult, value: number): string => (run.withBreakers ? String(value) : '-');

/** The lowest jobs/s in a 250 ms window, and its share of the rate offered: `48 (16%)`. */
const lowest =
  (scenario: Scenario) =>
  (run: RunResult): string => {
    const value = run.healthyMinThroughput;
    const share = run.healthyMinThroughputShare;
    if (value === null || share === null) return 'n/a';
    const offered = scenario.jobsPerSecond * (scenario.tenants - scenario.failing);
    return `${value.toFixed(0)} (${Math.round(100 * share)}% of ${offered})`;
  };

/** Reject reasons in the order a breaker meets them, for the rows of rejections. */
const REASONS = [
  'open',
  'half-open-full',
  'base-open',
  'recovering',
  'throttled',
  'concurrency-limit',
  'forced-open',
  'store-unavailable',
];

function rejectionRows(runs: readonly RunResult[]): string[][] {
  const seen = new Set(runs.flatMap((run) => Object.keys(run.rejections)));
  const reasons = [...REASONS.filter((r) => seen.has(r)), ...[...seen].filter((r) => !REASONS.includes(r))];
  return reasons.map((reason) => [
    `  rejected: ${reason}`,
    ...runs.map((run) => count(run, run.rejections[reason] ?? 0)),
  ]);
}

/** The scenario in a sentence: the first line of the table. */
function describeScenario(report: DemoReport): string {
  const s = report.scenario;
  const span = `from ${seconds(s.outage[0] * s.durationMs)} to ${seconds(s.outage[1] * s.durationMs)}`;
  const load = `${s.tenants} tenants, ${s.workers} workers, ${s.jobsPerSecond} jobs/s per tenant, ${(s.durationMs / 1000).toFixed(0)} s per run`;
  switch (experimentOf(s)) {
    case 'provider-outage':
      return (
        `${load}; the downstream ${describePattern(s.pattern)} for every tenant ${span} (seed ${s.seed}). ` +
        `Escalation: { maxOpenFraction: ${ESCALATION.maxOpenFraction}, minBreakers: ${ESCALATION.minBreakers} }. Store: ${report.store}.`
      );
    case 'downstream-limit':
      return (
        `${load}; the downstream answers 429 to any call beyond ${s.downstreamLimit} in flight at once, ` +
        `no outage (seed ${s.seed}). Throttle: adaptiveThrottle({ windowMs: ${THROTTLE.windowMs} }). Store: ${report.store}.`
      );
    case 'tenant-outage':
      return (
        `${load}; ${s.failing} tenant${s.failing === 1 ? '' : 's'} (${Array.from({ length: s.failing }, (_, i) => tenantName(i)).join(', ')}) ` +
        `${describePattern(s.pattern)} ${span} (seed ${s.seed}). Store: ${report.store}.`
      );
  }
}

/** The comparison table of one tenant's outage: two runs, and how the second compares. */
function tenantOutageRows(report: DemoReport): string[][] {
  const [a, b] = report.runs as [RunResult, RunResult];
  const ratio = (x: number, y: number): string => (y === 0 ? '' : `${(x / y).toFixed(2)}x`);
  const rows: string[][] = [
    [
      'calls to the failing downstream while down',
      String(a.wastedCalls),
      String(b.wastedCalls),
      `${(100 * (1 - b.wastedCalls / Math.max(1, a.wastedCalls))).toFixed(0)}% fewer`,
    ],
    [
      'healthy tenants: jobs per second, whole run',
      a.healthyThroughput.toFixed(0),
      b.healthyThroughput.toFixed(0),
      ratio(b.healthyThroughput, a.healthyThroughput),
    ],
    [
      'healthy tenants: jobs per second during the outage',
      a.healthyThroughputDuringOutage.toFixed(0),
      b.healthyThroughputDuringOutage.toFixed(0),
      ratio(b.healthyThroughputDuringOutage, a.healthyThroughputDuringOutage),
    ],
    [
      'healthy tenants: jobs/s in the worst 250 ms since the outage began',
      lowest(report.scenario)(a),
      lowest(report.scenario)(b),
      a.healthyMinThroughput === null || b.healthyMinThroughput === null
        ? ''
        : ratio(b.healthyMinThroughput, a.healthyMinThroughput),
    ],
    [
      'healthy tenants: p50 job latency',
      ms(a.healthyP50Ms),
      ms(b.healthyP50Ms),
      ratio(b.healthyP50Ms, a.healthyP50Ms),
    ],
    [
      'healthy tenants: p99 job latency',
      ms(a.healthyP99Ms),
      ms(b.healthyP99Ms),
      ratio(b.healthyP99Ms, a.healthyP99Ms),
    ],
    ['jobs deferred by retryAfterMs (each job once)', '-', String(b.jobsDeferred), ''],
    ['deferrals (a job can be deferred again)', '-', String(b.deferrals), ''],
    ...rejectionRows([a, b]).map((row) => [...row, '']),
    ['outage detected after', '-', ms(b.detectMs), ''],
    ['recovered (closed) after the outage ended', '-', ms(b.recoverMs), ''],
  ];
  if (a.jobs !== undefined && b.jobs !== undefined) {
    rows.push([
      'jobs completed / enqueued (queue drained after the run)',
      `${a.jobs.completed} / ${a.jobs.added}`,
      `${b.jobs.completed} / ${b.jobs.added}`,
      '',
    ]);
  }
  return rows;
}

function providerOutageRows(runs: readonly RunResult[]): string[][] {
  const row = (label: string, value: (run: RunResult) => string): string[] => [label, ...runs.map(value)];
  return [
    row('calls to the downstream while it was down', (r) => String(r.wastedCalls)),
    row('jobs per second during the outage', (r) => r.throughputDuringOutage.toFixed(0)),
    row('jobs per second, whole run', (r) => r.throughput.toFixed(0)),
    row('p99 job latency', (r) => ms(r.p99Ms)),
    row('jobs deferred by retryAfterMs (each job once)', (r) => count(r, r.jobsDeferred)),
    row('deferrals (a job can be deferred again)', (r) => count(r, r.deferrals)),
    ...rejectionRows(runs),
    row('first breaker opened after the outage began', (r) => (r.withBreakers ? ms(r.detectMs) : '-')),
    row(`${BASE_NAME}/* opened (escalated) after the outage began`, (r) =>
      r.variant === 'escalation' ? ms(r.escalatedMs) : '-',
    ),
    row('every tenant served again after the outage ended', (r) => ms(r.servedAgainMs)),
  ];
}

function downstreamLimitRows(runs: readonly RunResult[], scenario: Scenario): string[][] {
  const limit = scenario.downstreamLimit;
  const row = (label: string, value: (run: RunResult) => string): string[] => [label, ...runs.map(value)];
  return [
    row('calls to the downstream', (r) => String(r.downstream?.calls ?? 'n/a')),
    row(`answered 429 (beyond ${limit} in flight)`, (r) => String(r.downstream?.tooManyRequests ?? 'n/a')),
    row('most calls in flight at the downstream', (r) => String(r.downstream?.maxInFlight ?? 'n/a')),
    row('jobs completed per second, whole run', (r) => r.throughput.toFixed(0)),
    row('jobs/s in the worst 250 ms (of the rate enqueued)', lowest(scenario)),
    row('p50 job latency', (r) => ms(r.p50Ms)),
    row('p99 job latency', (r) => ms(r.p99Ms)),
    row('jobs deferred by retryAfterMs (each job once)', (r) => count(r, r.jobsDeferred)),
    row('deferrals (a job can be deferred again)', (r) => count(r, r.deferrals)),
    ...rejectionRows(runs),
  ];
}

/** The comparison as a text table: the scenario in a line, then one column per run. */
export function renderText(report: DemoReport): string {
  const { runs, scenario } = report;
  const experiment = experimentOf(scenario);
  const rows =
    experiment === 'provider-outage'
      ? providerOutageRows(runs)
      : experiment === 'downstream-limit'
        ? downstreamLimitRows(runs, scenario)
        : tenantOutageRows(report);
  const header = ['', ...runs.map((run) => variantLabel(run.variant, scenario, report.bullmq === true))];
  if (experiment === 'tenant-outage') header.push('');
  const widths = header.map((h, i) => Math.max(...rows.map((r) => r[i]!.length), h.length));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [describeScenario(report), '', line(header), ...rows.map(line)].join('\n');
}

/**
 * Okabe-Ito colors, told apart with any common color-vision deficiency: states are green, vermillion
 * and yellow; the throughput lines blue (solid) and reddish purple (dashed), so no line shares
 * a color with a state; the outage is a neutral grey band.
 */
const COLORS: Record<string, string> = {
  closed: '#009e73',
  open: '#d55e00',
  'half-open': '#f0e442',
  'no breaker': '#d9d9d9',
};
const HEALTHY_LINE = '#0072b2';
const FAILING_LINE = '#cc79a7';
const OUTAGE_FILL = '#0000001a';
/** `--ramp`: sky blue, a color of its own, on the state rows and (lighter) over the throughput. */
const RAMP = '#56b4e9';
const RAMP_FILL = '#56b4e940';

/** Where each run goes in the JSON results: `without` and `with` as ever, then the others. */
const JSON_KEYS: Readonly<Record<Variant, string>> = {
  none: 'without',
  breakers: 'with',
  escalation: 'withEscalation',
  throttle: 'withThrottle',
  concurrency: 'withMaxConcurrent',
};

/**
 * The JSON results: the report without the sampled timelines. The transitions stay, each with the
 * name of the breaker that made it (`downstream/tenant-a`, `downstream/*`), as the CLI and the
 * dashboard show it. `without` and `with` are the first two runs; `--provider-outage` adds
 * `withEscalation`, `--downstream-limit` adds `withThrottle` and `withMaxConcurrent`.
 */
export function renderJson(report: DemoReport): string {
  const named = ({ timeline: _, transitions, ...run }: RunResult) => ({
    ...run,
    transitions: transitions.map(({ t, tenant, to, breaker }) => ({
      t,
      breaker: breaker ?? `${BASE_NAME}/${tenantName(tenant)}`,
      to,
    })),
  });
  const queue = report.bullmq === true ? 'bullmq' : 'simulated';
  const runs = Object.fromEntries(report.runs.map((run) => [JSON_KEYS[run.variant], named(run)]));
  return `${JSON.stringify(
    {
      scenario: report.scenario,
      store: report.store,
      queue,
      experiment: experimentOf(report.scenario),
      ...runs,
    },
    null,
    2,
  )}\n`;
}

const splitOnce = (text: string, separator: string): [string, string] => {
  const at = text.indexOf(separator);
  return at === -1 ? ['', text] : [text.slice(0, at), text.slice(at + separator.length)];
};

/** Each run in a sentence: the title of its chart in the HTML report. */
function runTitle(run: RunResult, scenario: Scenario, bullmq: boolean): string {
  const experiment = experimentOf(scenario);
  switch (run.variant) {
    case 'none':
      if (bullmq) return 'Without breakers: BullMQ retries the failing tenant’s jobs';
      return experiment === 'tenant-outage'
        ? 'Without breakers: workers retry the failing tenant’s jobs in place'
        : 'Without breakers: workers retry failed calls in place';
    case 'breakers':
      return experiment === 'tenant-outage'
        ? 'With per-tenant breakers: its jobs are deferred'
        : 'With per-tenant breakers: a tenant’s jobs are deferred while its breaker is open';
    case 'escalation':
      return `With per-tenant breakers and escalate { maxOpenFraction: ${ESCALATION.maxOpenFraction}, minBreakers: ${ESCALATION.minBreakers} }: ${BASE_NAME}/* opens for every tenant`;
    case 'throttle':
      return `With per-tenant breakers, trip: adaptiveThrottle({ windowMs: ${THROTTLE.windowMs} }): a share of calls turned away`;
    case 'concurrency':
      return `With one breaker for the downstream, maxConcurrent: ${scenario.downstreamLimit}: never more calls in flight`;
  }
}

/** The report's title, what it compares, and its headline figures (HTML). */
function htmlIntro(report: DemoReport): { title: string; what: string; headline: string } {
  const { scenario, runs } = report;
  const bullmq = report.bullmq === true;
  const runOf = (variant: Variant): RunResult | undefined => runs.find((run) => run.variant === variant);
  const strong = (text: string): string => `<strong>${text}</strong>`;
  switch (experimentOf(scenario)) {
    case 'provider-outage': {
      const [a, b, c] = [runOf('none'), runOf('breakers'), runOf('escalation')];
      return {
        title: 'A provider outage: per-tenant breakers, and escalation to the provider',
        what: 'The downstream is down for every tenant at once. The same workload three times: workers retrying failed calls in place; one breaker per tenant, each of which pays for the outage before it opens; and the same breakers with <code>escalate</code>, which opens <code>downstream/*</code> for every tenant once enough of them are open.',
        headline:
          `While the downstream was down, ${strong(String(a?.wastedCalls ?? 0))} calls reached it with retries in the worker, ` +
          `${strong(String(b?.wastedCalls ?? 0))} with per-tenant breakers and ${strong(String(c?.wastedCalls ?? 0))} with escalation` +
          (c?.escalatedMs === null || c === undefined
            ? '.'
            : ` (<code>downstream/*</code> opened ${Math.round(c.escalatedMs)} ms into the outage).`),
      };
    }
    case 'downstream-limit': {
      const offered = scenario.jobsPerSecond * scenario.tenants;
      const figures = runs
        .map(
          (run) =>
            `${escape(variantLabel(run.variant, scenario))}: ${strong(`${run.throughput.toFixed(0)} jobs/s`)}, ${run.downstream?.tooManyRequests ?? 0} 429s`,
        )
        .join('; ');
      return {
        title: 'A downstream that limits calls in flight: breakers, adaptive throttling, maxConcurrent',
        what: `The downstream answers 429 to any call beyond ${scenario.downstreamLimit} in flight at once, whoever makes it. The same workload four times: workers retrying a refused call in place; per-tenant breakers that count 429s as failures; per-tenant breakers that throttle (<code>adaptiveThrottle</code>); and one breaker for the downstream with <code>maxConcurrent: ${scenario.downstreamLimit}</code>, which defers a job instead of calling beyond the limit.`,
        headline: `Jobs completed and calls refused: ${figures} (the tenants enqueue ${offered} jobs/s).`,
      };
    }
    case 'tenant-outage': {
      const [a, b] = runs as [RunResult, RunResult];
      const failingNames = Array.from({ length: scenario.failing }, (_, i) => tenantName(i)).join(', ');
      return {
        title: 'Per-tenant circuit breakers in a shared job queue',
        what: bullmq
          ? 'The same workload twice on a BullMQ queue: BullMQ retrying a failing tenant’s jobs (attempts, backoff), then <code>withBreaker</code> deferring them by the breaker’s <code>retryAfterMs</code>.'
          : 'The same workload twice: workers retrying a failing tenant’s jobs in place, then per-tenant breakers deferring them by <code>retryAfterMs</code>.',
        headline:
          `While ${escape(failingNames)}’s downstream was down, the healthy tenants completed ` +
          `${strong(`${a.healthyThroughputDuringOutage.toFixed(0)} jobs/s`)} with ${bullmq ? 'BullMQ’s retries' : 'retries in the worker'} and ` +
          `${strong(`${b.healthyThroughputDuringOutage.toFixed(0)} jobs/s`)} with per-tenant breakers ` +
          `(they enqueue ${(scenario.jobsPerSecond * (scenario.tenants - scenario.failing)).toFixed(0)} jobs/s)` +
          (a.healthyMinThroughput === null || b.healthyMinThroughput === null
            ? '.'
            : `; in their worst 250 ms since the outage began, ${lowest(scenario)(a)} and ${lowest(scenario)(b)} jobs/s.`),
      };
    }
  }
}

const escape = (text: string): string => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Sorted intervals merged where they overlap. */
function union(intervals: Array<[number, number]>): Array<[number, number]> {
  const merged: Array<[number, number]> = [];
  for (const [from, to] of [...intervals].sort((p, q) => p[0] - q[0])) {
    const last = merged[merged.length - 1];
    if (last !== undefined && from <= last[1]) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  return merged;
}

/** A self-contained HTML page: the comparison and, per run, a timeline of states and throughput. */
export function renderHtml(report: DemoReport): string {
  const { scenario, runs } = report;
  const bullmq = report.bullmq === true;
  const experiment = experimentOf(scenario);
  const span = scenario.durationMs;
  const hasHealthy = scenario.tenants > scenario.failing;
  const hasFailing = scenario.failing > 0;
  const hasOutage = experiment !== 'downstream-limit';
  const stepOf = (run: RunResult): number =>
    run.timeline.length > 1 ? run.timeline[1]!.t - run.timeline[0]!.t : 250;
  const perSecond = (run: RunResult, from: number, to: number): number[] =>
    run.timeline.map((s) => s.completed.slice(from, to).reduce((a, b) => a + b, 0) / (stepOf(run) / 1000));
  // One scale for every run, so the charts compare at a glance.
  const niceCeil = (value: number): number => {
    const unit = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 2.5, 5, 10].map((m) => m * unit).find((v) => v >= value)!;
  };
  const peak = niceCeil(
    Math.max(
      1,
      ...runs.flatMap((run) => [
        ...perSecond(run, scenario.failing, scenario.tenants),
        ...perSecond(run, 0, scenario.failing),
      ]),
    ),
  );

  // Drawn in a 720-unit-wide viewBox and scaled to the column's width by the browser.
  const chart = (run: RunResult, title: string): string => {
    const width = 720;
    // Rows of the tenants' breakers, then of those of no one tenant: the base name's
    // (`downstream/*`), the downstream's (`downstream`, whose tenants have none of their own).
    const sharedOf: Partial<Record<Variant, string>> = {
      escalation: `${BASE_NAME}/*`,
      concurrency: BASE_NAME,
    };
    const shared = [
      ...new Set([
        ...(sharedOf[run.variant] === undefined ? [] : [sharedOf[run.variant]!]),
        ...run.transitions.flatMap((t) => (t.breaker === undefined ? [] : [t.breaker])),
      ]),
    ];
    const ownBreakers = run.withBreakers && run.variant !== 'concurrency';
    const rowCount = scenario.tenants + shared.length;
    const row = Math.max(10, Math.min(22, Math.floor(300 / rowCount)));
    const fontSize = Math.min(14, row - 3);
    const left = 96;
    const right = width - 14;
    const plotTop = 26;
    const statesHeight = rowCount * row;
    const throughputTop = plotTop + statesHeight + 26;
    const throughputHeight = 150;
    const bottom = throughputTop + throughputHeight;
    const x = (t: number): number => left + ((right - left) * Math.min(Math.max(t, 0), span)) / span;
    const y = (value: number): number => bottom - (throughputHeight * value) / peak;
    const parts: string[] = [];
    const step = stepOf(run);
    if (hasOutage) {
      const [outStart, outEnd] = scenario.outage.map((f) => f * span) as [number, number];
      parts.push(
        `<rect x="${x(outStart)}" y="${plotTop - 6}" width="${x(outEnd) - x(outStart)}" height="${bottom - plotTop + 6}" fill="${OUTAGE_FILL}"/>`,
        `<text x="${x(outStart) + 4}" y="${plotTop - 10}" font-size="14" fill="#444">outage</text>`,
      );
    }
    const ramps: Array<[number, number]> = [];
    const drawRow = (
      index: number,
      label: string,
      bold: boolean,
      changes: ReadonlyArray<{ t: number; to: string }>,
      hasBreaker: boolean,
      ramping: boolean,
    ): Array<[number, number]> => {
      const top = plotTop + index * row;
      parts.push(
        `<text x="4" y="${Math.round(top + row / 2 + fontSize * 0.3)}" font-size="${fontSize}"${bold ? ' font-weight="bold"' : ''}>${escape(label)}${bold ? ' ✗' : ''}</text>`,
      );
      // One bar per state, from the transitions themselves: a probe's short half-open shows too.
      const bars: Array<{ from: number; state: string }> = [
        { from: 0, state: hasBreaker ? 'closed' : 'no breaker' },
      ];
      for (const change of changes) bars.push({ from: change.t, state: change.to });
      const height = Math.max(4, row - 6);
      const rampsHere: Array<[number, number]> = [];
      bars.forEach((bar, k) => {
        const x0 = x(bar.from);
        const end = bars[k + 1]?.from ?? span;
        const x1 = x(end);
        parts.push(
          `<rect x="${x0.toFixed(1)}" y="${top + (row - height) / 2}" width="${Math.max(2, x1 - x0).toFixed(1)}" height="${height}" fill="${COLORS[bar.state] ?? '#999'}"><title>${escape(label)}: ${bar.state} from ${(bar.from / 1000).toFixed(2)} s</title></rect>`,
        );
        // --ramp: after a close (not the first state), a growing share of calls is admitted.
        if (ramping && k > 0 && bar.state === 'closed') {
          const rampEnd = Math.min(end, bar.from + scenario.rampMs, span);
          rampsHere.push([bar.from, rampEnd]);
          parts.push(
            `<rect x="${x0.toFixed(1)}" y="${top + (row - height) / 2}" width="${Math.max(2, x(rampEnd) - x0).toFixed(1)}" height="${height}" fill="${RAMP}"><title>${escape(label)}: recovery ramp from ${(bar.from / 1000).toFixed(2)} s to ${(rampEnd / 1000).toFixed(2)} s</title></rect>`,
          );
        }
      });
      return rampsHere;
    };
    const withRamp = run.withBreakers && scenario.rampMs > 0;
    for (let i = 0; i < scenario.tenants; i++) {
      const changes = run.transitions.filter((change) => change.breaker === undefined && change.tenant === i);
      const here = drawRow(i, tenantName(i), i < scenario.failing, changes, ownBreakers, withRamp);
      if (i < scenario.failing || !hasFailing) ramps.push(...here);
    }
    shared.forEach((name, k) => {
      const changes = run.transitions.filter((change) => change.breaker === name);
      // The base name's breaker has no ramp of its own (its tenants ramp).
      ramps.push(
        ...drawRow(scenario.tenants + k, name, false, changes, true, withRamp && !name.endsWith('/*')),
      );
    });
    // The ramps of the failing tenants' breakers, over the throughput they hold back.
    for (const [from, to] of union(ramps)) {
      parts.push(
        `<rect x="${x(from).toFixed(1)}" y="${throughputTop}" width="${Math.max(2, x(to) - x(from)).toFixed(1)}" height="${throughputHeight}" fill="${RAMP_FILL}"><title>recovery ramp from ${(from / 1000).toFixed(2)} s to ${(to / 1000).toFixed(2)} s</title></rect>`,
      );
    }
    const line = (values: number[], color: string, dash: string): string =>
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash === '' ? '' : ` stroke-dasharray="${dash}"`} stroke-linejoin="round" points="${run.timeline
        .map((s, k) => `${x(s.t - step / 2).toFixed(1)},${y(values[k]!).toFixed(1)}`)
        .join(' ')}"/>`;
    for (const value of [0, peak / 2, peak]) {
      parts.push(
        `<line x1="${left}" y1="${y(value)}" x2="${right}" y2="${y(value)}" stroke="${value === 0 ? '#999' : '#e4e4e4'}"/>`,
        `<text x="${left - 6}" y="${y(value) + 4}" font-size="13" fill="#555" text-anchor="end">${Math.round(value)}</text>`,
      );
    }
    parts.push(`<text x="4" y="${throughputTop + 14}" font-size="14">jobs/s</text>`);
    if (hasHealthy) parts.push(line(perSecond(run, scenario.failing, scenario.tenants), HEALTHY_LINE, ''));
    if (hasFailing) parts.push(line(perSecond(run, 0, scenario.failing), FAILING_LINE, '6 4'));
    const tick = span <= 10_000 ? 1_000 : span <= 30_000 ? 2_000 : 10_000;
    for (let t = 0; t <= span; t += tick) {
      parts.push(
        `<line x1="${x(t)}" y1="${bottom}" x2="${x(t)}" y2="${bottom + 4}" stroke="#999"/>`,
        `<text x="${x(t)}" y="${bottom + 19}" font-size="13" fill="#555" text-anchor="middle">${t / 1000}</text>`,
      );
    }
    parts.push(
      `<text x="${(left + right) / 2}" y="${bottom + 40}" font-size="14" fill="#333" text-anchor="middle">seconds since start</text>`,
    );
    const height = bottom + 48;
    return `<figure><figcaption>${escape(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif"><title>${escape(title)}</title>${parts.join('')}</svg></figure>`;
  };
  const swatch = (color: string, label: string): string =>
    `<span class="key"><span style="background:${color}"></span>${escape(label)}</span>`;
  const lineKey = (color: string, dash: boolean, label: string): string =>
    `<span class="key"><svg class="line" viewBox="0 0 24 12"><line x1="0" y1="6" x2="24" y2="6" stroke="${color}" stroke-width="2.5"${dash ? ' stroke-dasharray="6 4"' : ''}/></svg>${escape(label)}</span>`;
  const legend = [
    ...Object.entries(COLORS).map(([state, color]) => swatch(color, state)),
    ...(scenario.rampMs > 0
      ? [swatch(RAMP, `recovery ramp (--ramp ${scenario.rampMs}: closed, admitting a growing share)`)]
      : []),
    ...(hasOutage ? [swatch(OUTAGE_FILL, 'outage')] : []),
    ...(hasFailing ? ['<span class="key">✗ failing downstream</span>'] : []),
    ...(hasHealthy
      ? [lineKey(HEALTHY_LINE, false, hasFailing ? 'healthy tenants’ jobs/s' : 'every tenant’s jobs/s')]
      : []),
    ...(hasFailing
      ? [lineKey(FAILING_LINE, true, hasHealthy ? 'failing tenants’ jobs/s' : 'every tenant’s jobs/s')]
      : []),
  ].join('');
  const [summary, table] = splitOnce(renderText(report), '\n\n');
  const intro = htmlIntro(report);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>circuitry demo</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222}
pre{background:#f5f5f5;padding:12px;overflow-x:auto;font-size:13px}
h1{font-size:22px;margin:0 0 8px}
.headline{font-size:16px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,520px),1fr));gap:24px}
figure{margin:0;min-width:0}
figure svg{display:block;width:100%;height:auto}
figcaption{font-weight:bold;font-size:14px;margin:8px 0 4px}
.key{display:inline-block;margin-right:14px;font-size:13px;white-space:nowrap}
.key span{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;outline:1px solid #0002}
.key svg.line{display:inline-block;width:24px;height:12px;margin-right:5px;vertical-align:-1px}
</style>
</head><body>
<h1>${escape(intro.title)}</h1>
<p>${intro.what}</p>
<p class="headline">${intro.headline}</p>
<p>${escape(summary)}</p>
<pre>${escape(table)}</pre>
<p>${legend}</p>
<div class="charts">
${runs.map((run) => chart(run, runTitle(run, scenario, bullmq))).join('\n')}
</div>
</body></html>
`;
}
