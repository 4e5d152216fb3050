import type { FailurePattern, RunResult, Scenario } from './simulation.js';
import { BASE_NAME, tenantName } from './simulation.js';

export interface DemoReport {
  readonly scenario: Scenario;
  readonly store: string;
  readonly without: RunResult;
  readonly with: RunResult;
  /** The jobs ran on a real BullMQ queue (`--bullmq`): BullMQ retried them, not the worker. */
  readonly bullmq?: boolean;
}

/** What the run without breakers did with a failed job, as a column header. */
const withoutLabel = (report: DemoReport): string =>
  report.bullmq === true ? 'BullMQ retries' : 'retry in worker';

function describePattern(pattern: FailurePattern): string {
  if (pattern.kind === 'rate') return `failing ${Math.round(pattern.rate * 100)}% of calls`;
  if (pattern.kind === 'pattern') return `failing in the cycle ${pattern.pattern}`;
  return 'down';
}

const ms = (value: number | null): string => (value === null ? 'n/a' : `${Math.round(value)} ms`);

/** The comparison as a text table. */
export function renderText(report: DemoReport): string {
  const { without: a, with: b, scenario: s } = report;
  const ratio = (x: number, y: number): string => (y === 0 ? '' : `${(x / y).toFixed(2)}x`);
  const rows: Array<[string, string, string, string]> = [
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
  const header = ['', withoutLabel(report), 'per-tenant breakers', ''];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length), header[i]!.length));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [
    `${s.tenants} tenants, ${s.workers} workers, ${s.jobsPerSecond} jobs/s per tenant, ${(s.durationMs / 1000).toFixed(0)} s per run; ` +
      `${s.failing} tenant${s.failing === 1 ? '' : 's'} (${Array.from({ length: s.failing }, (_, i) => tenantName(i)).join(', ')}) ` +
      `${describePattern(s.pattern)} from ` +
      `${((s.outage[0] * s.durationMs) / 1000).toFixed(1)} s to ${((s.outage[1] * s.durationMs) / 1000).toFixed(1)} s (seed ${s.seed}). Store: ${report.store}.`,
    '',
    line(header),
    ...rows.map(line),
  ].join('\n');
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

/**
 * The JSON results: the report without the sampled timelines. The transitions stay, each with the
 * name of the breaker that made it (`downstream/tenant-a`), as the CLI and the dashboard show it.
 */
export function renderJson(report: DemoReport): string {
  const named = ({ timeline: _, transitions, ...run }: RunResult) => ({
    ...run,
    transitions: transitions.map(({ t, tenant, to }) => ({
      t,
      breaker: `${BASE_NAME}/${tenantName(tenant)}`,
      to,
    })),
  });
  const without = named(report.without);
  const withBreakers = named(report.with);
  const queue = report.bullmq === true ? 'bullmq' : 'simulated';
  return `${JSON.stringify({ scenario: report.scenario, store: report.store, queue, without, with: withBreakers }, null, 2)}\n`;
}

const splitOnce = (text: string, separator: string): [string, string] => {
  const at = text.indexOf(separator);
  return at === -1 ? ['', text] : [text.slice(0, at), text.slice(at + separator.length)];
};

