import type { RunResult, Scenario } from './simulation.js';
import { tenantName } from './simulation.js';

export interface DemoReport {
  readonly scenario: Scenario;
  readonly store: string;
  readonly without: RunResult;
  readonly with: RunResult;
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
      'healthy tenants: jobs per second',
      a.healthyThroughput.toFixed(0),
      b.healthyThroughput.toFixed(0),
      ratio(b.healthyThroughput, a.healthyThroughput),
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
    ['jobs deferred by retryAfterMs', '-', String(b.deferred), ''],
    ['outage detected after', '-', ms(b.detectMs), ''],
    ['recovered (closed) after the outage ended', '-', ms(b.recoverMs), ''],
  ];
  const widths = [0, 1, 2, 3].map((i) =>
    Math.max(...rows.map((r) => r[i]!.length), ['', 'retry in worker', 'per-tenant breakers', ''][i]!.length),
  );
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `${s.tenants} tenants, ${s.workers} workers, ${s.jobsPerSecond} jobs/s per tenant, ${(s.durationMs / 1000).toFixed(0)} s per run; ` +
      `${s.failing} tenant${s.failing === 1 ? '' : 's'} (${Array.from({ length: s.failing }, (_, i) => tenantName(i)).join(', ')}) down from ` +
      `${((s.outage[0] * s.durationMs) / 1000).toFixed(1)} s to ${((s.outage[1] * s.durationMs) / 1000).toFixed(1)} s. Store: ${report.store}.`,
    '',
    line(['', 'retry in worker', 'per-tenant breakers', '']),
    ...rows.map(line),
  ].join('\n');
}

const COLORS: Record<string, string> = {
  closed: '#2e9e5b',
  open: '#d64545',
  'half-open': '#e0a030',
  'no breaker': '#c8c8c8',
};

/** A self-contained HTML page: the comparison and, per run, a timeline of states and throughput. */
export function renderHtml(report: DemoReport): string {
  const escape = (text: string): string => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const chart = (run: RunResult, title: string): string => {
    const width = 900;
    const row = 22;
    const tenants = report.scenario.tenants;
    const plotTop = 30;
    const statesHeight = tenants * row;
    const throughputTop = plotTop + statesHeight + 30;
    const throughputHeight = 120;
    const left = 90;
    const span = report.scenario.durationMs;
    const x = (t: number): number => left + ((width - left - 10) * t) / span;
    const parts: string[] = [];
    const step = run.timeline.length > 1 ? run.timeline[1]!.t - run.timeline[0]!.t : 250;
    const [outStart, outEnd] = report.scenario.outage.map((f) => f * span) as [number, number];
    parts.push(
      `<rect x="${x(outStart)}" y="${plotTop - 8}" width="${x(outEnd) - x(outStart)}" height="${throughputTop + throughputHeight - plotTop + 8}" fill="#d6454514"/>`,
    );
    parts.push(`<text x="${x(outStart) + 4}" y="${plotTop - 12}" font-size="11" fill="#a33">outage</text>`);
    for (let i = 0; i < tenants; i++) {
      const y = plotTop + i * row;
      parts.push(
        `<text x="4" y="${y + 15}" font-size="12">${escape(tenantName(i))}${i < report.scenario.failing ? ' ✗' : ''}</text>`,
      );
      for (const sample of run.timeline) {
        const state = run.withBreakers ? (sample.states[i] ?? 'closed') : 'no breaker';
        parts.push(
          `<rect x="${x(sample.t - step)}" y="${y + 2}" width="${Math.max(1, x(sample.t) - x(sample.t - step))}" height="${row - 6}" fill="${COLORS[state] ?? '#999'}"/>`,
        );
      }
    }
    const healthy = run.timeline.map(
      (s) => s.completed.slice(report.scenario.failing).reduce((a, b) => a + b, 0) / (step / 1000),
    );
    const peak = Math.max(1, ...healthy);
    const points = run.timeline.map(
      (s, i) =>
        `${x(s.t).toFixed(1)},${(throughputTop + throughputHeight - (throughputHeight * healthy[i]!) / peak).toFixed(1)}`,
    );
    parts.push(`<text x="4" y="${throughputTop + 12}" font-size="12">healthy jobs/s</text>`);
    parts.push(
      `<text x="4" y="${throughputTop + 28}" font-size="11" fill="#666">peak ${Math.round(peak)}</text>`,
    );
    parts.push(
      `<line x1="${left}" y1="${throughputTop + throughputHeight}" x2="${width - 10}" y2="${throughputTop + throughputHeight}" stroke="#999"/>`,
    );
    parts.push(`<polyline fill="none" stroke="#3060c0" stroke-width="2" points="${points.join(' ')}"/>`);
    for (let s = 0; s <= span / 1000; s += 2) {
      parts.push(
        `<text x="${x(s * 1000) - 6}" y="${throughputTop + throughputHeight + 16}" font-size="11" fill="#666">${s}s</text>`,
      );
    }
    const height = throughputTop + throughputHeight + 26;
    return `<h2>${escape(title)}</h2><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">${parts.join('')}</svg>`;
  };
  const legend = Object.entries(COLORS)
    .map(
      ([state, color]) =>
        `<span style="display:inline-block;width:12px;height:12px;background:${color};margin:0 4px 0 12px"></span>${state}`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>circuitry demo</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}pre{background:#f5f5f5;padding:12px;white-space:pre-wrap}h2{font-size:16px;margin-top:28px}</style>
</head><body>
<h1>Per-tenant circuit breakers in a shared job queue</h1>
<p>The same workload twice: workers retrying a failing tenant's jobs in place, then per-tenant breakers deferring them by <code>retryAfterMs</code>.</p>
<pre>${escape(renderText(report))}</pre>
<p>Breaker state per tenant:${legend}</p>
${chart(report.without, 'Without breakers: workers retry the failing tenant’s jobs in place')}
${chart(report.with, 'With per-tenant breakers')}
</body></html>
`;
}
