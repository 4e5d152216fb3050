import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_POLICY, toRow } from '../../src/cli/fleet.js';
import type { BreakerRow } from '../../src/cli/fleet.js';
import { formatSummary } from '../../src/cli/format.js';
import { MemoryStore } from '../../src/index.js';
import { ManualClock } from '../../src/testing/manual-clock.js';
import { trip } from '../helpers/cli.js';

/** Rows as a store answers them: `open/*` tripped, then each given override set. */
async function rows(
  overrides: Record<string, 'forced-open' | 'forced-closed' | 'metrics-only' | null>,
): Promise<BreakerRow[]> {
  const store = new MemoryStore({ clock: new ManualClock() });
  const out: BreakerRow[] = [];
  for (const [name, override] of Object.entries(overrides)) {
    if (name.startsWith('open/')) await trip(store, name);
    const result = store.force(name, DEFAULT_POLICY, override);
    out.push(toRow(name, result.snapshot));
  }
  return out;
}

describe('summaries count what callers see', () => {
  it('forced-closed over an open breaker counts as closed, forced-open over a closed one as open; computed beside', async () => {
    const fleet = await rows({
      'open/a': null,
      'open/b': 'forced-closed',
      'open/c': 'metrics-only',
      'closed/d': 'forced-open',
      'closed/e': null,
    });
    assert.deepEqual(
      fleet.map((r) => r.state),
      ['open', 'open', 'open', 'closed', 'closed'],
    );
    assert.equal(
      formatSummary(fleet),
      '5 breakers: 2 open, 0 half-open, 3 closed as callers see them (computed: 3 open, 0 half-open, 2 closed); 3 with an override',
    );
  });

  it('without overrides the computed counts are not repeated', async () => {
    assert.equal(
      formatSummary(await rows({ 'open/a': null, 'closed/b': null })),
      '2 breakers: 1 open, 0 half-open, 1 closed as callers see them; 0 with an override',
    );
  });
});