/** A self-contained HTML page: the comparison and, per run, a timeline of states and throughput. */
export function renderHtml(report: DemoReport): string {
  const escape = (text: string): string => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const { scenario } = report;
  const span = scenario.durationMs;
  const stepOf = (run: RunResult): number =>
    run.timeline.length > 1 ? run.timeline[1]!.t - run.timeline[0]!.t : 250;
  const perSecond = (run: RunResult, from: number, to: number): number[] =>
    run.timeline.map((s) => s.completed.slice(from, to).reduce((a, b) => a + b, 0) / (stepOf(run) / 1000));
  // One scale for both runs, so the two charts compare at a glance.
  const niceCeil = (value: number): number => {
    const unit = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 2.5, 5, 10].map((m) => m * unit).find((v) => v >= value)!;
  };
  const peak = niceCeil(
    Math.max(
      1,
      ...[report.without, report.with].flatMap((run) => [
        ...perSecond(run, scenario.failing, scenario.tenants),
        ...perSecond(run, 0, scenario.failing),
      ]),
    ),
  );

  // Drawn in a 720-unit-wide viewBox and scaled to the column's width by the browser.
  const chart = (run: RunResult, title: string): string => {
    const width = 720;
    const row = 22;
    const left = 96;
    const right = width - 14;
    const plotTop = 26;
    const statesHeight = scenario.tenants * row;
    const throughputTop = plotTop + statesHeight + 26;
    const throughputHeight = 150;
    const bottom = throughputTop + throughputHeight;
    const x = (t: number): number => left + ((right - left) * Math.min(Math.max(t, 0), span)) / span;
    const y = (value: number): number => bottom - (throughputHeight * value) / peak;
    const parts: string[] = [];
    const step = stepOf(run);
    const [outStart, outEnd] = scenario.outage.map((f) => f * span) as [number, number];
    parts.push(
      `<rect x="${x(outStart)}" y="${plotTop - 6}" width="${x(outEnd) - x(outStart)}" height="${bottom - plotTop + 6}" fill="${OUTAGE_FILL}"/>`,
      `<text x="${x(outStart) + 4}" y="${plotTop - 10}" font-size="14" fill="#444">outage</text>`,
    );
    for (let i = 0; i < scenario.tenants; i++) {
      const top = plotTop + i * row;
      const failing = i < scenario.failing;
      parts.push(
        `<text x="4" y="${top + 15}" font-size="14"${failing ? ' font-weight="bold"' : ''}>${escape(tenantName(i))}${failing ? ' ✗' : ''}</text>`,
      );
      // One bar per state, from the transitions themselves: a probe's short half-open shows too.
      const bars: Array<{ from: number; state: string }> = [
        { from: 0, state: run.withBreakers ? 'closed' : 'no breaker' },
      ];
      for (const change of run.transitions)
        if (change.tenant === i) bars.push({ from: change.t, state: change.to });
      bars.forEach((bar, k) => {
        const x0 = x(bar.from);
        const x1 = x(bars[k + 1]?.from ?? span);
        parts.push(
          `<rect x="${x0.toFixed(1)}" y="${top + 3}" width="${Math.max(2, x1 - x0).toFixed(1)}" height="${row - 6}" fill="${COLORS[bar.state] ?? '#999'}"><title>${escape(tenantName(i))}: ${bar.state} from ${(bar.from / 1000).toFixed(2)} s</title></rect>`,
        );
      });
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
    parts.push(
      `<text x="4" y="${throughputTop + 14}" font-size="14">jobs/s</text>`,
      line(perSecond(run, scenario.failing, scenario.tenants), HEALTHY_LINE, ''),
      line(perSecond(run, 0, scenario.failing), FAILING_LINE, '6 4'),
    );
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
    swatch(OUTAGE_FILL, 'outage'),
    '<span class="key">✗ failing downstream</span>',
    lineKey(HEALTHY_LINE, false, 'healthy tenants’ jobs/s'),
    lineKey(FAILING_LINE, true, 'failing tenants’ jobs/s'),
  ].join('');
  const [summary, table] = splitOnce(renderText(report), '\n\n');
  const { without: a, with: b } = report;
  const failingNames = Array.from({ length: scenario.failing }, (_, i) => tenantName(i)).join(', ');
  const headline =
    `While ${escape(failingNames)}’s downstream was down, the healthy tenants completed ` +
    `<strong>${a.healthyThroughputDuringOutage.toFixed(0)} jobs/s</strong> with ${report.bullmq === true ? 'BullMQ’s retries' : 'retries in the worker'} and ` +
    `<strong>${b.healthyThroughputDuringOutage.toFixed(0)} jobs/s</strong> with per-tenant breakers ` +
    `(they enqueue ${(scenario.jobsPerSecond * (scenario.tenants - scenario.failing)).toFixed(0)} jobs/s).`;
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
<h1>Per-tenant circuit breakers in a shared job queue</h1>
<p>${
    report.bullmq === true
      ? 'The same workload twice on a BullMQ queue: BullMQ retrying a failing tenant’s jobs (attempts, backoff), then <code>withBreaker</code> deferring them by the breaker’s <code>retryAfterMs</code>.'
      : 'The same workload twice: workers retrying a failing tenant’s jobs in place, then per-tenant breakers deferring them by <code>retryAfterMs</code>.'
  }</p>
<p class="headline">${headline}</p>
<p>${escape(summary)}</p>
<pre>${escape(table)}</pre>
<p>${legend}</p>
<div class="charts">
${chart(report.without, report.bullmq === true ? 'Without breakers: BullMQ retries the failing tenant’s jobs' : 'Without breakers: workers retry the failing tenant’s jobs in place')}
${chart(report.with, 'With per-tenant breakers: its jobs are deferred')}
</div>
</body></html>
`;
}
