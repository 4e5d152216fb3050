/**
 * Reading the fleet: every breaker in a store, paged through `Store.list` and inspected in
 * parallel with bounded concurrency, as plain rows that the CLI prints and the dashboard sends.
 */
import type { BreakerPolicy, CircuitState, Snapshot, WindowCounts } from '../core/types.js';
import { resolveOptions } from '../options.js';
import type { ListPage, Store } from '../store.js';
import { canExamine } from '../stores/record-report.js';
import { bounded } from './store-connection.js';

/**
 * The policy the operator tools read and force with: the store keeps no policy, and `inspect` and
 * `force` need one for window and open-period arithmetic. The defaults (see `--help`).
 */
export const DEFAULT_POLICY: BreakerPolicy = resolveOptions({}).policy;

/** One breaker as the CLI prints it (`--json`) and the dashboard shows it. */
export interface BreakerRow {
  readonly name: string;
  /** The computed state: closed, open or half-open. */
  readonly state: Snapshot['state'];
  /** The operator override, or null when none. */
  readonly override: Snapshot['override'];
  /** What callers see: the state, unless forced-open or forced-closed hides it. */
  readonly circuitState: CircuitState;
  readonly counts: WindowCounts;
  /** How long until the breaker admits a call again; 0 when it admits now. */
  readonly retryAfterMs: number;
  /** When the open period ends, in the store's clock (0 unless open). */
  readonly openUntil: number;
  readonly generation: number;
  readonly activeProbes: number;
  readonly reopens: number;
  /** The store's time when it was read. */
  readonly readAt: number;
  /** When a timed override lapses, in the store's clock (0: none, or it has no time). */
  readonly overrideUntil: number;
  /** Why the override was set (an `openFor` reason, an operator's `--reason`), or null. */
  readonly overrideReason: string | null;
  /** Calls holding a concurrency slot now (`maxConcurrent`; 0 without a limit). */
  readonly activeSlots: number;
  /**
   * The adaptive throttle's rejection rate a process reported with its latest failures, and when
   * (the store's clock); null when none did.
   */
  readonly throttle: { readonly rate: number; readonly reportedAt: number } | null;
}

export function toRow(name: string, s: Snapshot): BreakerRow {
  return {
    name,
    state: s.state,
    override: s.override,
    circuitState: s.circuitState,
    counts: s.counts,
    retryAfterMs: s.retryAfterMs,
    openUntil: s.openUntil,
    generation: s.generation,
    activeProbes: s.activeProbes,
    reopens: s.reopens,
    readAt: s.now,
    overrideUntil: s.overrideUntil ?? 0,
    overrideReason: s.overrideReason ?? null,
    activeSlots: s.activeSlots ?? 0,
    throttle: s.throttle === undefined ? null : { rate: s.throttle.rate, reportedAt: s.throttle.reportedAt },
  };
}

/** A `--match` glob: `*` is any run of characters, `?` one character; the rest is literal. */
export interface Glob {
  readonly test: (name: string) => boolean;
  /** The literal part before the first wildcard: the prefix handed to `Store.list`. */
  readonly prefix: string;
}

