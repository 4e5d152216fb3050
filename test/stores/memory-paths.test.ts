import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { consecutiveFailures, failureRate } from '../../src/core/policy.js';
import { emptyRecord } from '../../src/core/reducer.js';
import type { OutcomeBatch, Transition } from '../../src/core/types.js';
import { resolveOptions } from '../../src/options.js';
import type { StateChangeMessage } from '../../src/store.js';
import { MemoryStore, inProcess } from '../../src/stores/memory.js';
import { ManualClock } from '../../src/testing/manual-clock.js';

// MemoryStore's own paths: the in-process closed path the breaker uses, listing, lease ids and
// raw records (found by mutation testing: `npm run mutation`). Clocks start at 0, where a new
// record's generation (100 per ms of store time, at least 100) is G.
const G = 100;

const policy = resolveOptions({ trip: consecutiveFailures(2), openMs: 1_000, jitter: 0 }).policy;

function outcome(fields: Partial<OutcomeBatch>): OutcomeBatch {
  return {
    generation: G,
    successes: 0,
    failures: 0,
    trailingFailures: 0,
    slow: 0,
    ignored: 0,
    probes: [],
    random: 0,
    ...fields,
  };
}

describe('MemoryStore in-process path', () => {
  it('admits a closed breaker without override by its generation, anything else with 0', () => {
    const store = new MemoryStore({ clock: new ManualClock(0) });
    const path = store[inProcess];
    assert.equal(path.admitClosed(path.slot('unknown')), 0, 'no record yet: the general path makes one');
    store.record('a', policy, outcome({ successes: 1 }));
    assert.equal(path.admitClosed(path.slot('a')), G);
    store.force('a', policy, 'metrics-only');
    assert.equal(path.admitClosed(path.slot('a')), 0);
    store.force('a', policy, null);
    assert.equal(path.admitClosed(path.slot('a')), G + 2);
    store.record('a', policy, outcome({ generation: G + 2, failures: 2, trailingFailures: 2 }));
    assert.equal(path.admitClosed(path.slot('a')), 0, 'open');
  });

  it('records an outcome, publishes the transition it makes, and says undefined when it cannot', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const heard: StateChangeMessage[] = [];
    await store.subscribe((message) => heard.push(message));
    const path = store[inProcess];
    assert.equal(path.recordClosed(path.slot('none'), policy, G, 'failure', false, 0, 0), undefined);
    store.record('a', policy, outcome({ successes: 1 }));
    assert.equal(path.recordClosed(path.slot('a'), policy, G, 'failure', false, 0, 0), null);
    assert.equal(heard.length, 0);
    const moved: Transition | null | undefined = path.recordClosed(
      path.slot('a'),
      policy,
      G,
      'failure',
      false,
      0,
      0,
    );
    assert.deepEqual(moved, { from: 'closed', to: 'open', generation: G + 1 });
    assert.deepEqual(heard, [
      {
        from: 'closed',
        to: 'open',
        generation: G + 1,
        key: 'a',
        openUntil: clock.now() + 1_000,
        now: clock.now(),
        override: null,
      },
    ]);
    assert.equal(
      path.recordClosed(path.slot('a'), policy, G, 'failure', false, 0, 0),
      undefined,
      'not closed any more',
    );
    assert.equal(store.inspect('a', policy)?.state, 'open');
  });

  it('a failure rate trips on a success there too', () => {
    const rate = resolveOptions({ trip: failureRate(0.5, { minimumCalls: 4, windowMs: 10_000 }) }).policy;
    const store = new MemoryStore({ clock: new ManualClock(0) });
    store.record('r', rate, outcome({ failures: 3, trailingFailures: 3 }));
    assert.deepEqual(
      store[inProcess].recordClosed(store[inProcess].slot('r'), rate, G, 'success', false, 0, 0),
      {
        from: 'closed',
        to: 'open',
        generation: G + 1,
      },
    );
  });

  it('keeps a breaker it counts for, like the general path', () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    store.record('kept', policy, outcome({ successes: 1 }));
    for (let i = 0; i < 10; i++) {
      clock.advance(60_000);
      store[inProcess].recordClosed(store[inProcess].slot('kept'), policy, G, 'success', false, 0, 0);
      store.record('other', policy, outcome({ successes: 1 }));
    }
    assert.notEqual(store.inspect('kept', policy), null);
  });

  it('is not used while a raw record waits to be checked', () => {
    const store = new MemoryStore({ clock: new ManualClock(0), onCorruptRecord: () => undefined });
    store.record('a', policy, outcome({ successes: 1 }));
    store.writeRawForTesting('b', 'garbage');
    assert.equal(store[inProcess].admitClosed(store[inProcess].slot('a')), 0);
    assert.equal(
      store[inProcess].recordClosed(store[inProcess].slot('a'), policy, G, 'success', false, 0, 0),
      undefined,
    );
  });
});

