/**
 * The dashboard's view of the fleet, kept in the server process: every breaker's last row, read
 * in full now and then, and at once for a breaker the store says changed; and a timeline of
 * recent transitions. Browsers get a snapshot when they connect, then only what changed.
 */
import type { StateChangeMessage, Store } from '../../store.js';
import type { BreakerRow, Glob } from '../fleet.js';
import { readBreaker, scanFleet } from '../fleet.js';
import type { Watching } from '../transitions.js';
import { watchTransitions } from '../transitions.js';

export interface TimelineEntry {
  /** Wall-clock time this process heard of it (ms since the epoch). */
  readonly at: number;
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly generation: number;
}

export type ViewEvent =
  | { readonly type: 'rows'; readonly rows: readonly BreakerRow[] }
  | { readonly type: 'removed'; readonly names: readonly string[] }
  | { readonly type: 'transition'; readonly entry: TimelineEntry }
  | { readonly type: 'health'; readonly ok: boolean; readonly message: string };

export interface FleetViewOptions {
  readonly store: Store;
  readonly match: Glob;
  readonly timeoutMs: number;
  /** Full re-read period when the store pushes transitions (counts are never pushed). @defaultValue 2000 */
  readonly refreshMs?: number;
  /** How often a store that cannot push is read. @defaultValue 1000 */
  readonly pollMs?: number;
  /** Entries kept in the timeline. @defaultValue 200 */
  readonly timelineSize?: number;
}

function sameRow(a: BreakerRow, b: BreakerRow): boolean {
  return (
    a.state === b.state &&
    a.override === b.override &&
    a.generation === b.generation &&
    a.openUntil === b.openUntil &&
    a.activeProbes === b.activeProbes &&
    a.activeSlots === b.activeSlots &&
    a.throttle?.rate === b.throttle?.rate &&
    a.throttle?.reportedAt === b.throttle?.reportedAt &&
    a.counts.successes === b.counts.successes &&
    a.counts.failures === b.counts.failures &&
    a.counts.slow === b.counts.slow &&
    a.counts.ignored === b.counts.ignored &&
    a.counts.consecutiveFailures === b.counts.consecutiveFailures
  );
}

export class FleetView {
  readonly rows = new Map<string, BreakerRow>();
  readonly timeline: TimelineEntry[] = [];
  health: { ok: boolean; message: string } = { ok: true, message: 'connecting' };
  pushed = false;
  readonly #options: FleetViewOptions;
  readonly #listeners = new Set<(event: ViewEvent) => void>();
  #watching: Watching | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #refreshing: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: FleetViewOptions) {
    this.#options = options;
  }

  /** Reads the fleet once (throws when the store cannot be read), then keeps the view current. */
  async start(): Promise<void> {
    const rows = await scanFleet(this.#options.store, {
      match: this.#options.match,
      timeoutMs: this.#options.timeoutMs,
    });
    this.#apply(rows);
    this.#setHealth(true, 'live');
    this.#watching = await watchTransitions(this.#options.store, {
      match: this.#options.match,
      timeoutMs: this.#options.timeoutMs,
      ...(this.#options.pollMs === undefined ? {} : { pollMs: this.#options.pollMs }),
      onTransition: (message) => this.#onTransition(message),
      onResync: () => this.#schedule(0),
      onPoll: (polled) => {
        this.#setHealth(true, 'live');
        this.#apply(polled);
      },
      onPollError: (error) => this.#setHealth(false, (error as Error).message),
    });
    this.pushed = this.#watching.pushed;
    if (this.pushed) this.#schedule(this.#options.refreshMs ?? 2_000);
  }

  subscribe(listener: (event: ViewEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Re-reads one breaker now (after an action, or a pushed transition). */
  async refreshOne(name: string): Promise<void> {
    try {
      const row = await readBreaker(this.#options.store, name, this.#options.timeoutMs);
      if (row === null) {
        if (this.rows.delete(name)) this.#emit({ type: 'removed', names: [name] });
      } else {
        this.#upsert([row]);
      }
    } catch (error) {
      this.#setHealth(false, (error as Error).message);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#watching?.stop();
    await this.#refreshing;
    this.#listeners.clear();
  }

  #onTransition(message: StateChangeMessage): void {
    const entry: TimelineEntry = {
      at: Date.now(),
      name: message.key,
      from: message.from,
      to: message.to,
      generation: message.generation,
    };
    this.timeline.push(entry);
    const size = this.#options.timelineSize ?? 200;
    if (this.timeline.length > size) this.timeline.splice(0, this.timeline.length - size);
    this.#emit({ type: 'transition', entry });
    if (this.pushed) void this.refreshOne(message.key);
  }

  /** The next full read, `ms` from now; a fleet that takes long to read is read less often. */
  #schedule(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      const started = Date.now();
      this.#refreshing = scanFleet(this.#options.store, {
        match: this.#options.match,
        timeoutMs: this.#options.timeoutMs,
      }).then(
        (rows) => {
          if (this.#stopped) return;
          this.#setHealth(true, 'live');
          this.#apply(rows);
        },
        (error: unknown) => this.#setHealth(false, (error as Error).message),
      );
      void this.#refreshing.then(() =>
        this.#schedule(Math.max(this.#options.refreshMs ?? 2_000, 2 * (Date.now() - started))),
      );
    }, ms);
  }

  /** A full read: changed and new rows are sent, and rows no longer in the store removed. */
  #apply(rows: readonly BreakerRow[]): void {
    const seen = new Set<string>();
    for (const row of rows) seen.add(row.name);
    const removed = [...this.rows.keys()].filter((name) => !seen.has(name));
    for (const name of removed) this.rows.delete(name);
    if (removed.length > 0) this.#emit({ type: 'removed', names: removed });
    this.#upsert(rows);
  }

  #upsert(rows: readonly BreakerRow[]): void {
    const changed: BreakerRow[] = [];
    for (const row of rows) {
      const before = this.rows.get(row.name);
      // A row whose open period is counting down is sent again only when something else changed.
      if (before === undefined || !sameRow(before, row)) changed.push(row);
      this.rows.set(row.name, row);
    }
    if (changed.length > 0) this.#emit({ type: 'rows', rows: changed });
  }

  #setHealth(ok: boolean, message: string): void {
    if (this.health.ok === ok && this.health.message === message) return;
    this.health = { ok, message };
    this.#emit({ type: 'health', ok, message });
  }

  #emit(event: ViewEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
