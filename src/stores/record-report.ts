/**
 * What an operator's read finds for one breaker, for the operator tools (`npx circuitry`): a
 * record, a record that does not parse (with why), or nothing. `Store.inspect` answers null for
 * both of the last two, since to a breaker a record it cannot read is no record (its next write
 * replaces it); an operator needs to tell them apart, and a read must never repair what it found
 * (repairing is `reset`, an explicit write).
 *
 * A capability, not part of the Store contract: every store circuitry ships has `examine`; the
 * tools ask for it (`canExamine`) and fall back to `inspect` for a store without it.
 */
import type { BreakerPolicy, Snapshot } from '../core/types.js';
import type { Awaitable, Store } from '../store.js';

/**
 * What `examine` finds for one breaker: a record, something that is not a record this version can
 * read, or nothing. `Store.inspect` answers null for the last two; an operator needs to tell them
 * apart.
 */
export type RecordReport =
  | {
      /** A record this version can read. */
      readonly kind: 'record';
      /** The breaker's state, as `inspect` answers it. */
      readonly snapshot: Snapshot;
    }
  | {
      /** Something is stored under the breaker's key, but not a record this version can read. */
      readonly kind: 'corrupt';
      /** What is wrong with it, for operators. */
      readonly reason: string;
    }
  | {
      /** Nothing is stored for the breaker. */
      readonly kind: 'none';
    };

/** A store that can tell operators what it holds for a breaker (every store circuitry ships). */
export interface RecordExaminer {
  /** What is stored for `name`, read without writing anything (no repair, no TTL refresh). */
  examine(name: string, policy: BreakerPolicy): Awaitable<RecordReport>;
}

export function canExamine(store: Store): store is Store & RecordExaminer {
  return typeof (store as Partial<RecordExaminer>).examine === 'function';
}