describe('MemoryStore details', () => {
  it('lists keys by prefix, in pages of 100', () => {
    const store = new MemoryStore({ clock: new ManualClock(0) });
    for (let i = 0; i < 150; i++)
      store.record(`t:${String(i).padStart(3, '0')}`, policy, outcome({ successes: 1 }));
    store.record('other', policy, outcome({ successes: 1 }));
    const first = store.list('t:');
    assert.equal(first.keys.length, 100);
    assert.equal(first.keys[0], 't:000');
    assert.equal(first.cursor, '100');
    const second = store.list('t:', first.cursor);
    assert.equal(second.keys.length, 50);
    assert.equal(second.keys[0], 't:100');
    assert.equal(second.cursor, null);
    const exact = new MemoryStore({ clock: new ManualClock(0) });
    for (let i = 0; i < 100; i++) exact.record(`k${i}`, policy, outcome({ successes: 1 }));
    assert.equal(exact.list('').cursor, null, 'no empty last page');
  });

  it('hands out lease ids unique per breaker, and none in closed state', () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const strict = resolveOptions({
      trip: consecutiveFailures(1),
      openMs: 1_000,
      halfOpenMaxCalls: 3,
    }).policy;
    assert.equal(store.acquire('a', strict).lease, null);
    store.record('a', strict, outcome({ failures: 1, trailingFailures: 1 }));
    clock.advance(2_000);
    const leases = [
      store.acquire('a', strict).lease,
      store.acquire('a', strict).lease,
      store.acquire('a', strict).lease,
    ];
    assert.equal(new Set(leases).size, 3);
    for (const lease of leases) assert.match(lease ?? '', /^\d+:\d+$/);
  });

  it('never forgets a valid raw record with an override; reports an invalid one on a read, resets it on a write', () => {
    const clock = new ManualClock(0);
    const corrupt: string[] = [];
    const store = new MemoryStore({ clock, onCorruptRecord: (key) => corrupt.push(key) });
    store.writeRawForTesting('forced', { ...emptyRecord(), override: 'forced-open' });
    store.writeRawForTesting('plain', { ...emptyRecord() });
    store.writeRawForTesting('bad', { ...emptyRecord(), generation: 'x' });
    assert.equal(store.inspect('forced', policy)?.circuitState, 'forced-open');
    assert.equal(store.inspect('plain', policy)?.state, 'closed');
    // A read leaves it as it is and says why; a write replaces it (and reports it).
    assert.equal(store.inspect('bad', policy), null);
    assert.equal(store.examine('bad', policy).kind, 'corrupt');
    assert.deepEqual(corrupt, []);
    assert.equal(store.acquire('bad', policy).generation, G);
    assert.deepEqual(corrupt, ['bad']);
    assert.equal(store.inspect('bad', policy)?.generation, G);
    for (let i = 0; i < 10; i++) {
      clock.advance(200_000);
      store.record('other', policy, outcome({ successes: 1 }));
    }
    assert.equal(store.inspect('forced', policy)?.circuitState, 'forced-open');
    assert.equal(store.inspect('plain', policy), null);
  });

  it('clear drops everything, pinned records too', () => {
    const store = new MemoryStore({ clock: new ManualClock(0) });
    store.force('a', policy, 'forced-open');
    store.record('b', policy, outcome({ successes: 1 }));
    store.clear();
    assert.equal(store.size, 0);
    assert.equal(store.inspect('a', policy), null);
  });
});
