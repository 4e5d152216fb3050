/**
 * Transitions as they happen, for `watch` and the dashboard: pushed by the store when it can
 * (`Store.subscribe`: Redis pub/sub, Postgres LISTEN/NOTIFY), otherwise found by reading the fleet every `pollMs` and
 * comparing (DynamoDB): a poll sees where a breaker is, not every step it took in between.
 */
import type { StateChangeMessage, Store } from '../store.js';
import type { BreakerRow, Glob } from './fleet.js';
import { glob, scanFleet } from './fleet.js';

export interface WatchOptions {
  readonly match?: Glob;
  readonly timeoutMs: number;
  /** How often a store that cannot push is read. @defaultValue 1000 */
  readonly pollMs?: number;
  readonly onTransition: (message: StateChangeMessage) => void;
  /** Pushes may have been missed (the subscription dropped and came back). */
  readonly onResync?: () => void;
  /** A poll failed (the store is away); polling goes on. */
  readonly onPollError?: (error: unknown) => void;
  /** Every poll's rows, for a caller that keeps a view of the fleet. */
  readonly onPoll?: (rows: readonly BreakerRow[]) => void;
}

export interface Watching {
  /** Whether transitions are pushed (true) or found by polling (false). */
  readonly pushed: boolean;
  stop(): Promise<void>;
}

export async function watchTransitions(store: Store, options: WatchOptions): Promise<Watching> {
  const match = options.match ?? glob(undefined);
  if (store.subscribe !== undefined) {
    const unsubscribe = await store.subscribe(
      (message) => {
        if (match.test(message.key)) options.onTransition(message);
      },
      { ...(options.onResync === undefined ? {} : { onResync: options.onResync }) },
    );
    return { pushed: true, stop: unsubscribe };
  }
  return { pushed: false, stop: poll(store, match, options) };
}

function poll(store: Store, match: Glob, options: WatchOptions): () => Promise<void> {
  const pollMs = options.pollMs ?? 1_000;
  let known: Map<string, BreakerRow> | null = null;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> = Promise.resolve();
  const once = async (): Promise<void> => {
    try {
      const rows = await scanFleet(store, { match, timeoutMs: options.timeoutMs });
      if (stopped) return;
      const next = new Map(rows.map((r) => [r.name, r]));
      if (known !== null) {
        for (const row of rows) {
          const before = known.get(row.name);
          // A breaker without a record is closed.
          const from = before?.circuitState ?? 'closed';
          if (from !== row.circuitState) {
            options.onTransition({
              key: row.name,
              from,
              to: row.circuitState,
              generation: row.generation,
              openUntil: row.openUntil,
              now: row.readAt,
              override: row.override,
            });
          }
        }
      }
      known = next;
      options.onPoll?.(rows);
    } catch (error) {
      options.onPollError?.(error);
    }
    if (!stopped) {
      timer = setTimeout(() => {
        running = once();
      }, pollMs);
    }
  };
  running = once();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
