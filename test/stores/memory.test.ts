import { MemoryStore } from '../../src/index.js';
import { describeStoreConformance } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { emptyRecord } from '../../src/core/reducer.js';
import type { Store } from '../../src/store.js';
import { delegatingStore } from '../helpers/delegating-store.js';

function corrupted(kind: CorruptionKind): unknown {
  const record: Record<string, unknown> = {
    ...emptyRecord(),
    state: 'open',
    openUntil: Number.MAX_SAFE_INTEGER,
  };
  switch (kind) {
    case 'garbage':
      return 'not a record';
    case 'missing-field':
      delete record.generation;
      return record;
    case 'wrong-type':
      return { ...record, generation: 'seven' };
    case 'foreign-schema':
      return { ...record, schema: 99 };
  }
}

describeStoreConformance(
  'MemoryStore',
  () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    return {
      store,
      advance: (ms) => clock.advance(ms),
      corrupt: (key, kind) => store.writeRawForTesting(key, corrupted(kind)),
    };
  },
  { concurrencyLimit: true, quorum: true },
);

/** A store written before `Store.reset` existed: everything else, delegated to a MemoryStore. */
const withoutReset = (store: MemoryStore): Store => delegatingStore(store, { subscribe: true });

// Such a store still passes, once it says it has no reset (without saying so, the reset tests fail).
describeStoreConformance(
  'a store without reset',
  () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    return {
      store: withoutReset(store),
      advance: (ms) => clock.advance(ms),
      corrupt: (key, kind) => store.writeRawForTesting(key, corrupted(kind)),
    };
  },
  { reset: false },
);
