/** Text output of the operator commands: tables and one-line summaries, no colours. */
import type { StateChangeMessage } from '../store.js';
import type { BreakerRow, CorruptRow } from './fleet.js';
import { effectiveState } from './fleet.js';

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function formatRate(rate: number): string {
  return `${(rate * 100).toFixed(rate === 0 || rate === 1 ? 0 : 1)}%`;
}

/** Retry-after as a cell: `-` when the breaker admits, `due` when an open period has ended. */
export function formatRetryAfter(row: BreakerRow): string {
  if (row.circuitState === 'forced-open') return 'until cleared';
  if (row.state !== 'open') return '-';
  if (row.override === 'metrics-only' || row.override === 'forced-closed') return '-';
  return row.retryAfterMs > 0 ? formatDuration(row.retryAfterMs) : 'due (probe on next call)';
}

/** A name as a terminal shows it: control characters escaped, so a name cannot move the cursor. */
export function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f-\u009f]/.test(name) ? JSON.stringify(name) : name;
}

// No generation: it matters to tools (--json has it), not to a person reading the fleet.
const HEADER = ['NAME', 'STATE', 'OVERRIDE', 'FAILED/CALLS', 'RATE', 'CONSEC', 'RETRY-AFTER'];

function cells(row: BreakerRow): string[] {
  return [
    printable(row.name),
    row.state,
    row.override === null
      ? '-'
      : row.overrideUntil > 0
        ? `${row.override} (${formatDuration(row.overrideUntil - row.readAt)})`
        : row.override,
    `${row.counts.failures}/${row.counts.total}`,
    formatRate(row.counts.failureRate),
    String(row.counts.consecutiveFailures),
    formatRetryAfter(row),
  ];
}

export function formatTable(rows: readonly BreakerRow[]): string {
  const table = [HEADER, ...rows.map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * `N breakers: 2 open, 1 half-open, 7 closed as callers see them (computed: ...)`: the counts are
 * of the effective state (forced-open is open, forced-closed and metrics-only closed), the
 * computed states beside them when an override makes them differ.
 */
export function formatSummary(rows: readonly BreakerRow[]): string {
  const seen = { open: 0, 'half-open': 0, closed: 0 };
  const computed = { open: 0, 'half-open': 0, closed: 0 };
  let overridden = 0;
  for (const r of rows) {
    seen[effectiveState(r)] += 1;
    computed[r.state] += 1;
    if (r.override !== null) overridden += 1;
  }
  const counts = (c: typeof seen): string =>
    `${c.open} open, ${c['half-open']} half-open, ${c.closed} closed`;
  const differs = seen.open !== computed.open || seen['half-open'] !== computed['half-open'];
  return `${rows.length} breaker${rows.length === 1 ? '' : 's'}: ${counts(seen)} as callers see them${differs ? ` (computed: ${counts(computed)})` : ''}; ${overridden} with an override`;
}

/** `status NAME`: one field a line. */
export function formatStatus(row: BreakerRow): string {
  const c = row.counts;
  return [
    `name           ${printable(row.name)}`,
    `state          ${row.state}${row.circuitState !== row.state ? ` (callers see ${row.circuitState})` : ''}`,
    `override       ${formatOverride(row)}`,
    `counts         ${c.failures} failed of ${c.total} (${formatRate(c.failureRate)}), ${c.slow} slow, ${c.ignored} ignored, ${c.consecutiveFailures} consecutive failures`,
    `retry after    ${formatRetryAfter(row)}`,
    `probes         ${row.activeProbes} in flight; ${row.reopens} re-opens without a close`,
    `slots          ${row.activeSlots} calls holding a concurrency slot (maxConcurrent)`,
    `throttle       ${formatThrottle(row)}`,
    `generation     ${row.generation}`,
  ].join('\n');
}

/**
 * What the adaptive throttle's processes last reported: `rejecting 37% of calls (reported 4.2 s
 * ago, with failures)`, or `none reported`. Each process throttles on what it sees; the rate is
 * that of the last one that wrote failures, and is not refreshed while calls succeed.
 */
export function formatThrottle(row: Pick<BreakerRow, 'throttle' | 'readAt'>): string {
  const t = row.throttle;
  if (t === null) return 'none reported';
  const age = formatDuration(Math.max(0, row.readAt - t.reportedAt));
  return `rejecting ${formatRate(t.rate)} of calls (reported ${age} ago, with failures)`;
}

/** The override, with the time it has left and why it was set: `forced-open for 28 s more (Retry-After from ...)`. */
export function formatOverride(row: BreakerRow): string {
  if (row.override === null) return 'none';
  const left =
    row.overrideUntil > 0 ? ` for ${formatDuration(Math.max(0, row.overrideUntil - row.readAt))} more` : '';
  const why = row.overrideReason === null ? '' : ` (${printable(row.overrideReason)})`;
  return `${row.override}${left}${why}`;
}

/** One line of a row, for `before`/`after` of an override action. */
export function formatLine(row: BreakerRow | null): string {
  if (row === null) return '(no record: a breaker that never failed)';
  return `${row.state}, override ${formatOverride(row)}, ${row.counts.failures}/${row.counts.total} failed (${formatRate(row.counts.failureRate)}), retry after ${formatRetryAfter(row)}, generation ${row.generation}`;
}

/** `watch`: one line per transition. */
export function formatTransition(message: StateChangeMessage, at: Date): string {
  const open = message.to === 'open' && message.openUntil > message.now;
  const override =
    message.override === undefined
      ? ''
      : `, override ${message.override === null ? 'none' : message.override}`;
  return `${at.toISOString()}  ${printable(message.key)}  ${message.from} -> ${message.to}${open ? `, retry after ${formatDuration(message.openUntil - message.now)}` : ''}${override}, generation ${message.generation}`;
}

/** Records that do not parse: reported, never repaired by a read. */
export function formatCorrupt(rows: readonly CorruptRow[]): string {
  return [
    `${rows.length} unreadable record${rows.length === 1 ? '' : 's'} (left as they are; \`circuitry reset NAME\` replaces one):`,
    ...rows.map((r) => `  ${printable(r.name)}: ${r.reason}`),
  ].join('\n');
}
