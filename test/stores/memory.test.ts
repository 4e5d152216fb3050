import { MemoryStore } from '../../src/index.js';
import { describeStoreConformance } from '../../src/testing/conformance.js';
import type { CorruptionKind } from '../../src/testing/conformance.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { emptyRecord } from '../../src/core/reducer.js';

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

describeStoreConformance('MemoryStore', () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  return {
    store,
    advance: (ms) => clock.advance(ms),
    corrupt: (key, kind) => store.writeRawForTesting(key, corrupted(kind)),
  };
});