export function glob(pattern: string | undefined): Glob {
  if (pattern === undefined || pattern === '' || pattern === '*') return { test: () => true, prefix: '' };
  const wildcard = pattern.search(/[*?]/);
  const source = pattern
    .split('')
    .map((c) => (c === '*' ? '[\\s\\S]*' : c === '?' ? '[\\s\\S]' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  const re = new RegExp(`^${source}$`, 'u');
  return { test: (name) => re.test(name), prefix: wildcard === -1 ? pattern : pattern.slice(0, wildcard) };
}

/** Base name of a breaker: the part before the first `/` (the whole name when it has none). */
export function baseName(name: string): string {
  const slash = name.indexOf('/');
  return slash === -1 ? name : name.slice(0, slash);
}

/**
 * A breaker whose key holds something that is not a record this version can read: reported, never
 * repaired by a read (`reset NAME` replaces it).
 */
export interface CorruptRow {
  readonly name: string;
  readonly corrupt: true;
  /** What is wrong with it, as the store saw it. */
  readonly reason: string;
}

export function isCorrupt(row: BreakerRow | CorruptRow | null): row is CorruptRow {
  return row !== null && 'corrupt' in row;
}

/**
 * Reads one breaker, bounded, without writing anything: its row, a `CorruptRow` when what is
 * stored does not parse, or null when the store holds nothing for it. A store without `examine`
 * cannot tell the last two apart (its `inspect` answers null for both).
 */
export async function examineBreaker(
  store: Store,
  name: string,
  timeoutMs: number,
  policy: BreakerPolicy = DEFAULT_POLICY,
): Promise<BreakerRow | CorruptRow | null> {
  const what = `inspect ${JSON.stringify(name)}`;
  if (!canExamine(store)) {
    const snapshot = await bounded(store.inspect(name, policy), timeoutMs, what);
    return snapshot === null ? null : toRow(name, snapshot);
  }
  const report = await bounded(store.examine(name, policy), timeoutMs, what);
  if (report.kind === 'none') return null;
  if (report.kind === 'corrupt') return { name, corrupt: true, reason: report.reason };
  return toRow(name, report.snapshot);
}

/** Reads one breaker, bounded; null when the store holds nothing (or nothing readable) for it. */
export async function readBreaker(
  store: Store,
  name: string,
  timeoutMs: number,
  policy: BreakerPolicy = DEFAULT_POLICY,
): Promise<BreakerRow | null> {
  const row = await examineBreaker(store, name, timeoutMs, policy);
  return isCorrupt(row) ? null : row;
}

export interface ScanOptions {
  readonly match?: Glob;
  /** Inspections in flight at once. @defaultValue 64 */
  readonly concurrency?: number;
  readonly timeoutMs: number;
  readonly policy?: BreakerPolicy;
}

/**
 * Every breaker whose name matches, in the order the store listed them. Pages through `list`
 * while earlier names are being inspected; a name listed twice (a resharding cluster) is read
 * once, and one that vanished between list and inspect is left out.
 */
export async function scanFleet(store: Store, options: ScanOptions): Promise<BreakerRow[]> {
  return (await scanFleetReport(store, options)).rows;
}

export interface FleetScan {
  readonly rows: BreakerRow[];
  /** Listed keys (they carry the record marker) whose record does not parse. */
  readonly corrupt: CorruptRow[];
}

/** `scanFleet`, with the records that do not parse reported beside the rows. */
export async function scanFleetReport(store: Store, options: ScanOptions): Promise<FleetScan> {
  const match = options.match ?? glob(undefined);
  const concurrency = options.concurrency ?? 64;
  const policy = options.policy ?? DEFAULT_POLICY;
  const rows: BreakerRow[] = [];
  const corrupt: CorruptRow[] = [];
  const seen = new Set<string>();
  const inFlight = new Set<Promise<void>>();
  const failed: { error?: unknown; failed: boolean } = { failed: false };
  let cursor: string | null = null;
  do {
    const page: ListPage = await bounded(store.list(match.prefix, cursor), options.timeoutMs, 'list');
    for (const name of page.keys) {
      if (seen.has(name) || !match.test(name)) continue;
      seen.add(name);
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failed.failed) throw failed.error;
      const read: Promise<void> = examineBreaker(store, name, options.timeoutMs, policy).then(
        (row) => {
          if (isCorrupt(row)) corrupt.push(row);
          else if (row !== null) rows.push(row);
        },
        (error: unknown) => {
          if (failed.failed) return;
          failed.failed = true;
          failed.error = error;
        },
      );
      const tracked = read.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    cursor = page.cursor;
  } while (cursor !== null && !failed.failed);
  await Promise.all(inFlight);
  if (failed.failed) throw failed.error;
  return { rows, corrupt };
}

/** `--state` values: a computed state, or an override. */
export const STATE_FILTERS = [
  'closed',
  'open',
  'half-open',
  'forced-open',
  'forced-closed',
  'metrics-only',
] as const;

export function matchesState(row: BreakerRow, state: string): boolean {
  if (state === 'closed' || state === 'open' || state === 'half-open') return row.state === state;
  return row.override === state;
}

/**
 * The state callers see: forced-open counts as open and forced-closed as closed, whatever the
 * computed state; metrics-only admits every call, so it counts as closed.
 */
export function effectiveState(row: BreakerRow): 'open' | 'half-open' | 'closed' {
  if (row.override === 'forced-open') return 'open';
  if (row.override === 'forced-closed' || row.override === 'metrics-only') return 'closed';
  return row.state;
}

/** Open first, then half-open, then the rest; by name within each. */
export function byUrgency(a: BreakerRow, b: BreakerRow): number {
  const rank = (r: BreakerRow): number =>
    r.circuitState === 'open' || r.circuitState === 'forced-open' ? 0 : r.state === 'half-open' ? 1 : 2;
  return rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}
